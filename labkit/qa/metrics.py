"""SQuAD metrics (the official script's definitions), and two for free-form answers."""
from __future__ import annotations

import collections
import re
import string
from typing import Iterable, Sequence


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the, and extra whitespace (SQuAD).

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    """
    if not isinstance(s, str):
        raise TypeError(f"normalize_answer expects a string, got {type(s).__name__}")
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("at least one gold answer is needed (SQuAD scores against the best one)")
    return golds


def exact_match(pred: str, golds: str | Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    >>> exact_match("the Paris", ["Paris", "City of Paris"])
    1.0
    """
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(g) for g in _golds(golds)))


def _f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:  # SQuAD v2: both empty counts as a match
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def f1_score(pred: str, golds: str | Iterable[str]) -> float:
    """Token-overlap F1 between prediction and the best-matching gold answer (SQuAD).

    >>> round(f1_score("the cat sat", ["a cat sat on the mat"]), 4)
    0.6667
    """
    return max(_f1(pred, g) for g in _golds(golds))


def answer_in(pred: str, golds: str | Iterable[str]) -> float:
    """1.0 if some normalised gold answer occurs inside the normalised (free-form) prediction.

    Generated answers are sentences ("The capital of Peru is Lima."), so exact match is too strict
    for them; this is the lenient accuracy used for generative and closed-book answers.

    >>> answer_in("The capital of Peru is Lima.", ["Lima"])
    1.0
    """
    p = f" {normalize_answer(pred)} "
    return float(any(f" {normalize_answer(g)} " in p for g in _golds(golds) if normalize_answer(g)))


_STOP = set("a an the of in is are was were and or to for on at by with it its this that from as be "
            "which what who whom where when how about".split())


def groundedness(answer: str, evidence: str | Sequence[str]) -> float:
    """Share of the answer's content words (stop words dropped) that occur in the evidence text.

    1.0 means every content word of the answer can be found in the retrieved passages; a low value
    flags words the model brought from elsewhere (memory or invention).

    >>> groundedness("Lima, in Peru", "Peru is a country. Its capital is Lima.")
    1.0
    """
    ev = evidence if isinstance(evidence, str) else " ".join(evidence)
    ev_words = set(normalize_answer(ev).split())
    words = [w for w in normalize_answer(answer).split() if w not in _STOP]
    if not words:
        return 0.0
    return sum(w in ev_words for w in words) / len(words)
