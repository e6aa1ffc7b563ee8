"""Attention and the Transformer's parts: masks, multi-head attention, positional encodings, blocks.

Every piece here is checked against a real peer (tests/test_attention.py):
`scaled_dot_product_attention` against `torch.nn.functional.scaled_dot_product_attention`,
`MultiHeadAttention` against `torch.nn.MultiheadAttention`, `EncoderBlock`/`DecoderBlock` against
`torch.nn.TransformerEncoderLayer`/`TransformerDecoderLayer`, RoPE against Hugging Face's Llama.

Mask convention (the same as `F.scaled_dot_product_attention`): a boolean mask is True where a
query MAY attend to a key; a float mask is added to the scores. Tensors are batch-first:
(batch, heads, length, head_dim) inside attention, (batch, length, d_model) around it.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "scaled_dot_product_attention", "causal_mask", "padding_mask", "sliding_window_mask",
    "MultiHeadAttention", "sinusoidal_encoding", "LearnedPositionalEmbedding", "RotaryEmbedding",
    "rotate_half", "apply_rotary", "FeedForward", "EncoderBlock", "DecoderBlock", "attention_cost",
]


# ----------------------------------------------------------------------------------------------
# Scaled dot-product attention and masks
# ----------------------------------------------------------------------------------------------

def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, is_causal: bool = False,
                                 dropout_p: float = 0.0, scale: float | None = None,
                                 return_weights: bool = False):
    """softmax(q k^T / sqrt(d_k) + mask) v, written from the formula.

    `q` is (..., Lq, d_k), `k` (..., Lk, d_k), `v` (..., Lk, d_v). `mask` broadcasts to
    (..., Lq, Lk): bool (True = may attend) or float (added to the scores). `is_causal` adds the
    top-left-aligned causal mask, as `F.scaled_dot_product_attention` does. Returns the output,
    or `(output, weights)` when `return_weights`.

    >>> q = k = v = torch.eye(2).unsqueeze(0)
    >>> scaled_dot_product_attention(q, k, v, is_causal=True)[0, 0].tolist()
    [1.0, 0.0]
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same last dimension d_k; got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same length; got {k.shape[-2]} and {v.shape[-2]}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., Lq, Lk): how well each query matches each key
    if is_causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], device=q.device), float("-inf"))
    if mask is not None:
        # -inf before the softmax gives an exact 0 weight after it, unlike a large negative number.
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ v
    return (out, weights) if return_weights else out


def causal_mask(n_q: int, n_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (n_q, n_k) mask, True on and below the diagonal: position i sees positions <= i.

    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    n_k = n_q if n_k is None else n_k
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, L) tensor of 1 = token, 0 = padding -> boolean (batch, 1, 1, L) key mask.

    The two singleton axes broadcast over heads and queries: no query attends to a padding key.

    >>> padding_mask(torch.tensor([[1, 1, 0]])).shape
    torch.Size([1, 1, 1, 3])
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, length) of 1/0; got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


