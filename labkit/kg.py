"""A knowledge graph (知识图谱) of countries, relation extraction, graph queries and multi-hop questions.

`country_graph` turns the bundled country facts (`labkit.qa.country_facts`) into a networkx
multi-digraph: country, city, currency, language and region nodes joined by `capital`, `currency`,
`language`, `borders` and `region` edges. A graph query is a small dict, "the `ret` of the countries
that satisfy every (relation, value) condition", run by `run_query`; `parse_query` reads the one-line
form a language model writes. `make_questions` builds one-hop and two-hop questions whose answer is
unique in the graph; `cooccurrences` and `pattern_relation` are chapter 16's relation-extraction pieces.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Sequence

from . import data

RELATIONS = ("capital", "currency", "language", "borders", "region")
RETURNS = RELATIONS + ("country",)


class QueryError(ValueError):
    """A graph query that cannot run; the message says which part is wrong."""


class KgqaFileError(ValueError):
    """A reader's own question file that cannot be used; the message names the line and the fix."""


def node(kind: str, name: str) -> str:
    """The node id of an entity: kind and name, so a city and a country may share a name.

    >>> node("city", "Luxembourg")
    'city:Luxembourg'
    """
    return f"{kind}:{name}"


_KIND = {"capital": "city", "currency": "currency", "language": "language", "borders": "country",
         "region": "region"}


def country_graph(facts: Sequence[dict[str, Any]] | None = None):
    """A `networkx.MultiDiGraph` of the country facts; every edge has a `relation` attribute.

    >>> g = country_graph([{"name": "Peru", "capital": "Lima", "currency": "Peruvian Sol",
    ...                     "languages": ["Spanish"], "borders": ["Chile"], "subregion": "South America"}])
    >>> sorted(g.nodes), g.number_of_edges()
    (['city:Lima', 'country:Chile', 'country:Peru', 'currency:Peruvian Sol', 'language:Spanish', 'region:South America'], 5)
    """
    import networkx as nx

    if facts is None:
        from . import qa

        facts = qa.country_facts()
    g = nx.MultiDiGraph()
    for f in facts:
        c = node("country", f["name"])
        g.add_node(c, kind="country", name=f["name"])
        values = {"capital": [f.get("capital")], "currency": [f.get("currency")], "language": f.get("languages") or [],
                  "borders": f.get("borders") or [], "region": [f.get("subregion") or f.get("region")]}
        for rel, vals in values.items():
            for v in vals:
                if v:
                    target = node(_KIND[rel], v)
                    g.add_node(target, kind=_KIND[rel], name=v)
                    g.add_edge(c, target, relation=rel)
    return g


def objects(g, country: str, relation: str) -> list[str]:
    """Names reached from a country along one relation (one hop).

    >>> g = country_graph([{"name": "Peru", "capital": "Lima", "borders": ["Chile", "Bolivia"]}])
    >>> objects(g, "Peru", "borders")
    ['Bolivia', 'Chile']
    """
    c = node("country", country)
    if c not in g:
        return []
    return sorted({g.nodes[t]["name"] for _, t, d in g.out_edges(c, data=True) if d["relation"] == relation})


def countries_with(g, relation: str, value: str) -> set[str]:
    """Countries with an edge `relation` to the entity named `value` (one hop backwards).

    >>> g = country_graph([{"name": "Peru", "capital": "Lima", "borders": ["Chile"]}])
    >>> countries_with(g, "borders", "Chile"), countries_with(g, "capital", "lima")
    ({'Peru'}, {'Peru'})
    """
    if relation == "country":
        return {g.nodes[n]["name"] for n in g if g.nodes[n]["kind"] == "country" and _same(g.nodes[n]["name"], value)}
    out = set()
    for n in g:
        if g.nodes[n]["kind"] == _KIND[relation] and _same(g.nodes[n]["name"], value):
            out |= {g.nodes[s]["name"] for s, _, d in g.in_edges(n, data=True) if d["relation"] == relation}
    return out


def _same(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)


def normalize(s: str) -> str:
    """Lower case, no accents, no punctuation or articles: how answers are compared.

    >>> normalize("The Icelandic Króna.")
    'icelandic krona'
    """
    import unicodedata

    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = re.sub(r"[^\w\s]", " ", s)
    return " ".join(w for w in s.split() if w not in ("the", "a", "an"))


