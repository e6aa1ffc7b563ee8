"""The corpus: one passage per country written from the bundled facts, plus Wikipedia leads."""
from __future__ import annotations

import re
from typing import Any, Sequence


_LANGUAGE_FIX = {"cnr": "Montenegrin", "rs": "Serbian"}  # codes babel's English names lack


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def country_facts() -> list[dict[str, Any]]:
    """The bundled countries, deduplicated, with codes turned into English names (babel).

    >>> f = {c["name"]: c for c in country_facts()}["Iceland"]
    >>> f["capital"], f["currency"], f["languages"]
    ('Reykjavik', 'Icelandic Króna', ['Icelandic'])
    """
    from babel import Locale

    from .. import data

    en = Locale("en")
    rows = data.load("countries").to_list()
    seen: set[str] = set()
    by_alpha3 = {r["alpha3"]: r["name"] for r in rows if r["alpha3"]}
    out = []
    for r in rows:
        if r["name"] in seen:  # the package ships Curaçao twice
            continue
        seen.add(r["name"])
        langs = [_LANGUAGE_FIX.get(c) or en.languages.get(c, c) for c in r["languages"]]
        out.append({
            "name": r["name"], "alpha3": r["alpha3"], "capital": r["capital"], "region": r["region"],
            "subregion": r["subregion"], "population": r["population"], "area": r["area"],
            "demonym": r["demonym"], "languages": langs,
            "currency": en.currencies.get(r["currencies"][0], r["currencies"][0]) if r["currencies"] else "",
            "borders": [by_alpha3[b] for b in r["borders"] if b in by_alpha3],
        })
    return sorted(out, key=lambda r: r["name"])


def country_passage(f: dict[str, Any]) -> str:
    """A short encyclopedic paragraph written from one country's facts (missing facts skipped).

    >>> country_passage({"name": "Niue", "capital": "Alofi", "region": "Oceania", "subregion": "Polynesia"})
    'Niue is a country in Polynesia, part of Oceania. Its capital is Alofi.'
    """
    name = f["name"]
    s = [f"{name} is a country in {f['subregion'] or f['region']}, part of {f['region']}."]
    s.append(f"Its capital is {f['capital']}.")
    if f.get("population"):
        s.append(f"It has a population of about {f['population']:,} people.")
    if f.get("area"):
        s.append(f"Its area is {f['area']:,.0f} square kilometres.")
    if f.get("demonym"):
        s.append(f"People from {name} are called {f['demonym']}.")
    if f.get("languages"):
        s.append(f"The official language{'s are' if len(f['languages']) > 1 else ' is'} {_join(f['languages'])}.")
    if f.get("currency"):
        s.append(f"The currency is the {f['currency']}.")
    if f.get("borders"):
        s.append(f"It borders {_join(f['borders'])}.")
    return " ".join(s)


def _wiki_clean(text: str) -> str:
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def wikipedia_passages(paragraphs_per_page: int = 2, max_words: int = 120) -> list[dict[str, str]]:
    """The first paragraphs of the bundled Wikipedia pages, as retrieval distractors.

    >>> p = wikipedia_passages(1); len(p), p[0]["id"]
    (105, 'wiki:Anarchism:0')
    """
    from .. import data

    out = []
    for row in data.load("wikipedia"):
        paras = [_wiki_clean(p) for p in row["text"].split("\n\n")]
        paras = [p for p in paras if len(p.split()) >= 20][:paragraphs_per_page]
        for j, p in enumerate(paras):
            out.append({"id": f"wiki:{row['title']}:{j}", "title": row["title"],
                        "text": " ".join(p.split()[:max_words])})
    return out


def countries_corpus(wikipedia: bool = True, paragraphs_per_page: int = 2) -> list[dict[str, str]]:
    """The chapter's retrieval corpus: one passage per country (id 'country:<name>') + Wikipedia.

    >>> corpus = countries_corpus(); corpus[0]["id"], corpus[0]["title"]
    ('country:Afghanistan', 'Afghanistan')
    """
    corpus = [{"id": f"country:{f['name']}", "title": f["name"], "text": country_passage(f)}
              for f in country_facts()]
    if wikipedia:
        corpus += wikipedia_passages(paragraphs_per_page)
    return corpus
