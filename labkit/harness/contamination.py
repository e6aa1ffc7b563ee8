"""Contamination (数据污染): does a test item appear in a model's training text?

The check most model reports use: cut the training text and each test item into word n-grams and
count how many of the item's n-grams occur in the training text (GPT-3 used 13-grams, Llama 2 token
n-grams). An item whose n-grams are mostly found was probably seen in training, and its score
measures memory rather than skill.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits), punctuation dropped.

    >>> words("The capital of France is Paris.")
    ['the', 'capital', 'of', 'france', 'is', 'paris']
    """
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[int]:
    """Hashes of the word n-grams of `text` (hashes keep a large training text small in memory).

    >>> len(ngrams("a b c d", 2))
    3
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    w = words(text)
    return {hash(" ".join(w[i:i + n])) for i in range(len(w) - n + 1)}


def training_ngrams(texts: Iterable[str], n: int) -> set[int]:
    """The n-gram hashes of a whole training corpus, document by document."""
    out: set[int] = set()
    for t in texts:
        out |= ngrams(t, n)
    return out


def overlap(item: str, train: set[int], n: int) -> float:
    """Share of the item's word n-grams found in the training n-grams (0 for an item shorter than n words).

    >>> overlap("the capital of peru is lima", ngrams("we know the capital of peru is lima today", 3), 3)
    1.0
    """
    grams = ngrams(item, n)
    return sum(g in train for g in grams) / len(grams) if grams else 0.0


def overlaps(items: Sequence[str], train: set[int], n: int) -> list[float]:
    """`overlap` of every item."""
    return [overlap(t, train, n) for t in items]
