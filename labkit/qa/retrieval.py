"""Retrieval: BM25 written out, dense retrieval, reciprocal-rank fusion, and their metrics."""
from __future__ import annotations

import collections
import math
import re
from typing import Any, Callable, Sequence

import numpy as np


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens for BM25 (letters and digits; accents kept).

    >>> tokenize("What is the capital of Côte d'Ivoire?")
    ['what', 'is', 'the', 'capital', 'of', 'côte', 'd', 'ivoire']
    """
    return re.findall(r"\w+", text.lower())


class BM25:
    """Okapi BM25 with Lucene's non-negative idf, written out (equals `bm25s` method='lucene').

    score(q, d) = sum over query terms t of idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

    >>> bm = BM25(["the cat sat", "a dog barked", "cats and dogs"])
    >>> bm.search("dog", k=1)[0][0]
    1
    """

    def __init__(self, docs: Sequence[str], k1: float = 1.5, b: float = 0.75,
                 tokenizer: Callable[[str], list[str]] = tokenize):
        if isinstance(docs, str) or not len(docs):
            raise ValueError("BM25 needs a non-empty list of document strings")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.tokenizer = k1, b, tokenizer
        self.doc_tokens = [tokenizer(d) for d in docs]
        self.doc_len = np.array([len(t) for t in self.doc_tokens], dtype=np.float64)
        self.avgdl = float(self.doc_len.mean()) or 1.0
        self.n_docs = len(docs)
        # Inverted index: term -> (doc ids, term frequencies); scoring touches only matching docs.
        index: dict[str, dict[int, int]] = collections.defaultdict(dict)
        for i, toks in enumerate(self.doc_tokens):
            for t, c in collections.Counter(toks).items():
                index[t][i] = c
        self.index = {t: (np.fromiter(d.keys(), int), np.fromiter(d.values(), float)) for t, d in index.items()}
        self.idf = {t: math.log(1 + (self.n_docs - len(ids) + 0.5) / (len(ids) + 0.5))
                    for t, (ids, _) in self.index.items()}

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query` (a repeated query word counts once per occurrence)."""
        out = np.zeros(self.n_docs)
        norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)
        for t in self.tokenizer(query):
            if t not in self.index:
                continue
            ids, tf = self.index[t]
            out[ids] += self.idf[t] * tf * (self.k1 + 1) / (tf + norm[ids])
        return out

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        """The k best (document index, score) pairs, best first."""
        return _top_k(self.scores(query), k)


def _top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.lexsort((idx, -scores[idx]))]  # by score, ties by index: deterministic
    return [(int(i), float(scores[i])) for i in idx]


class DenseRetriever:
    """Dense retrieval: cosine similarity of MiniLM sentence embeddings (mean pooling, normalised).

    >>> dr = DenseRetriever(["Paris is in France.", "Lima is in Peru."])     # doctest: +SKIP
    >>> dr.search("Where is Lima?", k=1)[0][0]                                # doctest: +SKIP
    1
    """

    def __init__(self, docs: Sequence[str], model=None, tokenizer=None, batch_size: int = 64,
                 max_length: int = 256):
        from .. import assets, models

        if isinstance(docs, str) or not len(docs):
            raise ValueError("DenseRetriever needs a non-empty list of document strings")
        if model is None or tokenizer is None:
            model, tokenizer = assets.load_model("minilm-l6", task="encoder")
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.embeddings = models.encode_sentences(list(docs), model, tokenizer, batch_size=batch_size,
                                                  max_length=max_length).numpy()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from .. import models

        return models.encode_sentences(list(texts), self.model, self.tokenizer, max_length=self.max_length).numpy()

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of `query` with every document."""
        return self.embeddings @ self.encode([query])[0]

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        """The k most similar (document index, cosine) pairs, best first."""
        return _top_k(self.scores(query), k)


class HybridRetriever:
    """Reciprocal-rank fusion of several retrievers: score = sum 1 / (c + rank).

    >>> hy = HybridRetriever([BM25(["a b", "b c"]), BM25(["a b", "b c"])]); hy.search("c", k=1)[0][0]
    1
    """

    def __init__(self, retrievers: Sequence[Any], c: float = 60.0, depth: int = 50):
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers, self.c, self.depth = list(retrievers), c, depth

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        fused: dict[int, float] = collections.defaultdict(float)
        for r in self.retrievers:
            for rank, (i, _) in enumerate(r.search(query, k=self.depth)):
                fused[i] += 1.0 / (self.c + rank + 1)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:k]


def recall_at_k(ranked: Sequence[Sequence[int]], gold: Sequence[int], k: int) -> float:
    """Share of questions whose gold passage is among the first k retrieved.

    >>> recall_at_k([[3, 1], [0, 2]], [1, 5], k=2)
    0.5
    """
    if len(ranked) != len(gold):
        raise ValueError(f"{len(ranked)} rankings but {len(gold)} gold ids")
    return float(np.mean([g in list(r)[:k] for r, g in zip(ranked, gold)]))


def mrr(ranked: Sequence[Sequence[int]], gold: Sequence[int]) -> float:
    """Mean reciprocal rank of the gold passage (0 when it is not retrieved at all).

    >>> mrr([[3, 1], [0, 2]], [1, 0])
    0.75
    """
    if len(ranked) != len(gold):
        raise ValueError(f"{len(ranked)} rankings but {len(gold)} gold ids")
    return float(np.mean([1.0 / (list(r).index(g) + 1) if g in list(r) else 0.0 for r, g in zip(ranked, gold)]))
