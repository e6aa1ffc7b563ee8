"""Monitoring in deployment: latency per call and drift of the predicted scores (PSI)."""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from .errors import OptimizeError


def psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """Population stability index of two samples of a score in [0, 1]: sum (c - r) ln(c / r)
    over equal-width bins of the two samples' proportions r and c. Rule of thumb: < 0.1 stable,
    0.1-0.25 shifting, > 0.25 drifted. Both proportions are smoothed alike, p -> (p + e) / (1 + e *
    bins) with e = 0.5 / (size of the smaller sample): half a pseudo-count, so no log(0) for an empty
    bin, and two samples of different sizes from the same distribution score 0 (half a count added
    to each sample's own counts would not: it weighs more in the smaller one). PSI of small samples
    is noisy: with 5 bins, two windows of 20 scores from one distribution often exceed 0.25.

    >>> round(psi([0.1, 0.2, 0.8, 0.9], [0.1, 0.2, 0.8, 0.9] * 5), 6)
    0.0
    """
    edges = np.linspace(0, 1, bins + 1)
    r, c = (np.histogram(np.clip(np.asarray(x, dtype=float), 0, 1), edges)[0] for x in (reference, current))
    if r.sum() == 0 or c.sum() == 0:
        raise ValueError("psi needs at least one reference score and one current score")
    e = 0.5 / min(r.sum(), c.sum())
    r, c = ((x / x.sum() + e) / (1 + e * bins) for x in (r, c))
    return float(((c - r) * np.log(c / r)).sum())


class Monitor:
    """Wraps a predict function: logs latency per call and watches the predicted scores drift.

    `reference` is a sample of scores the model gave on held-out data like the data it will serve
    (not its training data, where it is over-confident). Every `window` predictions, the monitor
    compares the window's scores with it (PSI over `bins` bins) and notes an alert when
    PSI > `psi_alert` or the window's p90 latency exceeds `latency_budget_ms`.

    >>> mon = Monitor(lambda texts: [0.9] * len(texts), reference=[0.9] * 50, window=10)
    >>> _ = mon(["a"] * 10); mon.log[-1]["psi"] < 0.1
    True
    """

    def __init__(self, predict: Callable[[list[str]], Sequence[float]], reference: Sequence[float],
                 window: int = 50, psi_alert: float = 0.25, latency_budget_ms: float = float("inf"),
                 bins: int = 10):
        if window < 2:
            raise OptimizeError(f"window must be >= 2 predictions, got {window}")
        if bins < 2:
            raise OptimizeError(f"bins must be >= 2, got {bins}")
        self.bins = bins
        self.predict, self.reference, self.window = predict, list(reference), window
        self.psi_alert, self.latency_budget_ms = psi_alert, latency_budget_ms
        self._scores: list[float] = []
        self._lat: list[float] = []
        self.log: list[dict[str, float]] = []

    def __call__(self, texts: list[str]) -> list[float]:
        t0 = time.perf_counter()
        scores = list(map(float, self.predict(texts)))
        ms = (time.perf_counter() - t0) * 1000 / max(len(texts), 1)
        self._scores += scores
        self._lat += [ms] * len(scores)
        while len(self._scores) >= self.window:
            s, self._scores = self._scores[:self.window], self._scores[self.window:]
            lat, self._lat = self._lat[:self.window], self._lat[self.window:]
            p = psi(self.reference, s, bins=self.bins)
            p90 = float(np.percentile(lat, 90))
            self.log.append({"window": len(self.log), "psi": p, "mean_score": float(np.mean(s)),
                             "p90_ms": p90, "alert": float(p > self.psi_alert or p90 > self.latency_budget_ms)})
        return scores