def sliding_window_mask(n: int, window: int, causal: bool = True,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Local attention: position i sees the `window` positions up to and including i (or around it).

    >>> sliding_window_mask(4, 2).int().tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1; got {window}")
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    if causal:
        return (j <= i) & (j > i - window)
    return (j - i).abs() < window


# ----------------------------------------------------------------------------------------------
# Multi-head attention
# ----------------------------------------------------------------------------------------------

class MultiHeadAttention(nn.Module):
    """Multi-head attention: h heads of width d_model/h, each attending in its own subspace.

    Self-attention when `key`/`value` are omitted, cross-attention when they come from another
    sequence (an encoder's output). Inputs are (batch, length, d_model).

    >>> mha = MultiHeadAttention(8, 2); x = torch.randn(1, 5, 8)
    >>> mha(x, is_causal=True)[0].shape
    torch.Size([1, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.head_dim, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape  # (b, n, d) -> (b, h, n, d/h): heads become a batch axis
        return x.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, is_causal: bool = False,
                rope: "RotaryEmbedding | None" = None, need_weights: bool = False):
        """Returns `(output, weights)`; weights are (batch, heads, Lq, Lk) or None."""
        key = query if key is None else key
        value = key if value is None else value
        if query.shape[-1] != self.d_model:
            raise ValueError(f"expected inputs of width d_model={self.d_model}; got {query.shape[-1]}")
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        if rope is not None:  # RoPE rotates queries and keys, never values
            q = apply_rotary(q, *rope(q.shape[-2], device=q.device))
            k = apply_rotary(k, *rope(k.shape[-2], device=k.device))
        if is_causal and mask is not None:  # F.scaled_dot_product_attention takes one or the other
            causal = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
            mask = mask & causal if mask.dtype == torch.bool else mask.masked_fill(~causal, float("-inf"))
            is_causal = False
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, w = scaled_dot_product_attention(q, k, v, mask, is_causal, p, return_weights=True)
        else:  # the fused kernel: same numbers, less memory (see attention_cost)
            out, w = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=p), None
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.d_model)), w

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy of a (batch_first) `nn.MultiheadAttention`'s weights in this class.

        >>> ours = MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, batch_first=True))
        """
        if not mha._qkv_same_embed_dim:
            raise ValueError("only nn.MultiheadAttention with kdim == vdim == embed_dim is supported")
        bias = mha.in_proj_bias is not None
        ours = cls(mha.embed_dim, mha.num_heads, mha.dropout, bias=bias)
        with torch.no_grad():
            # torch packs W_q, W_k, W_v on top of each other in one (3d, d) matrix.
            for proj, w in zip((ours.q_proj, ours.k_proj, ours.v_proj), mha.in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            if bias:
                for proj, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), mha.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                ours.out_proj.bias.copy_(mha.out_proj.bias)
            ours.out_proj.weight.copy_(mha.out_proj.weight)
        return ours


# ----------------------------------------------------------------------------------------------
# Positional encodings
# ----------------------------------------------------------------------------------------------

def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The Transformer's fixed encoding: PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(...).

    >>> torch.allclose(sinusoidal_encoding(3, 4)[1, :2], torch.tensor([math.sin(1.0), math.cos(1.0)]))
    True
    """
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin/cos pairs); got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq)
    return pe.float()


class LearnedPositionalEmbedding(nn.Embedding):
    """One trained vector per position (GPT-2, BERT). `forward(n)` returns the first n, (n, d).

    >>> LearnedPositionalEmbedding(16, 8)(5).shape
    torch.Size([5, 8])
    """

    def forward(self, n: int) -> torch.Tensor:  # type: ignore[override]
        if n > self.num_embeddings:
            raise ValueError(f"sequence of length {n} is longer than the {self.num_embeddings} learned positions")
        return super().forward(torch.arange(n, device=self.weight.device))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis: a 90-degree turn of each pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[j], x[j + d/2]) of `x` (..., n, d) by the angle whose cos/sin are given."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """RoPE: rotate query/key pairs by position-dependent angles, so q.k depends on m - n only.

    Pairs are (j, j + d/2), the layout of Llama and Hugging Face (`rotate_half`), so the numbers
    equal `transformers`' `apply_rotary_pos_emb`. Call it with a length (or position ids) to get
    `(cos, sin)` of shape (n, head_dim).

    >>> cos, sin = RotaryEmbedding(8)(5); apply_rotary(torch.randn(1, 2, 5, 8), cos, sin).shape
    torch.Size([1, 2, 5, 8])
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE; got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim),
                             persistent=False)

    def forward(self, positions: int | torch.Tensor, device: torch.device | str | None = None):
        if isinstance(positions, int):
            positions = torch.arange(positions, device=device or self.inv_freq.device)
        angles = positions.float()[..., None] * self.inv_freq.to(positions.device)  # (..., n, d/2)
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos(), emb.sin()


# ----------------------------------------------------------------------------------------------
# Encoder and decoder blocks
# ----------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


