"""Quantization: affine int8/int4 written out, and the CPU kernels that make it fast."""
from __future__ import annotations

import copy
import warnings
from typing import Sequence

import torch
from torch import nn

from .errors import OptimizeError
from .linears import _prunable, _replace_linears


def quant_params(x: torch.Tensor, bits: int = 8, symmetric: bool = True,
                 dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that map the range of `x` onto `bits`-bit integers.

    Symmetric: q in [-(2^(b-1)-1), 2^(b-1)-1], zero point 0, scale = max|x| / (2^(b-1)-1).
    Affine: q in [0, 2^b - 1], scale = (max - min) / (2^b - 1), zero point = round(-min / scale).
    `dim` gives one scale per slice along that axis (per-channel), None one for the tensor.

    >>> s, z = quant_params(torch.tensor([-1.0, 0.5, 2.0]), bits=8, symmetric=False)
    >>> round(float(s), 5), int(z)
    (0.01176, 85)
    """
    if bits not in (2, 3, 4, 8):
        raise OptimizeError(f"bits must be one of 2, 3, 4, 8; got {bits}")
    x = x.detach().float()
    if dim is None:
        lo, hi = x.min(), x.max()
    else:
        d = dim % x.dim()
        other = [i for i in range(x.dim()) if i != d]
        lo, hi = x.amin(dim=other), x.amax(dim=other)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = torch.maximum(lo.abs(), hi.abs()).clamp(min=1e-12) / qmax
        return scale, torch.zeros_like(scale, dtype=torch.int64)
    # The range must contain 0 so that 0 (padding, ReLU zeros) is represented exactly.
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = ((hi - lo) / (2 ** bits - 1)).clamp(min=1e-12)
    zero = torch.round(-lo / scale).to(torch.int64)
    return scale, zero


def _qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)


def _view(t: torch.Tensor, x: torch.Tensor, dim: int | None) -> torch.Tensor:
    if dim is None or t.dim() == 0:
        return t
    shape = [1] * x.dim()
    shape[dim % x.dim()] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int = 8,
             symmetric: bool = True, dim: int | None = None) -> torch.Tensor:
    """q = clamp(round(x / scale) + zero, qmin, qmax), as int32.

    >>> quantize(torch.tensor([0.5]), torch.tensor(0.1), torch.tensor(0)).tolist()
    [5]
    """
    qmin, qmax = _qrange(bits, symmetric)
    q = torch.round(x.float() / _view(scale, x, dim)) + _view(zero, x, dim)
    return q.clamp(qmin, qmax).to(torch.int32)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """x_hat = (q - zero) * scale.

    >>> dequantize(torch.tensor([5]), torch.tensor(0.1), torch.tensor(0)).tolist()
    [0.5]
    """
    return (q.float() - _view(zero, q, dim)) * _view(scale, q, dim)


def fake_quantize(x: torch.Tensor, bits: int = 8, symmetric: bool = True, dim: int | None = None) -> torch.Tensor:
    """Quantize then dequantize: the values the low-precision model really computes with.

    >>> x = torch.randn(100); float((fake_quantize(x) - x).abs().max()) < float(x.abs().max()) / 127
    True
    """
    s, z = quant_params(x, bits, symmetric, dim)
    return dequantize(quantize(x, s, z, bits, symmetric, dim), s, z, dim)


class HandInt8Linear(nn.Module):
    """Dynamic int8 linear layer written out: the reference for what the fast kernels do.

    Weights: int8, symmetric, one scale per output row (stored once). Activations: quantized
    per call to uint8 with an affine scale and zero point from the batch's own range (that is
    what "dynamic" means). The product of integers is exact; one multiply by the two scales
    brings it back to floats: y = s_x s_w (q_x - z_x) q_w^T + b.

    >>> layer = HandInt8Linear.from_float(torch.nn.Linear(16, 4))
    >>> layer(torch.randn(2, 16)).shape
    torch.Size([2, 4])
    """

    def __init__(self, qweight: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("qweight", qweight.to(torch.int8))
        self.register_buffer("w_scale", w_scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "HandInt8Linear":
        s, z = quant_params(linear.weight, 8, symmetric=True, dim=0)
        q = quantize(linear.weight, s, z, 8, True, dim=0)
        return cls(q, s, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sx, zx = quant_params(x, 8, symmetric=False)
        qx = quantize(x, sx, zx, 8, symmetric=False)
        # int64 accumulation (float64 holds these sums exactly too): no rounding in the product.
        acc = (qx.to(torch.int64) - zx) @ self.qweight.to(torch.int64).T
        y = acc.double() * (sx.double() * self.w_scale.double())
        y = y.float()
        return y if self.bias is None else y + self.bias


class WeightOnlyInt8Linear(nn.Module):
    """Weights stored as int8 (per-row scale), activations stay float: `torch._weight_int8pack_mm`.

    Memory-bound layers (small batches, generation) gain because 4x fewer bytes are read.

    >>> layer = WeightOnlyInt8Linear.from_float(torch.nn.Linear(64, 32))
    >>> layer(torch.randn(3, 64)).shape
    torch.Size([3, 32])
    """

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("qweight", qweight.to(torch.int8).contiguous())
        self.register_buffer("scale", scale.float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "WeightOnlyInt8Linear":
        s, z = quant_params(linear.weight, 8, symmetric=True, dim=0)
        return cls(quantize(linear.weight, s, z, 8, True, dim=0), s, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(self.scale.dtype).contiguous(), self.qweight, self.scale)
        y = y.reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int4Linear(nn.Module):
    """4-bit weights in groups of `group_size` inputs (asymmetric, scale and offset per group).

    Uses PyTorch's CPU int4 kernel (`_weight_int4pack_mm_for_cpu`): 8x fewer weight bytes than
    float32. The kernel computes w = (q - 8) * scale + offset, so offset = min + 8 * scale.

    >>> layer = Int4Linear.from_float(torch.nn.Linear(128, 64), group_size=64)
    >>> layer(torch.randn(3, 128)).shape
    torch.Size([3, 64])
    """

    def __init__(self, packed: torch.Tensor, scales_zeros: torch.Tensor, group_size: int,
                 out_features: int, in_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("packed", packed)
        self.register_buffer("scales_zeros", scales_zeros)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.group_size, self.out_features, self.in_features = group_size, out_features, in_features

    @staticmethod
    def quantize_groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q in 0..15 as int32, scale, min) per group of `group_size` columns."""
        n, k = w.shape
        if k % group_size:
            raise OptimizeError(f"in_features {k} is not a multiple of group_size {group_size}")
        g = w.detach().float().reshape(n, k // group_size, group_size)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-8)
        q = torch.clamp(torch.round((g - lo) / scale), 0, 15).to(torch.int32)
        return q.reshape(n, k), scale.squeeze(-1), lo.squeeze(-1)

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int = 64) -> "Int4Linear":
        q, scale, lo = cls.quantize_groups(linear.weight, group_size)
        zeros = lo + 8 * scale
        sz = torch.stack([scale, zeros], -1).transpose(0, 1).contiguous()  # (groups, out, 2)
        packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
        return cls(packed, sz, group_size, linear.out_features, linear.in_features, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int4pack_mm_for_cpu(x.reshape(-1, shape[-1]).float().contiguous(), self.packed,
                                              self.group_size, self.scales_zeros)
        y = y.reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def weight_only(model: nn.Module, bits: int = 8, group_size: int = 64,
                skip: Sequence[str] = ("classifier", "lm_head")) -> nn.Module:
    """A copy of `model` whose Linear layers keep int8 or int4 weights (activations stay float).

    >>> q = weight_only(torch.nn.Sequential(torch.nn.Linear(64, 64)), bits=4, skip=())
    >>> type(q[0]).__name__
    'Int4Linear'
    """
    if bits not in (4, 8):
        raise OptimizeError(f"weight-only quantization supports bits=8 or bits=4, got {bits}")
    model = copy.deepcopy(model).float().eval()
    make = (WeightOnlyInt8Linear.from_float if bits == 8
            else lambda lin: Int4Linear.from_float(lin, group_size))
    if _replace_linears(model, make, skip) == 0:
        raise OptimizeError("no nn.Linear layer was found to quantize (check `skip`)")
    return model


def dequantized_copy(model: nn.Module, bits: int = 8, group_size: int = 64,
                     skip: Sequence[str] = ("classifier", "lm_head")) -> nn.Module:
    """A float copy whose Linear weights are replaced by their int8 (per row) or int4 (per group)
    dequantized values: the same numbers the weight-only kernels compute with, at float speed.
    Use it to measure quality; use `weight_only` to measure size and kernel speed.

    >>> m = dequantized_copy(torch.nn.Sequential(torch.nn.Linear(64, 8)), bits=4, skip=())
    >>> len(torch.unique(m[0].weight[0, :64]))  <= 16
    True
    """
    if bits not in (4, 8):
        raise OptimizeError(f"bits must be 8 or 4, got {bits}")
    model = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        for _, lin in _prunable(model, skip):
            if bits == 8:
                lin.weight.copy_(fake_quantize(lin.weight, 8, True, dim=0))
            else:
                q, scale, lo = Int4Linear.quantize_groups(lin.weight, group_size)
                n, k = lin.weight.shape
                w = q.float().reshape(n, k // group_size, group_size) * scale[..., None] + lo[..., None]
                lin.weight.copy_(w.reshape(n, k))
    return model


def dynamic_int8(model: nn.Module, skip: Sequence[str] = ()) -> nn.Module:
    """Post-training dynamic int8 quantization of every Linear (`torch.ao.quantization.quantize_dynamic`).

    torch.ao.quantization is deprecated in favour of `torchao` (which this book does not need);
    its x86 kernels (fbgemm/oneDNN) still ship with PyTorch, so we use them and hide the warning.

    >>> q = dynamic_int8(torch.nn.Sequential(torch.nn.Linear(8, 8)))
    >>> type(q[0]).__module__
    'torch.ao.nn.quantized.dynamic.modules.linear'
    """
    from torch.ao.quantization import quantize_dynamic

    model = copy.deepcopy(model).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if skip:
            names = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not any(s in n for s in skip)}
            return quantize_dynamic(model, names, dtype=torch.qint8)
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