def check_query(query: Any) -> dict[str, Any]:
    """Validate a graph query `{"ret": relation or "country", "where": [[relation or "country", value], ...]}`.

    >>> check_query({"ret": "capital", "where": [["borders", "Chile"], ["currency", "Euro"]]})["ret"]
    'capital'
    """
    if not isinstance(query, dict) or "ret" not in query or "where" not in query:
        raise QueryError(f"a query is a dict with keys 'ret' and 'where', got {query!r}")
    if query["ret"] not in RETURNS:
        raise QueryError(f"unknown return relation {query['ret']!r}; use one of {', '.join(RETURNS)}")
    where = query["where"]
    if not isinstance(where, list) or not where:
        raise QueryError("'where' must be a non-empty list of [relation, value] conditions")
    for cond in where:
        if not (isinstance(cond, (list, tuple)) and len(cond) == 2 and all(isinstance(x, str) for x in cond)):
            raise QueryError(f"condition {cond!r} must be a [relation, value] pair of strings")
        if cond[0] not in RETURNS:
            raise QueryError(f"unknown condition relation {cond[0]!r}; use one of {', '.join(RETURNS)}")
    return query


def run_query(g, query: dict[str, Any]) -> list[str]:
    """Answers of a graph query: intersect the countries matching each condition, then follow `ret`.

    >>> g = country_graph([{"name": "Peru", "capital": "Lima", "currency": "Sol", "borders": ["Chile"]},
    ...                    {"name": "Chile", "capital": "Santiago", "currency": "Peso", "borders": ["Peru"]}])
    >>> run_query(g, {"ret": "capital", "where": [["borders", "Chile"], ["currency", "Sol"]]})
    ['Lima']
    """
    check_query(query)
    found: set[str] | None = None
    for rel, value in query["where"]:
        match = countries_with(g, rel, value)
        found = match if found is None else found & match
    if query["ret"] == "country":
        return sorted(found or ())
    return sorted({o for c in sorted(found or ()) for o in objects(g, c, query["ret"])})


_KIND_TO_RELATION = {"city": "capital", "currency": "currency", "language": "language", "region": "region"}


def link_query(g, query: dict[str, Any]) -> dict[str, Any]:
    """Entity linking (实体链接) for a query: a condition whose value the graph does not know under its
    relation is re-attached by what the value is (a city -> capital, a currency -> currency, ...; a country
    -> `country` in a one-condition query, `borders` in a longer one). Values it cannot find stay as they are.

    >>> g = country_graph([{"name": "Peru", "capital": "Lima", "currency": "Sol"}])
    >>> link_query(g, {"ret": "currency", "where": [["currency", "Lima"]]})
    {'ret': 'currency', 'where': [['capital', 'Lima']]}
    """
    check_query(query)
    kinds: dict[str, str] = {}
    for n, d in g.nodes(data=True):
        kinds.setdefault(normalize(d["name"]), d["kind"])
    where = []
    for rel, value in query["where"]:
        kind = kinds.get(normalize(value))
        if kind and not countries_with(g, rel, value):
            if kind == "country":
                rel = "country" if len(query["where"]) == 1 else "borders"
            else:
                rel = _KIND_TO_RELATION[kind]
        where.append([rel, value])
    return {"ret": query["ret"], "where": where}


_LINE = re.compile(r"^\s*(\w+)\s+WHERE\s+(.+)$", re.IGNORECASE)


def parse_query(line: str) -> dict[str, Any]:
    """Read the one-line query form `RET WHERE rel = value AND rel = value` (what the LLM writes).

    >>> parse_query("capital WHERE borders = Chile AND currency = Euro")
    {'ret': 'capital', 'where': [['borders', 'Chile'], ['currency', 'Euro']]}
    """
    m = _LINE.match(line.strip().splitlines()[0] if line.strip() else "")
    if not m:
        raise QueryError(f"expected 'RET WHERE relation = value AND ...', got {line!r}")
    where = []
    for part in re.split(r"\s+AND\s+", m.group(2).strip(), flags=re.IGNORECASE):
        rel, eq, value = part.partition("=")
        if not eq:
            raise QueryError(f"condition {part!r} needs 'relation = value'")
        where.append([rel.strip().lower(), value.strip().strip("\"'. ")])
    return check_query({"ret": m.group(1).lower(), "where": where})


