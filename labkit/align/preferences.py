"""Preference data built from the bundled facts: what "better" means, written down as pairs.

A preference pair is (prompt, chosen, rejected). Chapter 19 builds them from the country facts of
`labkit.data` ("What is the capital of X?"), with a fixed split by country so that no country
is in two splits, and three kinds of pair, each encoding one preference:

- `own_wrong`: the model's own wrong answer is rejected, the correct sentence chosen (correctness,
  on the model's own mistakes: what the model actually gets wrong);
- `swapped`: the same sentence with another country's capital is rejected (correctness alone:
  chosen and rejected differ in one name, so style cannot give the answer away);
- `padded`: the correct sentence wrapped in filler is rejected (concision).

    >>> qs = capital_questions("test"); len(qs) > 20, sorted(qs[0])
    (True, ['answer', 'country', 'prompt', 'split'])
"""
from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from typing import Sequence

from .. import data

__all__ = ["SPLITS", "capital_questions", "normalise", "is_correct", "answer_sentence", "pad_answer",
           "build_pairs", "PAD_OPENERS", "PAD_CLOSERS"]

# Fixed split by a hash of the country's name: the same on every machine and independent of the
# order of the files; 60 / 20 / 20 by the hash's last decimal digit.
SPLITS = {"train": range(0, 6), "validation": range(6, 8), "test": range(8, 10)}
PAD_OPENERS = ("Great question! ", "That is a very interesting question. ", "Thank you for asking! ",
               "Let me think about this carefully. ")
PAD_CLOSERS = (" I hope this helps, and feel free to ask me anything else!",
               " Please let me know if you have any other questions.",
               " It is a fascinating place with a rich history and culture.")


def _bucket(name: str) -> int:
    return int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % 10


def capital_questions(split: str) -> list[dict[str, str]]:
    """Questions "What is the capital of X?" with gold answers, for one fixed split of the countries.

    Countries whose capital is the country's own name (Singapore, ...) are left out: an answer that
    repeats the question would count as correct.

    >>> {q["split"] for q in capital_questions("train")}
    {'train'}
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    rows = data.load("countries")
    seen, out = set(), []
    for name, capital in zip(rows["name"], rows["capital"]):
        capital = (capital or "").strip()
        if not capital or name in seen or normalise(capital) in normalise(name) or normalise(name) in normalise(capital):
            continue
        seen.add(name)
        if _bucket(name) in SPLITS[split]:
            out.append({"prompt": f"What is the capital of {name}?", "answer": capital, "country": name,
                        "split": split})
    return sorted(out, key=lambda q: q["country"])


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: 'Bogotá, D.C.' -> 'bogota d c'.

    >>> normalise("  Bogotá, D.C. ")
    'bogota d c'
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def is_correct(answer: str, gold: str) -> bool:
    """True when the gold capital appears in the answer as whole words (after `normalise`).

    >>> is_correct("The capital of France is Paris.", "Paris"), is_correct("Parisian food", "Paris")
    (True, False)
    """
    return f" {normalise(gold)} " in f" {normalise(answer)} "


def answer_sentence(country: str, capital: str) -> str:
    """The concise correct answer in one template.

    >>> answer_sentence("Peru", "Lima")
    'The capital of Peru is Lima.'
    """
    return f"The capital of {country} is {capital}."


def pad_answer(answer: str, rng: random.Random) -> str:
    """The same answer wrapped in filler: as correct, longer, no more useful.

    >>> pad_answer("Lima.", random.Random(0)).endswith(("helps, and feel free to ask me anything else!",
    ...                                                  "questions.", "culture."))
    True
    """
    return rng.choice(PAD_OPENERS) + answer + rng.choice(PAD_CLOSERS)


def build_pairs(questions: Sequence[dict[str, str]], model_answers: Sequence[str], seed: int = 0,
                padded_share: float = 0.5) -> list[dict[str, str]]:
    """Preference pairs for `questions`, given the model's own (greedy) answers to them.

    One correctness pair per question: `own_wrong` when the model's answer is wrong, else `swapped`
    (a wrong capital from another question of the same list). For a `padded_share` of the
    questions, also one `padded` pair. Chosen is always the concise correct sentence.

    >>> qs = [{"prompt": "What is the capital of Peru?", "answer": "Lima", "country": "Peru"},
    ...       {"prompt": "What is the capital of Chad?", "answer": "N'Djamena", "country": "Chad"}]
    >>> [p["kind"] for p in build_pairs(qs, ["Lima is the capital.", "Paris."], padded_share=0.0)]
    ['swapped', 'own_wrong']
    """
    if len(questions) != len(model_answers):
        raise ValueError(f"{len(questions)} questions but {len(model_answers)} model answers")
    if len(questions) < 2:
        raise ValueError("need at least 2 questions (a swapped pair borrows another question's capital)")
    if not 0.0 <= padded_share <= 1.0:
        raise ValueError(f"padded_share must be in [0, 1]; got {padded_share}")
    rng = random.Random(seed)
    pairs = []
    for i, (q, ans) in enumerate(zip(questions, model_answers)):
        chosen = answer_sentence(q["country"], q["answer"])
        base = {"prompt": q["prompt"], "chosen": chosen, "country": q["country"], "answer": q["answer"]}
        if not is_correct(ans, q["answer"]) and ans.strip():
            pairs.append({**base, "rejected": ans.strip(), "kind": "own_wrong"})
        else:
            others = [o["answer"] for o in questions if not is_correct(o["answer"], q["answer"])
                      and not is_correct(q["answer"], o["answer"])]
            pairs.append({**base, "rejected": answer_sentence(q["country"], rng.choice(others)), "kind": "swapped"})
        if rng.random() < padded_share:
            pairs.append({**base, "rejected": pad_answer(chosen, rng), "kind": "padded"})
    return pairs
