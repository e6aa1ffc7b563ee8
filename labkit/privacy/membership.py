"""Membership inference: `roc_auc` and `loss_threshold_attack` (members tend to have lower loss).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def roc_auc(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve (fpr, tpr) and its area for "positive has the higher score"; ties count one half.

    >>> roc_auc([0.9, 0.8], [0.1, 0.85])[2]
    0.75
    """
    pos, neg = np.asarray(scores_pos, float), np.asarray(scores_neg, float)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    # AUC = P(score_pos > score_neg) + 0.5 P(equal): the Mann-Whitney U statistic, from average ranks.
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    auc = (ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    thresholds = np.unique(allv)[::-1]
    tpr = np.r_[0.0, [(pos >= t).mean() for t in thresholds]]
    fpr = np.r_[0.0, [(neg >= t).mean() for t in thresholds]]
    return fpr, tpr, float(auc)


def loss_threshold_attack(member_losses: Sequence[float], nonmember_losses: Sequence[float]):
    """Membership inference by loss (Yeom et al. 2018): a low loss says "was in the training set".

    Returns (fpr, tpr, auc) over all thresholds. 0.5 is a coin toss; 1.0 tells members apart perfectly.
    >>> loss_threshold_attack([0.1, 0.2], [0.9, 1.5])[2]
    1.0
    """
    return roc_auc(-np.asarray(member_losses, float), -np.asarray(nonmember_losses, float))