def format_query(query: dict[str, Any]) -> str:
    """The one-line form of a query (inverse of `parse_query`).

    >>> format_query({"ret": "capital", "where": [["borders", "Chile"]]})
    'capital WHERE borders = Chile'
    """
    return f"{query['ret']} WHERE " + " AND ".join(f"{r} = {v}" for r, v in query["where"])


# --- multi-hop questions ----------------------------------------------------------------------------

# (hops, template, query builder). Every question mentions entities, never the country it is about
# when two hops are needed: the system must find that country first.
TEMPLATES: dict[str, tuple[int, str, Any]] = {
    "capital_of": (1, "What is the capital of {c}?", lambda f: {"ret": "capital", "where": [["country", f["c"]]]}),
    "currency_of": (1, "Which currency is used in {c}?", lambda f: {"ret": "currency", "where": [["country", f["c"]]]}),
    "country_of_capital": (1, "Which country has {cap} as its capital?",
                           lambda f: {"ret": "country", "where": [["capital", f["cap"]]]}),
    "capital_border_currency": (2, "What is the capital of the country that borders {x} and uses the {y}?",
                                lambda f: {"ret": "capital", "where": [["borders", f["x"]], ["currency", f["y"]]]}),
    "currency_of_capital": (2, "Which currency is used in the country whose capital is {cap}?",
                            lambda f: {"ret": "currency", "where": [["capital", f["cap"]]]}),
    "capital_border_region": (2, "What is the capital of the country in {r} that borders {x}?",
                              lambda f: {"ret": "capital", "where": [["region", f["r"]], ["borders", f["x"]]]}),
}


def make_questions(g, n_per_template: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """One-hop and two-hop questions whose query has exactly one answer in the graph.

    Each row: question, answers, hops, template, query (the gold graph query), country (the hidden hop).

    >>> qs = make_questions(country_graph(), 2)                                   # doctest: +SKIP
    >>> qs[0]["question"], qs[0]["answers"]                                       # doctest: +SKIP
    ('What is the capital of Peru?', ['Lima'])
    """
    rng = random.Random(seed)
    countries = sorted(g.nodes[n]["name"] for n in g if g.nodes[n]["kind"] == "country" and g.out_degree(n))
    out = []
    for name, (hops, text, build) in TEMPLATES.items():
        cands = []
        for c in countries:
            caps, curs = objects(g, c, "capital"), objects(g, c, "currency")
            regions = objects(g, c, "region")
            if name in ("capital_of", "currency_of"):
                cands.append({"c": c})
            elif name in ("country_of_capital", "currency_of_capital") and caps:
                cands.append({"cap": caps[0]})
            elif name == "capital_border_currency" and curs:
                cands += [{"x": x, "y": curs[0]} for x in objects(g, c, "borders")]
            elif name == "capital_border_region" and regions:
                cands += [{"x": x, "r": regions[0]} for x in objects(g, c, "borders")]
        rng.shuffle(cands)
        seen = set()
        for fill in cands:
            q = build(fill)
            found = run_query(g, {"ret": "country", "where": q["where"]})
            answers = run_query(g, q)
            if len(found) != 1 or len(answers) != 1 or found[0] in seen:
                continue  # ambiguous or answerless questions are no test of a system
            seen.add(found[0])
            out.append({"question": text.format(**fill), "answers": answers, "hops": hops, "template": name,
                        "query": q, "country": found[0]})
            if len(seen) >= n_per_template:
                break
    return out


# --- relation extraction ----------------------------------------------------------------------------

def split_sentences(text: str) -> list[str]:
    """Rough English sentence split (after . ! ? followed by a space and a capital letter).

    >>> split_sentences("It is big. Its capital is Lima! Yes")
    ['It is big.', 'Its capital is Lima!', 'Yes']
    """
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text) if s.strip()]


def _name_pattern(names: Sequence[str]) -> re.Pattern:
    alts = sorted({n for n in names if len(n) > 2}, key=len, reverse=True)  # longest first: "Niger" after "Nigeria"
    return re.compile(r"\b(" + "|".join(map(re.escape, alts)) + r")\b")


