"""The vocabulary and word2vec's sampling tables: `Vocab.build` (word counts and ids, as gensim's
`Word2Vec` keeps them for a `min_count`), `keep_probabilities` and `noise_distribution` (the
subsampling of frequent words and the unigram^0.75 noise distribution, the numbers gensim stores as
`sample_int` and `cum_table`), and `noise_table` for drawing noise words fast.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Vocab:
    """Words kept for training, most frequent first, with their corpus counts.

    >>> v = Vocab.build([["a", "b", "a"], ["a", "c"]], min_count=2)
    >>> v.words, v.counts.tolist(), v["a"]
    (('a',), [3], 0)
    """

    words: tuple[str, ...]
    counts: np.ndarray  # int64, aligned with words
    index: Mapping[str, int] = field(repr=False, compare=False)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5,
              max_size: int | None = None) -> "Vocab":
        """Count words and keep those seen at least `min_count` times (at most `max_size`)."""
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        counter: Counter[str] = Counter()
        for s in sentences:
            if isinstance(s, str):
                raise TypeError("Vocab.build takes tokenised sentences (lists of words), not strings; "
                                "split them first, e.g. with gensim.utils.simple_preprocess")
            counter.update(s)
        # Sorting by count keeps frequent words at small ids; ties keep first-seen order (stable sort).
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: -wc[1])
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(f"no word occurs {min_count} times or more; lower min_count or give more text")
        words = tuple(w for w, _ in kept)
        return cls(words, np.array([c for _, c in kept], dtype=np.int64), {w: i for i, w in enumerate(words)})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> int:
        return self.index[word]

    def encode(self, sentences: Iterable[Sequence[str]]) -> list[np.ndarray]:
        """Each sentence as an array of ids; words outside the vocabulary are dropped (as word2vec does)."""
        return [np.fromiter((self.index[w] for w in s if w in self.index), dtype=np.int64) for s in sentences]


def keep_probabilities(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """word2vec's probability of keeping each occurrence of a word (subsampling, 下采样).

    A word with corpus frequency f = count/total above `sample` is kept with probability
    (sqrt(f/sample) + 1) * sample/f, so "the" is mostly dropped and rare words always stay.

    >>> keep_probabilities(np.array([1000, 10]), sample=1e-2).round(3).tolist()
    [0.111, 1.0]
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    if not 0 < sample < 1:
        raise ValueError(f"sample is a frequency threshold in (0, 1), e.g. 1e-3; got {sample}")
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution P_n(w) proportional to count(w)^power (word2vec: 0.75).

    >>> noise_distribution(np.array([16, 1]), power=0.5).tolist()
    [0.8, 0.2]
    """
    p = np.asarray(counts, dtype=np.float64) ** power
    return p / p.sum()


def noise_table(probs: np.ndarray, size: int = 10_000_000) -> torch.Tensor:
    """word2vec's sampling table: word k fills about probs[k] * size slots; a uniform slot is a draw.

    Drawing is one random integer and one lookup, several times faster than a binary search over
    the cumulative distribution; shares are rounded to whole slots (largest remainders first).

    >>> noise_table(np.array([0.75, 0.25]), size=4).tolist()
    [0, 0, 0, 1]
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        raise ValueError("probs must be a 1-D probability vector (non-negative, summing to 1)")
    share = probs * size
    slots = np.floor(share).astype(np.int64)
    slots[np.argsort(slots - share)[: size - slots.sum()]] += 1  # hand out the remaining slots
    return torch.from_numpy(np.repeat(np.arange(len(probs), dtype=np.int32), slots))
