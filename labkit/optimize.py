"""Making a trained model smaller and faster, and training it on more than one process.

Measuring (`benchmark`, `compare_latency`, `size_on_disk_mb`, `peak_memory_mb`), quantization
written out (`quant_params`, `fake_quantize`, `HandInt8Linear`) and the fast CPU kernels
(`dynamic_int8`, `weight_only`), pruning (`prune_magnitude_`, `prune_ffn_`), low-rank
factorisation (`svd_linear`, `low_rank_`), distillation (`distillation_loss`, `small_bert`,
`augment`, `train_student`), inference engineering (`make_batches`, `greedy_generate`),
data-parallel training (`run_data_parallel`, `train_reference`) and a monitoring hook
(`Monitor`). Chapter 08 teaches each piece; the functions work on any BERT-style classifier.
"""
from __future__ import annotations

import copy
import io
import math
import os
import random
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn


class OptimizeError(ValueError):
    """Bad input to an optimization helper; the message says what was wrong and what to do."""


# ----------------------------------------------------------------------------------------------
# Measuring: latency (median and p90 over repeats, warm-up excluded), size on disk, peak memory
# ----------------------------------------------------------------------------------------------
@dataclass
class Bench:
    """Latency of one callable: median and 90th percentile over `repeats` timed calls."""
    name: str
    median_ms: float
    p90_ms: float
    items: int
    times_ms: list[float] = field(repr=False, default_factory=list)

    @property
    def throughput(self) -> float:
        """Items (sentences, tokens) per second at the median latency."""
        return self.items / (self.median_ms / 1000)


def _bench_from(name: str, times: list[float], items: int) -> Bench:
    ms = [t * 1000 for t in times]
    return Bench(name, statistics.median(ms), float(np.percentile(ms, 90)), items, ms)


def benchmark(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3, items: int = 1,
              name: str = "") -> Bench:
    """Time `fn()`: `warmup` untimed calls, then the median and p90 of `repeats` timed calls.

    >>> b = benchmark(lambda: sum(range(10_000)), repeats=5)
    >>> b.median_ms > 0
    True
    """
    return compare_latency({name or "fn": fn}, repeats, warmup, items)[name or "fn"]


def compare_latency(fns: dict[str, Callable[[], Any]], repeats: int = 20, warmup: int = 3,
                    items: int = 1) -> dict[str, Bench]:
    """Time several callables *interleaved* (a, b, c, a, b, c, ...) and return a `Bench` each.

    On a shared machine the load changes from second to second; interleaving makes every
    variant see the same load, so their ratios are far steadier than timing one after another.

    >>> r = compare_latency({"a": lambda: sum(range(1000)), "b": lambda: sum(range(9000))}, repeats=5)
    >>> r["a"].median_ms < r["b"].median_ms
    True
    """
    if not fns:
        raise OptimizeError("compare_latency needs at least one callable in a dict {name: fn}")
    if repeats < 1 or warmup < 0 or items < 1:
        raise OptimizeError(f"need repeats >= 1, warmup >= 0, items >= 1; got {repeats}, {warmup}, {items}")
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: _bench_from(k, v, items) for k, v in times.items()}


def size_on_disk_mb(model_or_state) -> float:
    """Megabytes of `torch.save(state_dict)`: what the model costs on disk (and to download).

    >>> round(size_on_disk_mb(torch.nn.Linear(1000, 1000)), 1)
    4.0
    """
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getbuffer().nbytes / 1e6