def cooccurrences(texts: Sequence[tuple[str, str]], g, relation: str) -> list[dict[str, Any]]:
    """Candidate (country, object) pairs of `relation` mentioned in one sentence, labelled from the graph.

    `texts` are (source, text) pairs. A pair is positive when the graph has the edge (distant supervision:
    the label says the fact holds, not that this sentence states it).

    >>> g = country_graph([{"name": "Peru", "capital": "Lima"}])
    >>> [(r["country"], r["object"], r["label"]) for r in cooccurrences([("p", "Lima is the capital of Peru.")], g, "capital")]
    [('Peru', 'Lima', 1)]
    """
    kind = _KIND[relation]
    countries = [g.nodes[n]["name"] for n in g if g.nodes[n]["kind"] == "country"]
    objs = [g.nodes[n]["name"] for n in g if g.nodes[n]["kind"] == kind]
    cpat, opat = _name_pattern(countries), _name_pattern(objs)
    facts = {c: set(objects(g, c, relation)) for c in countries}  # one graph walk per country, not per pair
    rows = []
    for source, text in texts:
        for sent in split_sentences(text):
            cs = [(m.group(1), m.start(), m.end()) for m in cpat.finditer(sent)]
            os_ = [(m.group(1), m.start(), m.end()) for m in opat.finditer(sent)]
            for c, cs0, ce0 in cs:
                for o, os0, oe0 in os_:
                    if c == o or (relation == "borders" and cs0 > os0) or (cs0 < oe0 and os0 < ce0):
                        continue
                    a, b = sorted([(cs0, ce0), (os0, oe0)])
                    label = int(o in facts[c] or (relation == "borders" and c in facts.get(o, ())))
                    rows.append({"source": source, "sentence": sent, "country": c, "object": o,
                                 "between": sent[a[1]:b[0]].strip(), "country_first": cs0 < os0, "label": label})
    return rows


PATTERNS = {
    "capital": re.compile(r"\bcapital\b"),
    "borders": re.compile(r"\bborder(s|ed|ing)?\b"),
    "language": re.compile(r"\b(language|languages|spoken|speak)\b"),
    "currency": re.compile(r"\b(currency|currencies)\b"),
}


def pattern_relation(row: dict[str, Any], relation: str) -> bool:
    """The rule: a relation's cue word stands between the two mentions (and at most 12 words apart).

    >>> pattern_relation({"between": "is the capital of"}, "capital")
    True
    """
    between = row["between"]
    return bool(PATTERNS[relation].search(between.lower())) and len(between.split()) <= 12


# --- the reader's own questions -------------------------------------------------------------------

def read_kgqa_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Questions and accepted answers from a JSON-lines file: `{"question": "...", "answers": ["...", ...]}`.

    A file that cannot be used raises `KgqaFileError` naming the line and what to change.

    >>> rows = read_kgqa_jsonl("my_questions.jsonl")                           # doctest: +SKIP
    """
    p = Path(path).expanduser()
    where = f"kgqa_eval_jsonl: {p.name}"
    rows = []
    for i, obj in data.jsonl_objects(p, "kgqa_eval_jsonl", ("question", "answers"), KgqaFileError):
        q, a = obj["question"], obj["answers"]
        if not isinstance(q, str) or not q.strip():
            raise KgqaFileError(f"{where}, line {i}: field 'question' must be a non-empty string")
        if not isinstance(a, list) or not a or not all(isinstance(x, str) and x.strip() for x in a):
            raise KgqaFileError(f"{where}, line {i}: field 'answers' must be a non-empty list of strings, got {a!r}")
        rows.append({"question": q.strip(), "answers": a, "line": i})
    if not rows:
        raise KgqaFileError(f"{where} has no JSON lines; add at least one {{\"question\": ..., \"answers\": [...]}} line")
    return rows


def answer_match(prediction: str | Sequence[str], answers: Sequence[str]) -> float:
    """1.0 when a predicted answer equals any accepted one after `normalize` (exact match).

    >>> answer_match(["Lima"], ["lima"]), answer_match("Santiago", ["Lima"])
    (1.0, 0.0)
    """
    preds = [prediction] if isinstance(prediction, str) else list(prediction)
    gold = {normalize(a) for a in answers}
    return float(any(normalize(p) in gold for p in preds if p))
