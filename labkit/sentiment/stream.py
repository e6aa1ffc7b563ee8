"""Sentiment over time (chapter 14): a dated review stream with known changes, a rolling mean, and
change points by binary segmentation.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .metrics import _binary


# --- sentiment over time ----------------------------------------------------------------------------

def review_stream(texts: Sequence[str], labels: Sequence[int], days: int = 180, per_day: int = 6,
                  regimes: Sequence[tuple[int, float]] = ((0, 0.75), (60, 0.3), (120, 0.6)),
                  start: str = "2024-01-01", seed: int = 0):
    """A dated stream of reviews whose share of positives changes at known days.

    regimes: (first day, probability that a review is positive) pairs, in order, the first at day 0.
    Returns a pandas DataFrame with columns date, day, index (into `texts`), text, label; reviews are
    drawn with replacement from the positive or the negative pool.
    >>> df = review_stream(texts, labels, days=90, regimes=[(0, 0.8), (45, 0.3)])   # doctest: +SKIP
    """
    import pandas as pd

    y = _binary(labels, "labels")
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    starts = [d for d, _ in regimes]
    if not regimes or starts[0] != 0 or starts != sorted(starts) or starts[-1] >= days:
        raise ValueError("regimes must start at day 0, be in increasing order and lie within `days`")
    if any(not 0 <= q <= 1 for _, q in regimes):
        raise ValueError("each regime's positive share must be in [0, 1]")
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(y == c) for c in (0, 1)]
    if any(len(pl) == 0 for pl in pools):
        raise ValueError("review_stream needs positive and negative texts")
    rows = []
    for day in range(days):
        q = [share for d, share in regimes if d <= day][-1]
        for _ in range(per_day):
            c = int(rng.random() < q)
            i = int(rng.choice(pools[c]))
            rows.append((day, i, texts[i], c))
    df = pd.DataFrame(rows, columns=["day", "index", "text", "label"])
    df.insert(0, "date", pd.Timestamp(start) + pd.to_timedelta(df["day"], unit="D"))
    return df


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start), like pandas' rolling(min_periods=1).

    >>> rolling_mean([1, 2, 3, 4], 2)
    array([1. , 1.5, 2.5, 3.5])
    """
    v = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    c = np.concatenate([[0.0], np.cumsum(v)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(hi - window, 0)
    return (c[hi] - c[lo]) / (hi - lo)


def change_points(values: Sequence[float], max_points: int = 5, min_size: int = 5,
                  penalty: float | None = None) -> list[int]:
    """Where the mean of a series shifts: binary segmentation (二分分割) with a squared-error cost.

    Each step splits the segment whose best split lowers the cost most, while that gain exceeds
    `penalty` (default: 2 * variance estimate * ln n, a BIC-like rule). Returns sorted indices i, the
    first index of each new segment.
    >>> change_points([0.0] * 20 + [1.0] * 20, max_points=2)
    [20]
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2 * min_size:
        return []
    if penalty is None:
        # Noise scale from differences of neighbours: a mean shift barely moves it.
        sigma2 = np.median(np.abs(np.diff(v))) ** 2 / (2 * 0.6745 ** 2) if n > 2 else v.var()
        penalty = 2 * max(sigma2, 1e-12) * math.log(n)
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = np.concatenate([[0.0], np.cumsum(v * v)])

    def cost(a: int, b: int) -> float:  # squared error of v[a:b] around its mean
        s = c1[b] - c1[a]
        return c2[b] - c2[a] - s * s / (b - a)

    def best_split(a: int, b: int) -> tuple[float, int]:
        if b - a < 2 * min_size:
            return 0.0, -1
        ks = np.arange(a + min_size, b - min_size + 1)
        gains = [cost(a, b) - cost(a, k) - cost(k, b) for k in ks]
        j = int(np.argmax(gains))
        return float(gains[j]), int(ks[j])

    segments, points = [(0, n)], []
    while len(points) < max_points:
        cands = [(best_split(a, b), (a, b)) for a, b in segments]
        (gain, k), (a, b) = max(cands, key=lambda c: c[0][0])
        if k < 0 or gain <= penalty:
            break
        points.append(k)
        segments.remove((a, b))
        segments += [(a, k), (k, b)]
    return sorted(points)
