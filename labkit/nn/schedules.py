"""Learning-rate schedules.

Each schedule is a multiplier of the base learning rate as a function of the step (0, 1, 2, ...),
the same contract as torch.optim.lr_scheduler.LambdaLR's lr_lambda.
"""
from __future__ import annotations

from typing import Callable

from ..train import lr_at


def _check_steps(**kw: int) -> None:
    for k, v in kw.items():
        if int(v) < 1:
            raise ValueError(f"{k} must be >= 1, got {v}")


def linear_warmup(step: int, warmup_steps: int, start_factor: float = 0.0) -> float:
    """Ramp from start_factor to 1 over warmup_steps, then stay at 1 (torch's LinearLR with end_factor=1).

    >>> [linear_warmup(s, 4) for s in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    _check_steps(warmup_steps=warmup_steps)
    return start_factor + (1.0 - start_factor) * min(step, warmup_steps) / warmup_steps


def cosine(step: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Half a cosine from 1 down to min_factor at total_steps, flat afterwards (CosineAnnealingLR).

    >>> [round(cosine(s, 4), 3) for s in range(5)]
    [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    _check_steps(total_steps=total_steps)
    t = min(step, total_steps) / total_steps
    return lr_at(t, 1.0, warmup=0.0, min_lr_ratio=min_factor)  # the book's one cosine (labkit.train)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Linear warm-up from 0, then cosine decay to min_factor (transformers' cosine-with-warmup schedule).

    >>> [round(warmup_cosine(s, 2, 6), 3) for s in range(7)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    _check_steps(warmup_steps=warmup_steps, total_steps=total_steps)
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    if step < warmup_steps:
        return step / warmup_steps
    return cosine(step - warmup_steps, total_steps - warmup_steps, min_factor)


def exponential(step: int, gamma: float) -> float:
    """gamma ** step (torch's ExponentialLR).

    >>> exponential(3, 0.5)
    0.125
    """
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1] for a decay, got {gamma}")
    return gamma ** step


class LambdaLR:
    """Set each group's lr to base_lr * lr_lambda(step), like torch.optim.lr_scheduler.LambdaLR.

    >>> import torch; from labkit.nn.optimizers import SGD
    >>> opt = SGD([torch.zeros(1, requires_grad=True)], lr=1.0); sch = LambdaLR(opt, lambda s: 0.5 ** s)
    >>> sch.step(); sch.get_last_lr()
    [0.5]
    """

    def __init__(self, optimizer, lr_lambda: Callable[[int], float]):
        if not callable(lr_lambda):
            raise TypeError("lr_lambda must be a function of the step, e.g. lambda s: cosine(s, 1000)")
        self.optimizer, self.lr_lambda, self.last_epoch = optimizer, lr_lambda, 0
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self._apply()

    def _apply(self) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * self.lr_lambda(self.last_epoch)

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]
