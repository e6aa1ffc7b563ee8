"""DP-SGD written out: `per_sample_grads`, `clip_and_noise` and `dp_sgd_step` (clip each example's
gradient, add Gaussian noise, step).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F  # noqa: F401 (the docstring examples use it)
from torch import nn


def per_sample_grads(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of the loss of each example separately: {name: (batch, *param.shape)}.

    >>> g = per_sample_grads(nn.Linear(3, 2), F.cross_entropy, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))
    >>> g["weight"].shape
    torch.Size([4, 2, 3])
    """
    if len(x) != len(y):
        raise ValueError(f"x and y need the same batch size; got {len(x)} and {len(y)}")
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        # A batch of one: the per-example loss is the loss of a one-example batch.
        out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, x, y)


def clip_and_noise(grads: dict[str, torch.Tensor], max_grad_norm: float, noise_multiplier: float,
                   expected_batch_size: int | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The DP-SGD gradient from per-example gradients: clip each to norm C, sum, add N(0, (sigma C)^2), average.

    The norm is taken over all parameters of one example together ("flat" clipping, as opacus).
    >>> g = {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]])}
    >>> clip_and_noise(g, 1.0, 0.0)["w"]
    tensor([0.4500, 0.6000])
    """
    if max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm must be > 0; got {max_grad_norm}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0; got {noise_multiplier}")
    b = next(iter(grads.values())).shape[0]
    norms = torch.stack([g.reshape(b, -1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)
    # Same factor as opacus: C / (norm + 1e-6), capped at 1, so a small gradient is left alone.
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    out = {}
    for k, g in grads.items():
        s = torch.einsum("b,b...->...", factor, g)
        noise = torch.normal(0.0, noise_multiplier * max_grad_norm, s.shape, generator=generator)
        # Divide by the *expected* batch size: with Poisson sampling the real size is itself private.
        out[k] = (s + noise) / (expected_batch_size or b)
    return out


def dp_sgd_step(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, lr: float,
                max_grad_norm: float, noise_multiplier: float, expected_batch_size: int | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One step of DP-SGD written out: per-example gradients, clipping, noise, plain SGD update.

    >>> m = nn.Linear(3, 2)
    >>> _ = dp_sgd_step(m, F.cross_entropy, torch.randn(8, 3), torch.randint(0, 2, (8,)), 0.1, 1.0, 1.0)
    """
    grads = clip_and_noise(per_sample_grads(model, loss_fn, x, y), max_grad_norm, noise_multiplier,
                           expected_batch_size, generator)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p -= lr * grads[name]
    return grads
