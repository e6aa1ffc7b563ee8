"""The encoder-decoder Transformer, built from chapter 05's `EncoderBlock` / `DecoderBlock` and
checked against `torch.nn.Transformer` (`load_torch_transformer`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..attention import DecoderBlock, EncoderBlock, padding_mask, sinusoidal_encoding


@dataclass
class Seq2SeqConfig:
    """Size of a `Seq2SeqTransformer`. Pre-LN blocks (`norm_first`) train stably without tuning."""
    vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.1
    max_len: int = 256
    pad_id: int = 0
    norm_first: bool = True


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer ("Attention is all you need") from chapter 05's blocks.

    One embedding table is shared by the source, the target and the output layer (a shared BPE
    makes that possible). `forward(src, src_mask, tgt_in)` returns logits (batch, Lt, vocab).

    >>> m = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=50, d_model=16, n_heads=2, d_ff=32))
    >>> m(torch.tensor([[5, 6, 2]]), torch.ones(1, 3), torch.tensor([[1, 7]])).shape
    torch.Size([1, 2, 50])
    """

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_id)
        self.register_buffer("pos", sinusoidal_encoding(cfg.max_len, d), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(d, cfg.n_heads, cfg.d_ff, cfg.dropout, norm_first=cfg.norm_first)
                                     for _ in range(cfg.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(d, cfg.n_heads, cfg.d_ff, cfg.dropout, norm_first=cfg.norm_first)
                                     for _ in range(cfg.n_decoder_layers))
        # Final norms as in nn.Transformer: with pre-LN blocks the residual stream is never normalised otherwise.
        self.enc_norm, self.dec_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied: the output layer scores tokens by their embeddings
        nn.init.normal_(self.embed.weight, std=d ** -0.5)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_len={self.cfg.max_len}")
        # sqrt(d) scaling keeps token embeddings (std d^-1/2) on the scale of the positional code.
        return self.drop(self.embed(ids) * math.sqrt(self.cfg.d_model) + self.pos[:ids.shape[1]])

    def encode_embedded(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        m = padding_mask(src_mask)
        for block in self.encoder:
            x = block(x, mask=m)
        return self.enc_norm(x)

    def decode_embedded(self, y: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
                        need_weights: bool = False):
        m, cross = padding_mask(src_mask), []
        for block in self.decoder:
            if need_weights:
                y, ws = block(y, memory, memory_mask=m, is_causal=True, need_weights=True)
                cross.append(ws["cross"])
            else:
                y = block(y, memory, memory_mask=m, is_causal=True)
        y = self.dec_norm(y)
        return (y, cross) if need_weights else y

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Memory (batch, Ls, d): one vector per source token, seen by every decoder layer."""
        return self.encode_embedded(self.embed_tokens(src), src_mask)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, need_weights: bool = False):
        """Logits (batch, Lt, vocab), or (logits, [cross-attention weights per layer])."""
        out = self.decode_embedded(self.embed_tokens(tgt_in), memory, src_mask, need_weights)
        if need_weights:
            return self.lm_head(out[0]), out[1]
        return self.lm_head(out)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def load_torch_transformer(self, t: nn.Transformer) -> "Seq2SeqTransformer":
        """Copy a batch_first `nn.Transformer`'s weights into this model's blocks and final norms
        (then `decode_embedded(encode_embedded(x), ...)` equals `t(x, y, ...)`)."""
        if len(t.encoder.layers) != len(self.encoder) or len(t.decoder.layers) != len(self.decoder):
            raise ValueError("nn.Transformer and this model have different numbers of layers")
        self.encoder = nn.ModuleList(EncoderBlock.from_torch(layer) for layer in t.encoder.layers)
        self.decoder = nn.ModuleList(DecoderBlock.from_torch(layer) for layer in t.decoder.layers)
        self.enc_norm.load_state_dict(t.encoder.norm.state_dict())
        self.dec_norm.load_state_dict(t.decoder.norm.state_dict())
        return self


def _forward_fn(model) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    if isinstance(model, Seq2SeqTransformer):
        return model
    if hasattr(model, "get_encoder"):  # a Hugging Face encoder-decoder (Marian, T5, BART, ...)
        return lambda s, m, t: model(input_ids=s, attention_mask=m, decoder_input_ids=t).logits
    raise TypeError(f"expected a Seq2SeqTransformer or a Hugging Face encoder-decoder; got {type(model).__name__}")