def _rss_hwm_kb() -> tuple[int, int] | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    vals = {ln.split(":")[0]: int(ln.split()[1]) for ln in text.splitlines() if ln.startswith(("VmRSS", "VmHWM"))}
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Extra memory (MB) that one call of `fn()` needed at its peak, beyond what was already held.

    On CUDA: `torch.cuda.max_memory_allocated`. On Linux CPU: the kernel's resident-set
    high-water mark (reset through /proc/self/clear_refs) minus the resident set before the call.
    Free heap memory is first returned to the OS (glibc `malloc_trim`), so memory cached from
    earlier calls is counted again: the number is the working memory of one call (activations).

    >>> peak_memory_mb(lambda: torch.ones(50_000_000)) > 100     # doctest: +SKIP
    True
    """
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.inference_mode():
            fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 1e6
    try:
        import ctypes

        # Hand freed heap memory back to the OS first, so the call must fault its pages in again
        # and shows up in the high-water mark instead of silently reusing cached blocks.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        ok = True
    except OSError:
        ok = False
    before = _rss_hwm_kb()
    if not ok or before is None:
        raise OptimizeError("peak_memory_mb needs Linux /proc (or a CUDA device); on another system "
                            "use the memory profiler of your OS")
    with torch.inference_mode():
        fn()
    after = _rss_hwm_kb()
    return max(0, after[1] - before[0]) / 1e3


# ----------------------------------------------------------------------------------------------
# Quantization: affine int8/int4 written out, and the CPU kernels that make it fast
# ----------------------------------------------------------------------------------------------
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


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module], skip: Sequence[str]) -> int:
    n = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(s in full for s in skip):
                setattr(module, child_name, make(child))
                n += 1
    return n


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


# ----------------------------------------------------------------------------------------------
# Pruning
# ----------------------------------------------------------------------------------------------
def _prunable(model: nn.Module, skip: Sequence[str]) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and not any(s in n for s in skip)]


def prune_magnitude_(model: nn.Module, sparsity: float, scope: str = "global",
                     skip: Sequence[str] = ("classifier", "pooler")) -> float:
    """Zero the smallest-magnitude weights of every Linear in place; returns the sparsity reached.

    `scope="local"`: the same fraction in every layer (what `torch.nn.utils.prune.l1_unstructured`
    does); `"global"`: one threshold over all layers, so layers with many small weights lose more.

    >>> m = torch.nn.Sequential(torch.nn.Linear(10, 10)); prune_magnitude_(m, 0.5, skip=())
    0.5
    """
    if not 0 <= sparsity < 1:
        raise OptimizeError(f"sparsity is a fraction in [0, 1), got {sparsity}")
    if scope not in ("global", "local"):
        raise OptimizeError(f"scope must be 'global' or 'local', got {scope!r}")
    layers = _prunable(model, skip)
    if not layers:
        raise OptimizeError("no nn.Linear layer to prune (check `skip`)")
    with torch.no_grad():
        if scope == "global":
            allw = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
            k = int(round(sparsity * allw.numel()))
            if k:
                # kthvalue: exactly k weights lie at or below the threshold (ties aside)
                thr = allw.kthvalue(k).values
                for _, m in layers:
                    m.weight.mul_((m.weight.abs() > thr).to(m.weight.dtype))
        else:
            for _, m in layers:
                k = int(round(sparsity * m.weight.numel()))
                if k:
                    idx = m.weight.abs().flatten().topk(k, largest=False).indices
                    m.weight.view(-1)[idx] = 0
    return weight_sparsity(model, skip)


def weight_sparsity(model: nn.Module, skip: Sequence[str] = ("classifier", "pooler")) -> float:
    """Fraction of exactly-zero weights over the Linear layers (not embeddings, not biases).

    >>> weight_sparsity(torch.nn.Linear(4, 4, bias=False).requires_grad_(False).zero_() if False else torch.nn.Linear(2, 2))
    0.0
    """
    layers = _prunable(model, skip)
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / max(total, 1)


def _bert_layers(model: nn.Module):
    enc = getattr(getattr(model, "bert", model), "encoder", None)
    if enc is None or not hasattr(enc, "layer"):
        raise OptimizeError("prune_ffn_ works on BERT-style models (model.bert.encoder.layer[i] with "
                            "intermediate.dense and output.dense); this model has none")
    return enc.layer


def prune_ffn_(model: nn.Module, keep: float) -> int:
    """Structured pruning: remove the least important feed-forward neurons of every BERT layer.

    A neuron j of the FFN is row j of `intermediate.dense` and column j of `output.dense`; its
    importance is the product of their norms (a neuron that reads little or writes little matters
    little). The layers are rebuilt smaller, so the matrix products really shrink (unlike zeros).
    Returns the number of parameters removed.

    >>> removed = prune_ffn_(bert_classifier, keep=0.5)        # doctest: +SKIP
    """
    if not 0 < keep <= 1:
        raise OptimizeError(f"keep is the fraction of FFN neurons kept, in (0, 1]; got {keep}")
    before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for layer in _bert_layers(model):
            up, down = layer.intermediate.dense, layer.output.dense
            score = up.weight.norm(dim=1) * down.weight.norm(dim=0)
            n_keep = max(1, int(round(keep * up.out_features)))
            idx = score.topk(n_keep).indices.sort().values
            new_up = nn.Linear(up.in_features, n_keep, bias=up.bias is not None)
            new_up.weight.copy_(up.weight[idx])
            if up.bias is not None:
                new_up.bias.copy_(up.bias[idx])
            new_down = nn.Linear(n_keep, down.out_features, bias=down.bias is not None)
            new_down.weight.copy_(down.weight[:, idx])
            if down.bias is not None:
                new_down.bias.copy_(down.bias)
            layer.intermediate.dense, layer.output.dense = new_up, new_down
    if hasattr(model, "config"):
        model.config.intermediate_size = n_keep
    return before - sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Low-rank factorisation
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Knowledge distillation
# ----------------------------------------------------------------------------------------------
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, temperature: float = 4.0,
                      alpha: float = 1.0) -> torch.Tensor:
    """Hinton et al. (2015): alpha T^2 KL(p_T^teacher || p_T^student) + (1 - alpha) CE(student, labels).

    The T^2 keeps the soft-label gradients the same size whatever the temperature. Labels of -1
    mark unlabelled rows (text only the teacher labelled): the hard-label term skips them.

    >>> z = torch.randn(4, 2); float(distillation_loss(z, z))
    0.0
    """
    if temperature <= 0:
        raise OptimizeError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise OptimizeError(f"alpha must be in [0, 1], got {alpha}")
    t = temperature
    soft = torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, -1),
                                      torch.log_softmax(teacher_logits / t, -1),
                                      reduction="batchmean", log_target=True) * t * t
    if alpha == 1 or labels is None:
        return soft
    known = labels >= 0  # rows labelled -1 are unlabelled transfer text: soft loss only
    if not bool(known.any()):
        return alpha * soft
    hard = torch.nn.functional.cross_entropy(student_logits[known], labels[known])
    return alpha * soft + (1 - alpha) * hard


def small_bert(teacher: nn.Module, hidden: int = 128, layers: int = 2, heads: int = 2,
               intermediate: int = 512, max_positions: int = 128, seed: int = 0):
    """A small BERT classifier with the teacher's tokenizer; its word embeddings start as the
    teacher's projected on their top `hidden` principal directions (so words that the teacher
    places close together start close together in the student).

    >>> student = small_bert(teacher, hidden=128, layers=2)        # doctest: +SKIP
    """
    from transformers import BertConfig, BertForSequenceClassification

    tc = teacher.config
    if hidden % heads:
        raise OptimizeError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    if hidden > tc.hidden_size:
        raise OptimizeError(f"the student's hidden size {hidden} exceeds the teacher's {tc.hidden_size}")
    cfg = BertConfig(vocab_size=tc.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=max_positions, num_labels=tc.num_labels,
                     pad_token_id=tc.pad_token_id, type_vocab_size=tc.type_vocab_size)
    torch.manual_seed(seed)
    student = BertForSequenceClassification(cfg)
    emb = teacher.get_input_embeddings().weight.detach().float()
    centred = emb - emb.mean(0)
    _, _, vh = torch.linalg.svd(centred[torch.randperm(len(centred), generator=torch.Generator().manual_seed(seed))[:8000]],
                                full_matrices=False)
    proj = centred @ vh[:hidden].T
    with torch.no_grad():
        student.get_input_embeddings().weight.copy_(proj / proj.std() * 0.05 * math.sqrt(hidden / 128))
    return student


def augment(texts: Sequence[str], n_per_text: int = 4, p_mask: float = 0.1, p_drop: float = 0.1,
            mask_token: str = "[MASK]", seed: int = 0) -> list[str]:
    """Noisy copies of each text for a distillation transfer set (Tang et al., 2019): each word
    is masked with probability p_mask or dropped with probability p_drop, and with probability
    0.25 only a random span of the sentence is kept. The teacher labels them (soft labels).

    >>> augment(["a fine and moving film"], n_per_text=2, seed=1)       # doctest: +SKIP
    ['a fine and [MASK] film', 'fine and moving']
    """
    if n_per_text < 0 or not 0 <= p_mask < 1 or not 0 <= p_drop < 1:
        raise OptimizeError("need n_per_text >= 0 and probabilities in [0, 1)")
    rng = random.Random(seed)
    out = []
    for t in texts:
        words = t.split()
        for _ in range(n_per_text):
            w = words
            if len(w) > 4 and rng.random() < 0.25:
                n = rng.randint(max(2, len(w) // 3), len(w))
                i = rng.randint(0, len(w) - n)
                w = w[i:i + n]
            new = []
            for x in w:
                r = rng.random()
                if r < p_mask:
                    new.append(mask_token)
                elif r < p_mask + p_drop:
                    continue
                else:
                    new.append(x)
            out.append(" ".join(new) if new else t)
    return out


def train_student(student: nn.Module, tokenizer, texts: Sequence[str], labels: Sequence[int] | None = None,
                  teacher_logits: torch.Tensor | None = None, temperature: float = 4.0, alpha: float = 1.0,
                  epochs: int = 10, lr: float = 1e-3, batch_size: int = 32, max_length: int = 64,
                  seed: int = 0, progress: bool = True) -> list[float]:
    """Train `student` on hard labels (teacher_logits None) or on the teacher's soft labels.

    Both use the same loop, data order and optimizer, so the only difference is the target.
    With teacher_logits, `labels` may hold -1 for unlabelled texts (a transfer set): those rows
    get the soft-label loss only.

    >>> losses = train_student(student, tok, texts, labels, epochs=1)    # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from .train import lr_at

    texts = list(texts)
    if teacher_logits is None and labels is None:
        raise OptimizeError("train_student needs labels (hard targets) or teacher_logits (soft targets)")
    if teacher_logits is not None and len(teacher_logits) != len(texts):
        raise OptimizeError(f"{len(teacher_logits)} teacher logits for {len(texts)} texts")
    if labels is not None and len(labels) != len(texts):
        raise OptimizeError(f"{len(labels)} labels for {len(texts)} texts")
    y = None if labels is None else torch.tensor([int(v) for v in labels])
    if y is not None and teacher_logits is None and bool((y < 0).any()):
        raise OptimizeError("hard-label training needs a label for every text (found -1)")
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(texts) / batch_size)
    losses = []
    student.train()
    bar = tqdm(total=steps, desc="student", disable=not progress, leave=False)
    for _ in range(epochs):
        for idx in torch.randperm(len(texts), generator=g).split(batch_size):
            mask = enc["attention_mask"][idx]
            n = int(mask.sum(1).max())  # trim the padding columns no row of this batch uses
            logits = student(input_ids=enc["input_ids"][idx, :n], attention_mask=mask[:, :n]).logits
            if teacher_logits is None:
                loss = torch.nn.functional.cross_entropy(logits, y[idx])
            else:
                loss = distillation_loss(logits, teacher_logits[idx], None if y is None else y[idx],
                                         temperature, alpha)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            for group in opt.param_groups:  # warm-up then cosine decay, as in chapter 07
                group["lr"] = lr_at(len(losses) / steps, lr, 0.1, 0.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(1)
    bar.close()
    student.eval()
    return losses


# ----------------------------------------------------------------------------------------------
# Inference engineering: padding and batching, the KV cache
# ----------------------------------------------------------------------------------------------
def make_batches(texts: Sequence[str], tokenizer, batch_size: int = 32, padding: str = "dynamic",
                 max_length: int = 128) -> list[dict[str, torch.Tensor]]:
    """Tokenized batches with one of three padding strategies.

    "fixed": every batch padded to `max_length`; "dynamic": each batch padded to its longest
    text; "bucket": texts sorted by length first, so each batch holds texts of similar length
    (the order changes: each batch carries "index" to put predictions back in place).

    >>> [b["input_ids"].shape for b in make_batches(["a", "a b c"], tok, 2, "dynamic")]  # doctest: +SKIP
    """
    if padding not in ("fixed", "dynamic", "bucket"):
        raise OptimizeError(f"padding must be 'fixed', 'dynamic' or 'bucket', got {padding!r}")
    if batch_size < 1:
        raise OptimizeError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    order = list(range(len(texts)))
    if padding == "bucket":
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = sorted(order, key=lambda i: lengths[i])
    out = []
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        b = tokenizer([texts[j] for j in idx], truncation=True, max_length=max_length, return_tensors="pt",
                      padding="max_length" if padding == "fixed" else True)
        b = dict(b)
        b["index"] = torch.tensor(idx)
        out.append(b)
    return out


def pad_fraction(batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Share of all token positions in the batches that are padding (wasted compute).

    >>> pad_fraction([{"attention_mask": torch.tensor([[1, 1], [1, 0]])}])
    0.25
    """
    total = sum(b["attention_mask"].numel() for b in batches)
    return 1 - sum(int(b["attention_mask"].sum()) for b in batches) / max(total, 1)


@torch.inference_mode()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int, use_cache: bool = True
                    ) -> tuple[torch.Tensor, list[float]]:
    """Greedy decoding written out, with or without the KV cache; returns (ids, seconds per token).

    Without the cache every step runs the whole sequence through the model again (cost grows
    with the length); with it, a step runs only the newest token and reads the keys and values
    of the earlier ones from the cache.

    >>> ids, times = greedy_generate(lm, tok("Hello", return_tensors="pt").input_ids, 8)  # doctest: +SKIP
    """
    if max_new_tokens < 1:
        raise OptimizeError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    ids, past, times = input_ids, None, []
    for _ in range(max_new_tokens):
        t0 = time.perf_counter()
        if use_cache:
            out = model(input_ids=ids if past is None else ids[:, -1:], past_key_values=past, use_cache=True)
            past = out.past_key_values
        else:
            out = model(input_ids=ids, use_cache=False)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        times.append(time.perf_counter() - t0)
    return ids, times


# ----------------------------------------------------------------------------------------------
# Data-parallel training (torch.distributed, gloo on CPU / nccl on GPUs; or Accelerate)
# ----------------------------------------------------------------------------------------------
@dataclass
class DPJob:
    """One data-parallel training job: a saved HF model, pre-tokenized rows, and the recipe.

    Rows [s*B, (s+1)*B) form the global batch of step s; with W processes, rank r takes the r-th
    contiguous slice of B/W rows. Dropout is switched off so every run is deterministic.
    """
    model_dir: str
    data_file: str
    steps: int = 5
    global_batch: int = 16
    lr: float = 1e-3
    out_file: str = ""
    threads_per_process: int = 1


def _load_for_training(job: DPJob):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(job.model_dir, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)
    model.train()
    return model, torch.load(job.data_file)


def _step_batch(data: dict[str, torch.Tensor], step: int, job: DPJob, rank: int, world: int):
    lo = step * job.global_batch
    part = job.global_batch // world
    sl = slice(lo + rank * part, lo + (rank + 1) * part)
    return {k: v[sl] for k, v in data.items()}


def train_reference(job: DPJob) -> dict[str, torch.Tensor]:
    """The single-process run on the full global batch: what data parallelism must reproduce.

    >>> state = train_reference(DPJob(model_dir, data_file, steps=3))     # doctest: +SKIP
    """
    torch.manual_seed(0)
    model, data = _load_for_training(job)
    opt = torch.optim.AdamW(model.parameters(), lr=job.lr)
    for s in range(job.steps):
        loss = model(**_step_batch(data, s, job, 0, 1)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def dp_worker(rank: int, world: int, port: int, job: DPJob, mode: str, backend: str) -> None:
    """Entry point of each spawned process (importable, so `torch.multiprocessing.spawn` finds it)."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(job.threads_per_process)
    torch.manual_seed(0)
    model, data = _load_for_training(job)
    step_s = []
    if mode == "accelerate":
        from accelerate import Accelerator

        acc = Accelerator(cpu=backend == "gloo")
        opt = torch.optim.AdamW(model.parameters(), lr=job.lr)
        model, opt = acc.prepare(model, opt)
        device = acc.device
        for s in range(job.steps):
            t0 = time.perf_counter()
            batch = {k: v.to(device) for k, v in _step_batch(data, s, job, acc.process_index, acc.num_processes).items()}
            loss = model(**batch).loss
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_s.append(time.perf_counter() - t0)
        state = acc.unwrap_model(model).state_dict()
        is_main = acc.is_main_process
    else:
        dist.init_process_group(backend, rank=rank, world_size=world)
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        if backend == "nccl":
            torch.cuda.set_device(device)
        model.to(device)
        # DDP broadcasts rank 0's weights, then all-reduces (averages) gradients in buckets while
        # backward is still running, so communication overlaps with computation.
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if backend == "nccl" else None)
        opt = torch.optim.AdamW(ddp.parameters(), lr=job.lr)
        for s in range(job.steps):
            t0 = time.perf_counter()
            batch = {k: v.to(device) for k, v in _step_batch(data, s, job, rank, world).items()}
            loss = ddp(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_s.append(time.perf_counter() - t0)
        state = model.state_dict()
        is_main = rank == 0
    if is_main:
        torch.save({"state": {k: v.detach().cpu() for k, v in state.items()}, "step_s": step_s}, job.out_file)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_data_parallel(job: DPJob, world: int = 2, mode: str = "ddp", backend: str = "gloo") -> dict[str, Any]:
    """Train `job` on `world` processes; returns {"state", "step_s", "seconds"} of rank 0.

    `mode="ddp"`: torch DistributedDataParallel; `mode="accelerate"`: the same loop through
    Hugging Face Accelerate. `backend="gloo"` on CPU, `"nccl"` on GPUs (one process per GPU).

    >>> out = run_data_parallel(job, world=2, mode="ddp")     # doctest: +SKIP
    """
    import torch.multiprocessing as mp

    if mode not in ("ddp", "accelerate"):
        raise OptimizeError(f"mode must be 'ddp' or 'accelerate', got {mode!r}")
    if backend not in ("gloo", "nccl"):
        raise OptimizeError(f"backend must be 'gloo' (CPU) or 'nccl' (GPUs), got {backend!r}")
    if backend == "nccl" and torch.cuda.device_count() < world:
        raise OptimizeError(f"nccl needs one GPU per process: {world} asked, {torch.cuda.device_count()} visible")
    if job.global_batch % world:
        raise OptimizeError(f"global_batch {job.global_batch} must be divisible by world {world}")
    out = job.out_file or str(Path(tempfile.mkdtemp()) / f"{mode}.pt")
    job = DPJob(**{**job.__dict__, "out_file": out})
    t0 = time.perf_counter()
    mp.spawn(dp_worker, args=(world, _free_port(), job, mode, backend), nprocs=world, join=True)
    res = torch.load(out)
    res["seconds"] = time.perf_counter() - t0
    return res


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| over all tensors of two state dicts (same keys required).

    >>> max_abs_diff({"w": torch.zeros(2)}, {"w": torch.ones(2)})
    1.0
    """
    if set(a) != set(b):
        raise OptimizeError(f"state dicts differ in keys: {sorted(set(a) ^ set(b))[:5]}")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


# ----------------------------------------------------------------------------------------------
# Monitoring in deployment
# ----------------------------------------------------------------------------------------------
def psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """Population stability index of two samples of a score in [0, 1]: sum (c - r) ln(c / r)
    over equal-width bins of the two samples' proportions r and c. Rule of thumb: < 0.1 stable,
    0.1-0.25 shifting, > 0.25 drifted. Both proportions are smoothed alike, p -> (p + e) / (1 + e *
    bins) with e = 0.5 / (size of the smaller sample): half a pseudo-count, so no log(0) for an empty
    bin, and two samples of different sizes from the same distribution score 0 (half a count added
    to each sample's own counts would not: it weighs more in the smaller one). PSI of small samples
    is noisy: with 5 bins, two windows of 20 scores from one distribution often exceed 0.25.

    >>> round(psi([0.1, 0.2, 0.8, 0.9], [0.1, 0.2, 0.8, 0.9] * 5), 6)
    0.0
    """
    edges = np.linspace(0, 1, bins + 1)
    r, c = (np.histogram(np.clip(np.asarray(x, dtype=float), 0, 1), edges)[0] for x in (reference, current))
    if r.sum() == 0 or c.sum() == 0:
        raise ValueError("psi needs at least one reference score and one current score")
    e = 0.5 / min(r.sum(), c.sum())
    r, c = ((x / x.sum() + e) / (1 + e * bins) for x in (r, c))
    return float(((c - r) * np.log(c / r)).sum())


class Monitor:
    """Wraps a predict function: logs latency per call and watches the predicted scores drift.

    `reference` is a sample of scores the model gave on held-out data like the data it will serve
    (not its training data, where it is over-confident). Every `window` predictions, the monitor
    compares the window's scores with it (PSI over `bins` bins) and notes an alert when
    PSI > `psi_alert` or the window's p90 latency exceeds `latency_budget_ms`.

    >>> mon = Monitor(lambda texts: [0.9] * len(texts), reference=[0.9] * 50, window=10)
    >>> _ = mon(["a"] * 10); mon.log[-1]["psi"] < 0.1
    True
    """

    def __init__(self, predict: Callable[[list[str]], Sequence[float]], reference: Sequence[float],
                 window: int = 50, psi_alert: float = 0.25, latency_budget_ms: float = float("inf"),
                 bins: int = 10):
        if window < 2:
            raise OptimizeError(f"window must be >= 2 predictions, got {window}")
        if bins < 2:
            raise OptimizeError(f"bins must be >= 2, got {bins}")
        self.bins = bins
        self.predict, self.reference, self.window = predict, list(reference), window
        self.psi_alert, self.latency_budget_ms = psi_alert, latency_budget_ms
        self._scores: list[float] = []
        self._lat: list[float] = []
        self.log: list[dict[str, float]] = []

    def __call__(self, texts: list[str]) -> list[float]:
        t0 = time.perf_counter()
        scores = list(map(float, self.predict(texts)))
        ms = (time.perf_counter() - t0) * 1000 / max(len(texts), 1)
        self._scores += scores
        self._lat += [ms] * len(scores)
        while len(self._scores) >= self.window:
            s, self._scores = self._scores[:self.window], self._scores[self.window:]
            lat, self._lat = self._lat[:self.window], self._lat[self.window:]
            p = psi(self.reference, s, bins=self.bins)
            p90 = float(np.percentile(lat, 90))
            self.log.append({"window": len(self.log), "psi": p, "mean_score": float(np.mean(s)),
                             "p90_ms": p90, "alert": float(p > self.psi_alert or p90 > self.latency_budget_ms)})
        return scores
