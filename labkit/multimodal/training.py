"""The training loop of the chapter: AdamW, decay on matrices only, a cosine schedule."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..train import param_groups


def fit(model: nn.Module, loss_fn: Callable[..., torch.Tensor], data: Sequence[torch.Tensor], epochs: int,
        batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 0.01, seed: int = 0,
        after_step: Callable[[], None] | None = None, desc: str | None = None) -> list[float]:
    """Train `model` with AdamW and a cosine learning-rate schedule; returns the mean loss per epoch.

    `data` are tensors with the same first dimension, shuffled together each epoch;
    `loss_fn(model, *batch)` returns the scalar loss; `after_step` runs after each update (e.g.
    `clip.clamp_`).

    >>> m = nn.Linear(2, 1); x, y = torch.randn(64, 2), torch.randn(64, 1)
    >>> len(fit(m, lambda m, a, b: nn.functional.mse_loss(m(a), b), [x, y], epochs=3))
    3
    """
    from tqdm.auto import tqdm

    n = len(data[0])
    if any(len(t) != n for t in data):
        raise ValueError(f"all tensors in data need the same length; got {[len(t) for t in data]}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    g = torch.Generator().manual_seed(seed)
    # Decay matrices only (CLIP's logit scale included in the no-decay group): the book's one rule.
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=desc is None, leave=False):
        perm, total = torch.randperm(n, generator=g), 0.0
        for i in range(0, n, batch_size):
            batch = [t[perm[i:i + batch_size]] for t in data]
            loss = loss_fn(model, *batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
            total += loss.item() * len(batch[0])
        history.append(total / n)
    model.eval()
    return history
