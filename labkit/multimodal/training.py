"""The training loop of the chapter: `labkit.train.fit` by epochs (AdamW, decay on matrices only,
cosine annealing to zero with `labkit.train.lr_at`, no clipping), returning the mean loss per epoch."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..train import fit as fit_steps
from ..train import shuffled_batches


def fit(model: nn.Module, loss_fn: Callable[..., torch.Tensor], data: Sequence[torch.Tensor], epochs: int,
        batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 0.01, seed: int = 0,
        after_step: Callable[[], None] | None = None, desc: str | None = None) -> list[float]:
    """Train `model` with AdamW and a cosine learning-rate schedule; returns the mean loss per epoch.

    `data` are tensors with the same first dimension, shuffled together each epoch;
    `loss_fn(model, *batch)` returns the scalar loss; `after_step` runs after each update (e.g.
    `clip.clamp_`). Training runs where the model is; a progress bar is shown when `desc` is given.

    >>> m = nn.Linear(2, 1); x, y = torch.randn(64, 2), torch.randn(64, 1)
    >>> len(fit(m, lambda m, a, b: nn.functional.mse_loss(m(a), b), [x, y], epochs=3))
    3
    """
    n = len(data[0])
    if any(len(t) != n for t in data):
        raise ValueError(f"all tensors in data need the same length; got {[len(t) for t in data]}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    steps_per_epoch = math.ceil(n / batch_size)
    sizes = [len(idx) for idx in torch.arange(n).split(batch_size)]  # the last batch may be smaller
    batches = ([t[idx] for t in data] for idx in shuffled_batches(n, batch_size, epochs,
                                                                   torch.Generator().manual_seed(seed)))

    def hook(step: int, h) -> None:  # whatever after_step returns, it never stops training
        after_step()

    # CLIP's logit scale is 0-D, so the one weight-decay rule leaves it undecayed.
    run = fit_steps(model, batches, lambda m, batch: loss_fn(m, *batch), steps=epochs * steps_per_epoch, lr=lr,
                    weight_decay=weight_decay, warmup=0.0, min_lr_ratio=0.0, clip=None,
                    device=next(model.parameters()).device, mixed_precision=False, progress=desc is not None,
                    desc=desc or "train",
                    on_step=None if after_step is None else hook)
    history = []
    for e in range(epochs):  # the mean loss of each epoch, weighted by batch size
        total = 0.0
        for loss, size in zip(run.train_loss[e * steps_per_epoch:(e + 1) * steps_per_epoch], sizes):
            total += loss * size
        history.append(total / n)
    return history
