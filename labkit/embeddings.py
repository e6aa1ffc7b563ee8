"""Word embeddings written out: vocabulary, skip-gram with negative sampling, GloVe, evaluation.

- `Vocab.build`: word counts and ids (the vocabulary gensim's `Word2Vec` keeps for a `min_count`);
- `keep_probabilities`, `noise_distribution`: word2vec's subsampling of frequent words and its
  unigram^0.75 noise distribution (the numbers gensim stores as `sample_int` and `cum_table`);
- `skipgram_pairs`: (centre, context) pairs with word2vec's randomly shrunk window, vectorised;
- `SkipGramNS`, `train_sgns`: the skip-gram model and a batched PyTorch training loop;
- `cooccurrence`, `glove_weight`, `GloVe`, `train_glove`: a distance-weighted co-occurrence
  matrix and its weighted least-squares factorisation;
- `WordVectors`, `evaluate_similarity`, `evaluate_analogies`: cosine neighbours, Spearman
  correlation with human scores, 3CosAdd analogies (the same numbers as gensim's evaluators).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --- vocabulary, subsampling, noise ---------------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    """Words kept for training, most frequent first, with their corpus counts.

    >>> v = Vocab.build([["a", "b", "a"], ["a", "c"]], min_count=2)
    >>> v.words, v.counts.tolist(), v["a"]
    (['a'], [3], 0)
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
    [0.109, 1.0]
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


def skipgram_pairs(docs: Sequence[np.ndarray], window: int, rng: np.random.Generator,
                   keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) id pairs of one pass over `docs`, as word2vec draws them.

    Each position gets its own window b ~ Uniform{1..window} (nearby words are seen more often);
    with `keep` (from `keep_probabilities`) frequent words are dropped *before* windowing, so the
    window reaches further past them. Pairs never cross document boundaries.

    >>> c, x = skipgram_pairs([np.array([0, 1, 2])], window=1, rng=np.random.default_rng(0))
    >>> sorted(zip(c.tolist(), x.tolist()))
    [(0, 1), (1, 0), (1, 2), (2, 1)]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    docs = [np.asarray(d, dtype=np.int64) for d in docs]
    ids = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    if keep is not None:
        mask = rng.random(len(ids)) < keep[ids]
        ids, doc = ids[mask], doc[mask]
    reach = rng.integers(1, window + 1, size=len(ids))
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = doc[:-d] == doc[d:]
        right = same & (reach[:-d] >= d)  # centre i sees i+d
        left = same & (reach[d:] >= d)  # centre i+d sees i
        centres += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    return np.concatenate(centres), np.concatenate(contexts)


# --- skip-gram with negative sampling -------------------------------------------------------------

def _torch():
    import torch

    return torch


class _LazyModule:
    """Build torch.nn classes on first use, so `import labkit.embeddings` stays light."""


def _sgns_class():
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class SkipGramNS(nn.Module):
        """Skip-gram with negative sampling: two embedding tables, centre (input) and context (output).

        loss(c, o) = -log sigma(u_c . v_o) - sum_k log sigma(-u_c . v_k),   k ~ P_n

        >>> m = SkipGramNS(10, 8); m(torch.tensor([1]), torch.tensor([2]), torch.tensor([[3, 4]])).shape
        torch.Size([1])
        """

        def __init__(self, vocab_size: int, dim: int, sparse: bool = True):
            super().__init__()
            if vocab_size < 1 or dim < 1:
                raise ValueError(f"vocab_size and dim must be positive, got {vocab_size}, {dim}")
            self.inp = nn.Embedding(vocab_size, dim, sparse=sparse)
            self.out = nn.Embedding(vocab_size, dim, sparse=sparse)
            # word2vec's initialisation: small random centre vectors, zero context vectors.
            nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
            nn.init.zeros_(self.out.weight)

        def forward(self, centre, context, negatives):
            """Loss per pair: centre (B,), context (B,), negatives (B, K) -> (B,)."""
            u = self.inp(centre)  # (B, d)
            pos = (u * self.out(context)).sum(-1)
            neg = torch.bmm(self.out(negatives), u.unsqueeze(-1)).squeeze(-1)  # (B, K)
            return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1))

    return SkipGramNS


def __getattr__(name: str):
    # Module-level lazy attributes: the torch classes are created on first access.
    if name == "SkipGramNS":
        cls = _sgns_class()
        globals()[name] = cls
        return cls
    if name == "GloVe":
        cls = _glove_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module 'labkit.embeddings' has no attribute {name!r}")