class FeedForward(nn.Module):
    """Position-wise feed-forward network: FFN(x) = W2 act(W1 x + b1) + b2, applied to each token.

    >>> FeedForward(8, 32)(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(_ACTIVATIONS)}")
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.act, self.dropout = _ACTIVATIONS[activation], nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.act(self.linear1(x))))


class EncoderBlock(nn.Module):
    """Self-attention + FFN, each wrapped in a residual connection and LayerNorm.

    Post-LN (`norm_first=False`, the 2017 Transformer): x = LN(x + Attn(x)); x = LN(x + FFN(x)).
    Pre-LN (`norm_first=True`, GPT-2 and most LLMs): x = x + Attn(LN(x)); x = x + FFN(LN(x)).
    Layout and numbers equal `nn.TransformerEncoderLayer(batch_first=True)`.

    >>> EncoderBlock(8, 2, 16)(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def _sa(self, x, mask, need_weights):
        out, w = self.self_attn(x, mask=mask, need_weights=need_weights)
        return self.dropout1(out), w

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False):
        """`mask`: bool, True = may attend (e.g. `padding_mask(...)`). Returns x, or (x, weights)."""
        if self.norm_first:
            a, w = self._sa(self.norm1(x), mask, need_weights)
            x = x + a
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            a, w = self._sa(x, mask, need_weights)
            x = self.norm1(x + a)
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return (x, w) if need_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> "EncoderBlock":
        """Copy a batch_first `nn.TransformerEncoderLayer` (relu or gelu) into an EncoderBlock."""
        ours = cls(layer.linear1.in_features, layer.self_attn.num_heads, layer.linear1.out_features,
                   layer.dropout.p, _activation_name(layer.activation), layer.norm_first, layer.norm1.eps)
        ours.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        _copy_ff_norms(ours, layer, 2)
        return ours


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention to the encoder's output (memory), then FFN.

    Queries of the cross-attention come from the decoder, keys and values from the memory: this is
    how each output token looks at the whole input. Equal to `nn.TransformerDecoderLayer`.

    >>> DecoderBlock(8, 2, 16)(torch.randn(2, 4, 8), torch.randn(2, 6, 8)).shape
    torch.Size([2, 4, 8])
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model, eps=eps) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, is_causal: bool = True, need_weights: bool = False):
        """`self_mask`/`memory_mask`: bool, True = may attend. Returns x, or (x, {"self", "cross"} weights)."""
        ws = {}

        def sa(h):
            out, ws["self"] = self.self_attn(h, mask=self_mask, is_causal=is_causal, need_weights=need_weights)
            return self.dropout1(out)

        def ca(h):
            out, ws["cross"] = self.cross_attn(h, memory, memory, mask=memory_mask, need_weights=need_weights)
            return self.dropout2(out)

        if self.norm_first:
            x = x + sa(self.norm1(x))
            x = x + ca(self.norm2(x))
            x = x + self.dropout3(self.ff(self.norm3(x)))
        else:
            x = self.norm1(x + sa(x))
            x = self.norm2(x + ca(x))
            x = self.norm3(x + self.dropout3(self.ff(x)))
        return (x, ws) if need_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> "DecoderBlock":
        """Copy a batch_first `nn.TransformerDecoderLayer` (relu or gelu) into a DecoderBlock."""
        ours = cls(layer.linear1.in_features, layer.self_attn.num_heads, layer.linear1.out_features,
                   layer.dropout.p, _activation_name(layer.activation), layer.norm_first, layer.norm1.eps)
        ours.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        ours.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        _copy_ff_norms(ours, layer, 3)
        return ours


def _activation_name(act) -> str:
    if act in (F.relu,) or isinstance(act, nn.ReLU):
        return "relu"
    if act in (F.gelu,) or isinstance(act, nn.GELU):
        return "gelu"
    raise ValueError(f"unsupported activation {act!r}; use relu or gelu")


def _copy_ff_norms(ours: nn.Module, layer: nn.Module, n_norms: int) -> None:
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(ours.ff, name).load_state_dict(getattr(layer, name).state_dict())
        for i in range(1, n_norms + 1):
            getattr(ours, f"norm{i}").load_state_dict(getattr(layer, f"norm{i}").state_dict())


# ----------------------------------------------------------------------------------------------
# What attention costs
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _silence_fd2():
    """Hide what C++ code writes to file descriptor 2: torch's profiler prints start/stop lines there."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def attention_cost(fn: Callable[..., torch.Tensor], n: int, head_dim: int = 64, n_heads: int = 4,
                   batch: int = 1, repeats: int = 3) -> dict[str, float]:
    """Measure one attention function `fn(q, k, v)` at sequence length n.

    Returns seconds (median of `repeats` forward passes), FLOPs counted by torch's
    `FlopCounterMode` (matrix products only), bytes allocated during one forward pass (torch
    profiler) and bytes saved for the backward pass (what training must keep in memory).

    >>> c = attention_cost(lambda q, k, v: scaled_dot_product_attention(q, k, v), 64)
    >>> c["flops"] == 4 * 64 * 64 * 64 * 4
    True
    """
    import statistics
    import time

    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be >= 1; got n={n}, repeats={repeats}")
    q, k, v = (torch.randn(batch, n_heads, n, head_dim) for _ in range(3))
    with torch.no_grad():
        fn(q, k, v)  # warm-up: first calls pay for allocation and kernel selection
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(q, k, v)
            times.append(time.perf_counter() - t0)
        with FlopCounterMode(display=False) as counter:
            fn(q, k, v)
        with _silence_fd2(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn(q, k, v)
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.events())
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(qg, kg, vg)
    # q, k, v themselves are saved too (3 * n * d per head): they are O(n), not the attention matrix.
    return {"n": n, "seconds": statistics.median(times), "flops": counter.get_total_flops(),
            "allocated_bytes": allocated, "saved_bytes": saved}
