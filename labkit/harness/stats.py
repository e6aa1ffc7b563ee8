"""How sure is a score? Bootstrap intervals, paired tests, sample sizes, agreement and calibration.

- `bootstrap_ci`: percentile bootstrap (自助法) interval of a mean over items;
- `paired_bootstrap`, `permutation_test`: two models on the *same* items; the per-item differences
  carry the comparison, so pairing removes the variance of item difficulty;
- `items_needed`: how many items a difference of a given size needs to be detected;
- `cohen_kappa`: agreement of two raters beyond chance (a judge against exact match);
- `ece`, `reliability`: calibration (校准) of the probability a model gives its answer.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _vec(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError(f"{name} is empty: nothing to estimate")
    return v


def bootstrap_means(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of `n_boot` resamples of the items, drawn with replacement.

    >>> bootstrap_means([1.0, 1.0, 1.0], n_boot=3).tolist()
    [1.0, 1.0, 1.0]
    """
    v = _vec(values)
    rng = np.random.default_rng(seed)
    return v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap 1 - alpha interval of the mean over items.

    >>> m, lo, hi = bootstrap_ci([0, 1] * 50); m, round(hi - lo, 2)
    (0.5, 0.2)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    means = bootstrap_means(values, n_boot, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(np.mean(values)), float(lo), float(hi)


def _paired(a, b) -> np.ndarray:
    a, b = _vec(a, "a"), _vec(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same items: {a.size} vs {b.size} values")
    return a - b


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float, float]:
    """(mean difference a - b, low, high): items resampled together, so both models see the same draw.

    >>> paired_bootstrap([1, 1, 0, 1], [1, 0, 0, 1], n_boot=500)[0]
    0.25
    """
    d = _paired(a, b)
    return bootstrap_ci(d, n_boot, alpha, seed)


def permutation_test(a: Sequence[float], b: Sequence[float], n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of mean(a - b) = 0.

    Under the null hypothesis the two models are exchangeable on every item, so each item's difference
    is equally likely to have either sign; the p-value counts flips at least as extreme as observed
    (the observed assignment included, so p is never 0).

    >>> permutation_test([1] * 20, [0] * 20) < 0.001
    True
    """
    d = _paired(a, b)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    obs = abs(d.mean())
    return float((1 + np.sum(null >= obs - 1e-12)) / (n_perm + 1))


def items_needed(delta: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Items a paired comparison needs to detect a true mean difference `delta` with this `power`.

    Normal approximation: n = ((z_{1-alpha/2} + z_{power}) * sd_diff / delta)^2, where sd_diff is the
    standard deviation of the per-item differences (measure it on a pilot run).

    >>> items_needed(0.02, 0.3)
    1766
    """
    from statistics import NormalDist

    if delta <= 0 or sd_diff < 0:
        raise ValueError(f"need delta > 0 and sd_diff >= 0, got delta={delta}, sd_diff={sd_diff}")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return int(math.ceil((z * sd_diff / delta) ** 2))


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa: (p_o - p_e) / (1 - p_e), observed agreement beyond the agreement expected by chance.

    Undefined (nan) when both raters give one and the same label to every item (p_e = 1), as in
    scikit-learn.

    >>> round(cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]), 3)
    0.5
    """
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError(f"kappa needs two equally long, non-empty label lists ({len(a)} vs {len(b)})")
    labels = sorted(set(a) | set(b), key=str)
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    p_e = sum((a.count(k) / n) * (b.count(k) / n) for k in labels)
    return float("nan") if p_e == 1 else (p_o - p_e) / (1 - p_e)


def reliability(confidence: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-width confidence bins: each with its count, mean confidence and accuracy (for a diagram).

    Bins are [lo, hi), the last one including 1, as torchmetrics counts them.

    >>> [b["count"] for b in reliability([0.05, 0.95, 0.9], [0, 1, 1], n_bins=2)]
    [1, 2]
    """
    conf, corr = _vec(confidence, "confidence"), _vec(correct, "correct")
    if conf.shape != corr.shape:
        raise ValueError(f"{conf.size} confidences but {corr.size} correctness values")
    if n_bins < 1 or conf.min() < 0 or conf.max() > 1:
        raise ValueError("need n_bins >= 1 and confidences in [0, 1]")
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    out = []
    for k in range(n_bins):
        m = idx == k
        out.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "count": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else float("nan"),
                    "accuracy": float(corr[m].mean()) if m.any() else float("nan")})
    return out


def ece(confidence: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (items in bin / n) * |accuracy - mean confidence|.

    >>> round(ece([0.9, 0.9, 0.6, 0.6], [1, 1, 1, 0]), 3)
    0.1
    """
    bins = reliability(confidence, correct, n_bins)
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))
