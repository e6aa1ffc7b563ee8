"""The book's GPT: a decoder-only Transformer in the layout of GPT-2, written from scratch.

Chapter 05 builds it and checks it against Hugging Face's `GPT2LMHeadModel` on the same weights
(`to_hf`, `from_hf`); chapter 06 pretrains it. Module names follow GPT-2 (`transformer.h.0.attn.c_attn`)
so a state dict maps one to one; Hugging Face stores the four projection matrices transposed
(its `Conv1D` computes x @ W, a `Linear` computes x @ W^T).

    >>> model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=32))
    >>> logits, loss = model(torch.zeros(1, 8, dtype=torch.long), targets=torch.zeros(1, 8, dtype=torch.long))
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention

__all__ = ["GPTConfig", "GPT", "hf_config", "to_hf", "from_hf"]

# Hugging Face's Conv1D weights are (in, out): these four are transposed on the way in and out.
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPTConfig:
    """Size of a GPT. The defaults are a small character-level model (about 10.8M parameters).

    >>> GPTConfig(n_layer=2, n_head=2, n_embd=64).head_dim
    32
    """
    block_size: int = 256  # longest context (number of learned positions)
    vocab_size: int = 65  # number of token ids
    n_layer: int = 6  # Transformer blocks
    n_head: int = 6  # attention heads per block
    n_embd: int = 384  # width of the residual stream
    dropout: float = 0.0  # on embeddings, attention weights and residual branches
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2: True)
    use_sdpa: bool = True  # fused F.scaled_dot_product_attention; False = the formula in labkit.attention

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # W_q, W_k, W_v in one matrix
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.dropout, self.use_sdpa = cfg.n_head, cfg.dropout, cfg.use_sdpa

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (b, heads, t, head_dim)
                   for z in self.c_attn(x).split(c, dim=2))
        p = self.dropout if self.training else 0.0
        if self.use_sdpa and not need_weights:
            y, w = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p), None
        else:
            y, w = scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p, return_weights=True)
        y = y.transpose(1, 2).reshape(b, t, c)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), w


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's GELU is the tanh approximation ("gelu_new" in Hugging Face), not the exact erf one.
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        a, w = self.attn(self.ln_1(x), need_weights)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return (x, w) if need_weights else x


class GPT(nn.Module):
    """Decoder-only Transformer: token + position embeddings, n_layer blocks, LayerNorm, tied head.

    >>> model = GPT(GPTConfig(vocab_size=10, block_size=16, n_layer=1, n_head=2, n_embd=16))
    >>> model.generate(torch.zeros(1, 1, dtype=torch.long), 5, temperature=0).shape
    torch.Size([1, 6])
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output layer reuses the token embedding (fewer parameters, as in GPT-2).
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), so the residual stream's
        # variance does not grow with depth (two residual branches per block).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters (the tied head counted once); `non_embedding` leaves out the position table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, length) token ids; got shape {tuple(idx.shape)}")
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"sequence of length {t} is longer than block_size={self.config.block_size}; "
                             "crop it (generate() does) or build the model with a larger block_size")
        pos = torch.arange(t, device=idx.device)
        return self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (batch, length, vocab) and, with targets, the mean cross-entropy (-1 = ignore)."""
        x = self._embed(idx)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: (n_layer, batch, n_head, length, length)."""
        x, maps = self._embed(idx), []
        for block in self.transformer.h:
            x, w = block(x, need_weights=True)
            maps.append(w)
        return torch.stack(maps)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append `max_new_tokens` tokens, one at a time; temperature 0 means greedy (argmax).

        The context is cropped to the last `block_size` tokens (the model has no more positions).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy); got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None; got {top_k}")
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])
            logits = logits[:, -1, :]
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx

    def configure_optimizer(self, weight_decay: float = 0.1, lr: float = 6e-4,
                            betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices and embeddings only, not on biases and LayerNorm gains.

        Decaying a gain or a bias pulls it towards 0, which changes what the layer computes rather
        than limiting its capacity; matrices (>= 2-D) are what decay is meant to shrink.
        """
        from .train import param_groups  # the book's one weight-decay rule

        groups = param_groups(self, weight_decay)  # a tied weight is listed once
        fused = next(self.parameters()).is_cuda
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


# ----------------------------------------------------------------------------------------------
# Hugging Face GPT-2 <-> GPT
# ----------------------------------------------------------------------------------------------

def hf_config(config: GPTConfig, attn_implementation: str = "eager"):
    """A `transformers.GPT2Config` with the same shape (no hub: built from the numbers).

    >>> hf_config(GPTConfig(vocab_size=65)).n_positions
    256
    """
    from transformers import GPT2Config

    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                      n_layer=config.n_layer, n_head=config.n_head, activation_function="gelu_new",
                      resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
                      layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                      # GPT-2's special ids (50256) do not exist in a small vocabulary. No pad id either:
                      # generate() would take every token equal to it for padding and mask it out.
                      bos_token_id=None, eos_token_id=None, pad_token_id=None,
                      attn_implementation=attn_implementation)


def to_hf(model: GPT, attn_implementation: str = "eager"):
    """A `GPT2LMHeadModel` holding the same weights as `model` (in eval mode).

    >>> hf = to_hf(GPT(GPTConfig(vocab_size=65, n_layer=1, n_head=2, n_embd=32)))
    """
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel(hf_config(model.config, attn_implementation))
    hf.loss_type = "ForCausalLM"  # the class name matches no loss family; say it is a causal LM (no warning)
    target = hf.state_dict()
    sd = {k: v for k, v in model.state_dict().items()}
    with torch.no_grad():
        for key, t in target.items():
            if key in sd:
                t.copy_(sd[key].t() if key.endswith(_TRANSPOSED) else sd[key])
            elif key.endswith(".bias"):
                t.zero_()  # a bias=False model is a GPT-2 whose biases are 0
            else:
                raise KeyError(f"no weight for Hugging Face's {key!r} in the GPT's state dict")
    return hf.eval()


def from_hf(hf_model, use_sdpa: bool = True) -> GPT:
    """A `GPT` holding the weights of a `GPT2LMHeadModel` (one built from a config, or loaded).

    >>> model = from_hf(to_hf(GPT(GPTConfig(vocab_size=65, n_layer=1, n_head=2, n_embd=32))))
    """
    c = hf_model.config
    if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"the GPT uses GELU-tanh; this model uses {c.activation_function!r}")
    if c.n_inner not in (None, 4 * c.n_embd) or c.scale_attn_by_inverse_layer_idx or not c.scale_attn_weights:
        raise ValueError("unsupported GPT2Config: needs n_inner 4*n_embd and the standard 1/sqrt(d) scaling")
    cfg = GPTConfig(block_size=c.n_positions, vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, dropout=c.resid_pdrop, bias=True, use_sdpa=use_sdpa)
    model = GPT(cfg)
    src = hf_model.state_dict()
    new = {k: (src[k].t() if k.endswith(_TRANSPOSED) else src[k]).clone() for k in model.state_dict()}
    model.load_state_dict(new)
    return model.eval()

