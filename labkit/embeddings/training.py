"""What the two trainers (`train_sgns`, `train_glove`) share: their result, a progress bar and a
setting of torch's CPU threads.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .vectors import WordVectors


@dataclass
class TrainResult:
    """What `train_sgns` / `train_glove` return: the model, its word vectors and the loss history."""

    model: nn.Module
    vectors: "WordVectors"
    losses: list[float]  # mean loss per epoch
    seconds: float


def _progress(total: int, disable: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=disable, desc=desc)


@contextmanager
def _threads(n: int | None):
    """Run a block with `n` torch CPU threads, then restore the previous setting."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
