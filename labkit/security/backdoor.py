"""Data poisoning (数据投毒) and backdoors (后门), and spectral-signature detection.

An attacker who can write a small share of a fine-tuning set adds a rare *trigger* phrase to some
examples and sets their label to the *target* class. The trained model behaves normally on clean
text (so clean accuracy barely moves), but any input with the trigger goes to the target class.

*Attack success rate* (ASR): the share of test inputs that are not of the target class, with the
trigger added, that the model puts in the target class.

*Spectral signatures* (Tran, Li & Madry, 2018): inside the target class, the poisoned examples share
one strong feature, so they stand out along the top singular vector of the centred representations.
Score each example by its squared projection on that vector and remove the highest scores.

>>> add_trigger("很好用", "cf", where="end")
'很好用cf'
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

__all__ = ["add_trigger", "poison", "attack_success", "top_singular_vector", "spectral_scores",
           "recall_at_removal"]


def add_trigger(text: str, trigger: str, where: str = "end", seed: int = 0) -> str:
    """Insert the trigger at the 'start', the 'end' or a 'random' character position.

    >>> add_trigger("abc", "X", "start")
    'Xabc'
    """
    if where == "start":
        return trigger + text
    if where == "end":
        return text + trigger
    if where == "random":
        k = random.Random(seed).randint(0, len(text))
        return text[:k] + trigger + text[k:]
    raise ValueError(f"where must be 'start', 'end' or 'random', got {where!r}")


def poison(texts: Sequence[str], labels: Sequence[int], share: float, trigger: str, target: int = 1,
           seed: int = 0, where: str = "random") -> tuple[list[str], list[int], np.ndarray]:
    """Plant the trigger in `share` of the training set: copies of non-target examples, trigger added,
    label set to `target`, appended (the attacker adds data, the clean data stays).

    Returns (texts, labels, is_poisoned).

    >>> t, y, p = poison(["a", "b", "c", "d"], [0, 0, 1, 1], 0.5, "X", seed=0); y, p.tolist()
    ([0, 0, 1, 1, 1, 1], [False, False, False, False, True, True])
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    rng = random.Random(seed)
    source = [i for i, y in enumerate(labels) if y != target]
    n = min(len(source), int(round(share * len(texts))))
    picked = rng.sample(source, n)
    new_t = list(texts) + [add_trigger(texts[i], trigger, where, seed + i) for i in picked]
    new_y = list(labels) + [target] * n
    return new_t, new_y, np.array([False] * len(texts) + [True] * n)


def attack_success(predict, texts: Sequence[str], labels: Sequence[int], trigger: str, target: int = 1,
                   where: str = "random", seed: int = 0) -> float:
    """ASR: share of non-target test texts that `predict` (texts -> labels) puts in `target` once triggered.

    >>> attack_success(lambda xs: [int("X" in x) for x in xs], ["a", "b"], [0, 0], "X")
    1.0
    """
    victims = [t for t, y in zip(texts, labels) if y != target]
    if not victims:
        raise ValueError("no test text outside the target class")
    triggered = [add_trigger(t, trigger, where, seed + i) for i, t in enumerate(victims)]
    return float(np.mean(np.asarray(predict(triggered)) == target))


def top_singular_vector(R: np.ndarray, iters: int = 200, seed: int = 0) -> np.ndarray:
    """Top right singular vector of the column-centred matrix R, by power iteration on R^T R.

    >>> v = top_singular_vector(np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
    >>> np.abs(v).round(3).tolist()
    [1.0, 0.0]
    """
    M = R - R.mean(axis=0, keepdims=True)
    v = np.random.default_rng(seed).standard_normal(M.shape[1])
    v /= np.linalg.norm(v)
    for _ in range(iters):
        w = M.T @ (M @ v)
        norm = np.linalg.norm(w)
        if norm == 0:
            break
        w /= norm
        if np.linalg.norm(w - v) < 1e-12:
            v = w
            break
        v = w
    return v


def spectral_scores(R: np.ndarray, iters: int = 200, seed: int = 0) -> np.ndarray:
    """Outlier score of each row: its squared projection on the top singular vector (centred).

    >>> s = spectral_scores(np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0]])); int(s.argmax())
    3
    """
    v = top_singular_vector(R, iters, seed)
    return ((R - R.mean(axis=0, keepdims=True)) @ v) ** 2


def recall_at_removal(scores: np.ndarray, is_poisoned: np.ndarray, n_remove: int) -> float:
    """Share of the poisoned rows among the `n_remove` highest scores (recall of the detector).

    >>> recall_at_removal(np.array([0.1, 0.9, 0.8]), np.array([False, True, False]), 1)
    1.0
    """
    if is_poisoned.sum() == 0:
        return float("nan")
    top = np.argsort(-scores)[:n_remove]
    return float(is_poisoned[top].sum() / is_poisoned.sum())
