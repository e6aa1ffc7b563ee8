"""SmolLM2's architecture (Llama) written from scratch: RMSNorm, rotary embeddings, grouped-query
attention and a SwiGLU feed-forward, loading the bundled SmolLM2-135M-Instruct weights.

One decoder block, for a sequence of hidden states x (T, d):

    h = x + W_o · Attention(RoPE(W_q · n1(x)), RoPE(W_k · n1(x)), W_v · n1(x))
    y = h + W_down · (silu(W_gate · n2(h)) * (W_up · n2(h)))        # SwiGLU

- RMSNorm n(x) = g * x / sqrt(mean(x**2) + eps): LayerNorm without the mean and the bias.
- Rotary embeddings rotate each pair of query/key features by an angle proportional to the position,
  so q·k depends on the positions only through their difference.
- Grouped-query attention: SmolLM2-135M has 9 query heads but only 3 key/value heads; each key/value
  head serves a group of 3 query heads, which makes the KV cache 3x smaller.

`Llama.forward` takes an optional `attend(layer, q, k, v)` function: the default attends causally
inside each row; the serving engine (`labkit.serving.engine`) passes one that reads and writes a
paged KV cache instead, so the same weights serve both.

    >>> cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=4, num_kv_heads=2)
    >>> model = Llama(cfg)
    >>> model(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 50])
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import assets

__all__ = ["LlamaConfig", "RMSNorm", "rope_cos_sin", "apply_rope", "attention", "Attention", "SwiGLU", "Block",
           "Llama", "load", "from_hf"]

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LlamaConfig:
    """The numbers that define a Llama (names follow the paper; `from_hf_dict` reads config.json).

    >>> LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=1, num_heads=2, num_kv_heads=1).head_dim
    4
    """
    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    head_dim: int = 0            # 0 means hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 100000.0
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")

    @classmethod
    def from_hf_dict(cls, d: dict) -> "LlamaConfig":
        """Read a Hugging Face `config.json` dict (transformers 5 keeps rope_theta in rope_parameters).

        >>> LlamaConfig.from_hf_dict({"hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1}).num_kv_heads
        1
        """
        rope = d.get("rope_parameters") or {}
        eos = d.get("eos_token_id", 2)
        out = dict(vocab_size=d.get("vocab_size"), hidden_size=d.get("hidden_size"),
                   intermediate_size=d.get("intermediate_size"), num_layers=d.get("num_hidden_layers"),
                   num_heads=d.get("num_attention_heads"), num_kv_heads=d.get("num_key_value_heads"),
                   head_dim=d.get("head_dim"), rms_norm_eps=d.get("rms_norm_eps"),
                   rope_theta=rope.get("rope_theta", d.get("rope_theta")),
                   max_position_embeddings=d.get("max_position_embeddings"),
                   tie_word_embeddings=d.get("tie_word_embeddings"), bos_token_id=d.get("bos_token_id"),
                   eos_token_id=eos[0] if isinstance(eos, list) else eos)
        return cls(**{k: v for k, v in out.items() if v is not None})


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 as transformers does.

    >>> RMSNorm(2)(torch.tensor([[3.0, 4.0]]))   # rms = sqrt(12.5)
    tensor([[0.8485, 1.1314]], grad_fn=<MulBackward0>)
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles pos * theta**(-2i/d), each (..., T, head_dim).

    The two halves of a head are rotated as pairs (i, i + d/2), Hugging Face's "rotate_half" layout.

    >>> cos, sin = rope_cos_sin(torch.tensor([0, 1]), 4, 10000.0)
    >>> cos[0].tolist(), round(float(cos[1, 0]), 4)
    ([1.0, 1.0, 1.0, 1.0], 0.5403)
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq.to(positions.device)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, heads, head_dim) by the angles in cos/sin (..., T, head_dim).

    >>> apply_rope(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    tensor([[[0., 1.]]])
    """
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[..., None, :] + rotated * sin[..., None, :]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with grouped key/value heads.

    q: (B, Tq, Hq, D); k, v: (B, Tk, Hkv, D) with Hq a multiple of Hkv; mask: bool (B or 1, Tq, Tk),
    True where a query may look. Returns (B, Tq, Hq, D).

    >>> q = torch.ones(1, 1, 2, 4); kv = torch.arange(8.).reshape(1, 2, 1, 4)
    >>> attention(q, kv, kv).shape
    torch.Size([1, 1, 2, 4])
    """
    groups = q.shape[2] // k.shape[2]
    # Each key/value head is shared by `groups` consecutive query heads (GQA).
    k = k.repeat_interleave(groups, dim=2)
    v = v.repeat_interleave(groups, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v)


def causal_mask(t: int, device=None) -> torch.Tensor:
    """(1, t, t) lower-triangular boolean mask: position i sees positions <= i.

    >>> causal_mask(2).int().tolist()
    [[[1, 0], [1, 1]]]
    """
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()[None]


class Attention(nn.Module):
    """The projections of grouped-query attention; the attention itself is a function (see `Llama`)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * hd, d, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Queries and keys rotated by position, values as they are: (..., T, heads, head_dim)."""
        hd = self.cfg.head_dim
        q = self.q_proj(x).unflatten(-1, (-1, hd))
        k = self.k_proj(x).unflatten(-1, (-1, hd))
        v = self.v_proj(x).unflatten(-1, (-1, hd))
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): a gated feed-forward layer.

    >>> SwiGLU(4, 8)(torch.zeros(1, 4)).abs().sum().item()
    0.0
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h))."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)


class Llama(nn.Module):
    """A decoder-only Llama; attribute names mirror Hugging Face's so its state dict loads as is."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, attend: Attend | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for input_ids (B, T) (or packed tokens (T,) with a custom `attend`).

        positions: the position of each token (default 0..T-1); attend(layer, q, k, v) -> (..., T, heads, dim)
        replaces causal self-attention within each row; select: indices along the token axis whose logits
        are wanted (a serving engine needs only each sequence's last one, which saves most of lm_head).
        """
        if positions is None:
            positions = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta)
        x = self.embed_tokens(input_ids)
        mask = None if attend is not None else causal_mask(input_ids.shape[-1], input_ids.device)
        for i, block in enumerate(self.layers):
            q, k, v = block.self_attn.qkv(block.input_layernorm(x), cos, sin)
            a = attend(i, q, k, v) if attend is not None else attention(q, k, v, mask)
            x = x + block.self_attn.o_proj(a.flatten(-2))
            x = x + block.mlp(block.post_attention_layernorm(x))
        if select is not None:
            x = x.index_select(-2, select)
        return self.lm_head(self.norm(x))


def from_hf(hf_model) -> Llama:
    """A `Llama` with the weights of a transformers `LlamaForCausalLM` (shared storage, no copy).

    >>> from transformers import LlamaConfig as HC, LlamaForCausalLM
    >>> hf = LlamaForCausalLM(HC(vocab_size=20, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
    ...                          num_attention_heads=2, num_key_value_heads=1))
    >>> from_hf(hf).cfg.num_kv_heads
    1
    """
    cfg = LlamaConfig.from_hf_dict(hf_model.config.to_dict())
    model = Llama(cfg)
    state = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    _load_state(model, state)
    return model.eval()


def _load_state(model: Llama, state: dict[str, torch.Tensor]) -> None:
    if model.cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: it is the embedding matrix
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and model.cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load(name_or_path: str | Path = "smollm2-135m-instruct", dtype: torch.dtype = torch.float32,
         device: str | None = None):
    """Our Llama with the bundled SmolLM2 weights (or a Hugging Face llama folder), and its tokenizer.

    >>> model, tok = load()                      # doctest: +SKIP
    >>> model.cfg.num_heads, model.cfg.num_kv_heads   # doctest: +SKIP
    (9, 3)
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from . import runtime

    p = Path(name_or_path)
    if not (p / "config.json").exists():
        p = assets.path(str(name_or_path))
    cfg = LlamaConfig.from_hf_dict(json.loads((p / "config.json").read_text()))
    files = sorted(p.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{p} has no *.safetensors weights; give a Hugging Face llama folder or "
                                f"a bundled asset name ({', '.join(assets.ASSETS)})")
    state = {}
    for f in files:
        state.update({k.removeprefix("model."): v for k, v in load_file(str(f)).items()})
    model = Llama(cfg)
    _load_state(model, state)
    model = model.to(device=device or runtime.device(), dtype=dtype).eval()
    return model, AutoTokenizer.from_pretrained(p)

