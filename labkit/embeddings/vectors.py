"""Word vectors and their evaluation: `WordVectors` (cosine neighbours), `evaluate_similarity`
(Spearman correlation with human scores) and `evaluate_analogies` (3CosAdd), the same numbers as
gensim's evaluators; `validation_half`, the fixed split of a word-pair benchmark into a half for
choices and a half for the reported score.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


class WordVectors:
    """A table of word vectors with cosine similarity and nearest neighbours.

    >>> wv = WordVectors(["a", "b", "c"], np.array([[1.0, 0], [0.9, 0.1], [0, 1]]))
    >>> wv.most_similar("a", topn=1)
    [('b', 0.9939)]
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"need one vector per word: {len(words)} words, vectors of shape {vectors.shape}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words must be unique")
        self.vectors = vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)

    @classmethod
    def from_gensim(cls, kv) -> "WordVectors":
        """Wrap gensim `KeyedVectors` (e.g. `Word2Vec(...).wv`)."""
        return cls(list(kv.index_to_key), kv.vectors)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self)} words)")
        return self.vectors[self.index[word]]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(self.unit[self.index[a]] @ self.unit[self.index[b]])

    def most_similar(self, query: str | np.ndarray, topn: int = 10,
                     exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Nearest words by cosine to a word (itself excluded) or to a vector."""
        if isinstance(query, str):
            if query not in self.index:
                raise KeyError(f"{query!r} is not in the vocabulary ({len(self)} words)")
            exclude = {query, *exclude}
            q = self.unit[self.index[query]]
        else:
            q = np.asarray(query, dtype=np.float32)
            q = q / max(np.linalg.norm(q), 1e-12)
        sims = self.unit @ q
        for w in exclude:
            if w in self.index:
                sims[self.index[w]] = -np.inf
        best = np.argsort(-sims)[:topn]
        return [(self.words[k], round(float(sims[k]), 4)) for k in best]


def validation_half(word1: Sequence[str], word2: Sequence[str]) -> np.ndarray:
    """Which pairs of a word-similarity benchmark belong to its validation half (True) or its test half.

    A fixed rule on the words alone: a pair is in the validation half when the CRC-32 of its two
    lower-cased words, sorted and joined by a space, is even. The split is the same in every run
    and for every model, and a pair listed twice (in either order) never sits in both halves.
    Choose settings on the validation half; report the test half once.

    >>> validation_half(["Tiger", "cat", "car"], ["cat", "tiger", "automobile"]).tolist()
    [False, False, True]
    """
    if len(word1) != len(word2):
        raise ValueError(f"word1 and word2 must have the same length, got {len(word1)} and {len(word2)}")
    keys = (" ".join(sorted((str(a).lower(), str(b).lower()))) for a, b in zip(word1, word2))
    return np.array([zlib.crc32(k.encode("utf-8")) % 2 == 0 for k in keys], dtype=bool)


def evaluate_similarity(wv: WordVectors, word1: Sequence[str], word2: Sequence[str],
                        scores: Sequence[float], vocab: Iterable[str] | None = None,
                        lowercase: bool = True) -> dict[str, Any]:
    """Spearman correlation between cosine similarities and human scores (SimLex-999, WordSim-353).

    Pairs with a word outside `vocab` (default: the vectors' own words) are skipped; pass the
    shared vocabulary of several models so that each is scored on the same pairs.

    >>> r = evaluate_similarity(wv, ds["word1"], ds["word2"], ds["score"])   # doctest: +SKIP
    >>> r["spearman"], r["n"], r["coverage"]                                   # doctest: +SKIP
    """
    from scipy.stats import spearmanr

    if not len(word1) == len(word2) == len(scores):
        raise ValueError("word1, word2 and scores must have the same length")
    allowed = set(vocab) if vocab is not None else None
    model, human = [], []
    for a, b, s in zip(word1, word2, scores):
        if lowercase:
            a, b = a.lower(), b.lower()
        if a in wv and b in wv and (allowed is None or (a in allowed and b in allowed)):
            model.append(wv.similarity(a, b))
            human.append(float(s))
    n = len(model)
    rho = float(spearmanr(human, model).statistic) if n >= 3 else float("nan")
    return {"spearman": rho, "n": n, "total": len(scores), "coverage": n / max(len(scores), 1)}


def evaluate_analogies(wv: WordVectors, a: Sequence[str], b: Sequence[str], c: Sequence[str],
                       d: Sequence[str], sections: Sequence[str] | None = None,
                       vocab: Iterable[str] | None = None, lowercase: bool = True,
                       batch_size: int = 512) -> dict[str, Any]:
    """3CosAdd analogies a:b :: c:? (Mikolov et al. 2013): argmax_w cos(w, b - a + c), w not in {a, b, c}.

    Questions with a word outside `vocab` (default: the vectors' own words) are skipped and
    counted in `coverage`. Returns accuracy, n, coverage and accuracy per section.

    >>> r = evaluate_analogies(wv, q["a"], q["b"], q["c"], q["d"], q["section"])   # doctest: +SKIP
    >>> r["accuracy"], r["coverage"]                                            # doctest: +SKIP
    """
    if not len(a) == len(b) == len(c) == len(d):
        raise ValueError("a, b, c and d must have the same length")
    sections = list(sections) if sections is not None else ["all"] * len(a)
    allowed = set(vocab) if vocab is not None else None
    rows, secs = [], []
    for q in zip(a, b, c, d, sections):
        words = [w.lower() for w in q[:4]] if lowercase else list(q[:4])
        if all(w in wv and (allowed is None or w in allowed) for w in words):
            rows.append([wv.index[w] for w in words])
            secs.append(q[4])
    idx = np.array(rows, dtype=np.int64).reshape(-1, 4)
    correct = np.zeros(len(idx), dtype=bool)
    # With unit vectors, ranking by cos(w, b - a + c) equals ranking by w . (b - a + c).
    cand = np.arange(len(wv)) if allowed is None else np.array(sorted(wv.index[w] for w in allowed if w in wv))
    unit = wv.unit[cand]
    pos = np.full(len(wv), -1)
    pos[cand] = np.arange(len(cand))
    for s in range(0, len(idx), batch_size):
        q = idx[s:s + batch_size]
        target = wv.unit[q[:, 1]] - wv.unit[q[:, 0]] + wv.unit[q[:, 2]]
        sims = target @ unit.T
        rows_ = np.arange(len(q))[:, None]
        sims[rows_, pos[q[:, :3]]] = -np.inf  # the question words are never the answer
        correct[s:s + len(q)] = cand[sims.argmax(1)] == q[:, 3]
    by_section: dict[str, float] = {}
    secs_arr = np.array(secs)
    for name in dict.fromkeys(secs):
        m = secs_arr == name
        by_section[name] = float(correct[m].mean())
    n = len(idx)
    return {"accuracy": float(correct.mean()) if n else float("nan"), "correct": int(correct.sum()), "n": n,
            "total": len(a), "coverage": n / max(len(a), 1), "by_section": by_section,
            "section_n": {k: int((secs_arr == k).sum()) for k in by_section}}
