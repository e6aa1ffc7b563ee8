"""Captioning: an image-conditioned text decoder."""
from __future__ import annotations

import torch
from torch import nn

from ..attention import DecoderBlock
from .images import ImageTokens


class CaptionModel(nn.Module):
    """Image region tokens + a Transformer decoder whose cross-attention reads them.

    Trained with teacher forcing (`forward(images, ids)` gives next-token logits at every
    position); `generate` decodes greedily, one token at a time, until <eos>.

    >>> m = CaptionModel(12, dim=16, heads=2); m(torch.rand(2, 1, 8, 8), torch.ones(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 12])
    """

    def __init__(self, vocab_size: int, dim: int = 64, heads: int = 4, depth: int = 2, max_len: int = 12,
                 image_tokens: str = "patches", patch: int = 2, image_depth: int = 1, dropout: float = 0.0):
        super().__init__()
        self.max_len = max_len
        self.image = ImageTokens(dim, image_tokens, patch=patch, depth=image_depth, heads=heads, dropout=dropout)
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.decoder = nn.ModuleList(DecoderBlock(dim, heads, 2 * dim, dropout, "gelu", norm_first=True)
                                     for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size)

    def decode(self, ids: torch.Tensor, memory: torch.Tensor, need_weights: bool = False):
        """Next-token logits (B, L, V) for token ids (B, L) given image tokens `memory`."""
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_len={self.max_len}")
        h = self.tok(ids) + self.pos[:ids.shape[1]]
        w = None
        for block in self.decoder:
            out = block(h, memory, is_causal=True, need_weights=need_weights)
            h, w = (out[0], out[1]["cross"]) if need_weights else (out, None)
        logits = self.lm_head(self.norm(h))
        return (logits, w) if need_weights else logits

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.decode(ids, self.image(images))

    @torch.no_grad()
    def generate(self, images: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int | None = None) -> torch.Tensor:
        """Greedy decoding: (B, 1 + generated) ids starting with <bos>; finished rows pad with <eos>."""
        n = min(max_new_tokens or self.max_len - 1, self.max_len - 1)
        memory = self.image(images)  # the image is encoded once; only the text grows
        ids = torch.full((len(images), 1), bos_id, dtype=torch.long, device=images.device)
        done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for _ in range(n):
            nxt = self.decode(ids, memory)[:, -1].argmax(-1)
            nxt = nxt.masked_fill(done, eos_id)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == eos_id
            if done.all():
                break
        return ids
