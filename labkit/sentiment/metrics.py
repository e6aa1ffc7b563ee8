"""Evaluating a sentiment classifier (chapter 14): accuracy, macro-F1, confusion, calibration, rank
correlation, label noise (confident learning) and the choice of a best model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


# --- evaluation ---------------------------------------------------------------------------------------

@dataclass
class BinaryReport:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray  # rows = true label (0, 1), columns = predicted label

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


def binary_report(labels: Sequence[int], predictions: Sequence[int]) -> BinaryReport:
    """Accuracy, macro-F1 (the mean of the F1 of each class) and the 2x2 confusion matrix.

    >>> r = binary_report([1, 1, 0, 0], [1, 0, 0, 0]); r.accuracy, round(r.macro_f1, 3)
    (0.75, 0.733)
    """
    y, p = _binary(labels, "labels"), _binary(predictions, "predictions")
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (y, p), 1)
    f1 = []
    for c in (0, 1):
        tp, fp, fn = cm[c, c], cm[1 - c, c], cm[c, 1 - c]
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return BinaryReport(float(np.mean(y == p)), float(np.mean(f1)), cm)


def reliability(labels: Sequence[int], prob_positive: Sequence[float], n_bins: int = 10):
    """Reliability diagram data with equal-width bins on the confidence of the predicted class.

    Returns (confidence, accuracy, count) per non-empty bin.
    >>> conf, acc, n = reliability([1, 0, 1, 1], [0.9, 0.2, 0.6, 0.3], n_bins=2)
    """
    y = _binary(labels, "labels")
    p = np.asarray(prob_positive, dtype=float)
    if p.shape != y.shape or np.any((p < 0) | (p > 1)):
        raise ValueError("prob_positive must hold one probability in [0, 1] per label")
    pred = (p >= 0.5).astype(int)
    conf = np.where(pred == 1, p, 1 - p)  # in [0.5, 1]
    correct = (pred == y).astype(float)
    # Bins over [0.5, 1]: binary confidence never goes below one half.
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out_c, out_a, out_n = [], [], []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out_c.append(conf[m].mean())
            out_a.append(correct[m].mean())
            out_n.append(int(m.sum()))
    return np.array(out_c), np.array(out_a), np.array(out_n)


def expected_calibration_error(labels: Sequence[int], prob_positive: Sequence[float], n_bins: int = 10) -> float:
    """ECE (期望校准误差): sum over bins of (bin size / n) * |accuracy - mean confidence|.

    >>> expected_calibration_error([1, 0], [1.0, 0.0])
    0.0
    """
    conf, acc, n = reliability(labels, prob_positive, n_bins)
    return float(np.sum(n / n.sum() * np.abs(acc - conf)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson correlation of the ranks (ties get their average rank).

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
    0.8
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("spearman needs two 1-d sequences of the same length (at least 2)")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra ** 2).sum() * (rb ** 2).sum()))


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    r = np.empty(len(a))
    r[order] = np.arange(1, len(a) + 1)
    # Tied values share the mean of the ranks they span.
    vals, inv = np.unique(a, return_inverse=True)
    return np.bincount(inv, weights=r)[inv] / np.bincount(inv)[inv]


# --- label noise -----------------------------------------------------------------------------------

def confident_joint(labels: Sequence[int], prob_positive: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """Confident learning (Northcutt, Jiang & Chuang 2021) for two classes, from out-of-sample probabilities.

    Each class j gets a threshold t_j, the mean predicted probability of j over the examples labelled j.
    An example counts towards class j when its probability of j reaches t_j (the larger one when both
    do). Returns the confident joint C (rows: given label, columns: likely true label), the mask of
    examples whose likely true label differs from the given one, and the estimated share of wrong
    labels (C calibrated to the class counts, off-diagonal mass over the total).

    >>> C, flagged, rate = confident_joint([0, 0, 0, 1, 1, 1], [0.0, 0.25, 0.875, 0.5, 1.0, 0.75])
    >>> C.tolist(), flagged.tolist(), round(rate, 3)
    ([[2, 1], [0, 2]], [False, False, True, False, False, False], 0.167)
    """
    y = _binary(labels, "labels")
    p = np.asarray(prob_positive, dtype=float)
    if p.shape != y.shape or ((p < 0) | (p > 1)).any():
        raise ValueError("prob_positive must be probabilities in [0, 1], one per label")
    if len(np.unique(y)) < 2:
        raise ValueError("confident learning needs examples of both labels")
    probs = np.stack([1 - p, p], axis=1)
    t = np.array([probs[y == j, j].mean() for j in (0, 1)])
    above = probs >= t
    likely = np.where(above.all(1), probs.argmax(1), np.where(above.any(1), above.argmax(1), -1))
    C = np.array([[int(((y == i) & (likely == j)).sum()) for j in (0, 1)] for i in (0, 1)])
    calibrated = C / np.maximum(C.sum(1, keepdims=True), 1) * np.bincount(y, minlength=2)[:, None]
    return C, (likely >= 0) & (likely != y), float((calibrated[0, 1] + calibrated[1, 0]) / calibrated.sum())


# --- helpers --------------------------------------------------------------------------------------

def best_model(scores: dict[str, float]) -> str:
    """The name with the highest score (ties: the first listed).

    >>> best_model({"tfidf": 0.8, "bert": 0.9})
    'bert'
    """
    if not scores:
        raise ValueError("no models to choose from")
    return max(scores, key=lambda k: (scores[k], -list(scores).index(k)))


def _binary(values, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or not np.isin(a, (0, 1)).all():
        raise ValueError(f"{what} must be a 1-d sequence of 0/1 values")
    return a.astype(int)
