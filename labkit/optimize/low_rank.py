"""Low-rank factorisation: a Linear layer replaced by two thinner ones (truncated SVD)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import OptimizeError
from .linears import _replace_linears


def svd_linear(linear: nn.Linear, rank: int) -> nn.Sequential:
    """Replace W (out x in) by two thinner layers B A with A = S_r^(1/2) V_r^T, B = U_r S_r^(1/2).

    Truncated SVD gives the best rank-r approximation in Frobenius norm (Eckart-Young); the
    layer costs r (in + out) multiply-adds per input instead of in * out.

    >>> f = svd_linear(torch.nn.Linear(64, 32), rank=32); x = torch.randn(2, 64)
    >>> bool(torch.allclose(f(x), f[1].bias + x @ (f[1].weight @ f[0].weight).T, atol=1e-5))
    True
    """
    out_f, in_f = linear.weight.shape
    if not 1 <= rank <= min(out_f, in_f):
        raise OptimizeError(f"rank must be in 1..{min(out_f, in_f)} for a {out_f}x{in_f} layer, got {rank}")
    with torch.no_grad():
        u, s, vh = torch.linalg.svd(linear.weight.detach().double(), full_matrices=False)
        root = s[:rank].sqrt()
        a = nn.Linear(in_f, rank, bias=False)
        b = nn.Linear(rank, out_f, bias=linear.bias is not None)
        a.weight.copy_((root[:, None] * vh[:rank]).float())
        b.weight.copy_((u[:, :rank] * root).float())
        if linear.bias is not None:
            b.bias.copy_(linear.bias)
    return nn.Sequential(a, b)


def low_rank_(model: nn.Module, rank_fraction: float, skip: Sequence[str] = ("classifier", "pooler")) -> int:
    """Factorise every Linear whose factorised form is smaller; returns parameters removed.

    The rank of each layer is `rank_fraction * min(out, in)` (at least 1).

    >>> m = torch.nn.Sequential(torch.nn.Linear(64, 64)); low_rank_(m, 0.25, skip=())  # 64*64 -> 16*(64+64)
    2048
    """
    if not 0 < rank_fraction <= 1:
        raise OptimizeError(f"rank_fraction must be in (0, 1], got {rank_fraction}")
    before = sum(p.numel() for p in model.parameters())

    def make(lin: nn.Linear) -> nn.Module:
        r = max(1, int(round(rank_fraction * min(lin.weight.shape))))
        if r * sum(lin.weight.shape) >= lin.weight.numel():
            return lin  # factorising would not save anything
        return svd_linear(lin, r)

    _replace_linears(model, make, skip)
    return before - sum(p.numel() for p in model.parameters())
