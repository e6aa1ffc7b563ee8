"""Visual question answering: questions about a digit, and three ways to fuse image and question."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import DecoderBlock, padding_mask
from .captions import DIGIT_WORDS
from .images import ImageTokens, SmallCNN


QUESTION_KINDS = ("even", "odd", "larger", "smaller", "is")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_questions(labels: Sequence[int], per_image: int, generator: torch.Generator | None = None):
    """Yes/no questions about digits: (image index, question, answer 1 = yes, kind) lists.

    Kinds: "is this digit even/odd ?", "is it larger/smaller than N ?", "is it a WORD ?". For
    "is it a WORD" the asked digit is the true one half of the time, otherwise almost every answer
    would be "no".

    >>> idx, q, a, kind = make_questions([7], 1, torch.Generator().manual_seed(0)); len(q)
    1
    """
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1; got {per_image}")
    g = generator or torch.Generator().manual_seed(0)

    def r(n: int) -> int:
        return int(torch.randint(n, (1,), generator=g))

    idx, questions, answers, kinds = [], [], [], []
    for i, y in enumerate(int(v) for v in labels):
        for _ in range(per_image):
            kind = QUESTION_KINDS[r(len(QUESTION_KINDS))]
            if kind in ("even", "odd"):
                q, a = f"is this digit {kind} ?", (y % 2 == 0) == (kind == "even")
            elif kind in ("larger", "smaller"):
                k = r(10)
                q, a = f"is it {kind} than {k} ?", y > k if kind == "larger" else y < k
            else:
                k = y if r(2) else (y + 1 + r(9)) % 10
                q, a = f"is it {_article(DIGIT_WORDS[k])} {DIGIT_WORDS[k]} ?", k == y
            idx.append(i)
            questions.append(q)
            answers.append(int(a))
            kinds.append(kind)
    return idx, questions, answers, kinds


class BagOfWords(nn.Module):
    """Question encoder for late fusion: mean of word embeddings, then a dense layer."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(torch.float32)
        return self.fc((self.emb(ids) * m).sum(1) / m.sum(1).clamp_min(1.0))


class EarlyFusion(nn.Module):
    """Early fusion: concatenate raw pixels and one-hot question words, then one MLP sees both.

    >>> EarlyFusion(20, 6)(torch.rand(2, 1, 8, 8), torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6)).shape
    torch.Size([2, 2])
    """

    def __init__(self, vocab_size: int, max_len: int, n_pixels: int = 64, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.mlp = nn.Sequential(nn.Linear(n_pixels + max_len * vocab_size, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"questions of {ids.shape[1]} tokens exceed max_len={self.max_len}")
        words = F.one_hot(ids, self.vocab_size).float() * mask.unsqueeze(-1)
        words = F.pad(words, (0, 0, 0, self.max_len - ids.shape[1]))  # fixed width for the MLP
        return self.mlp(torch.cat([images.flatten(1), words.flatten(1)], 1))


class LateFusion(nn.Module):
    """Late fusion: an image encoder and a question encoder run separately and meet at the end.

    `mode="scores"` adds two separate yes/no predictions (no interaction between the modalities);
    `mode="product"` multiplies the two embeddings element-wise before a small head (a bilinear
    interaction), which is what a question like "is it larger than 5?" needs.

    >>> LateFusion(20)(torch.rand(2, 1, 8, 8), torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6)).shape
    torch.Size([2, 2])
    """

    def __init__(self, vocab_size: int, dim: int = 64, mode: str = "product", cnn_width: int = 16):
        super().__init__()
        if mode not in ("scores", "product"):
            raise ValueError(f"mode must be 'scores' or 'product'; got {mode!r}")
        self.mode = mode
        self.image = SmallCNN(width=cnn_width, dim=dim)
        self.question = BagOfWords(vocab_size, dim)
        if mode == "scores":
            self.image_head, self.question_head = nn.Linear(dim, 2), nn.Linear(dim, 2)
        else:
            self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v, q = self.image.embed(images), self.question(ids, mask)
        if self.mode == "scores":
            return self.image_head(v) + self.question_head(q)
        return self.head(v * q)


class CrossAttentionFusion(nn.Module):
    """Cross-attention fusion: question tokens attend to image region tokens (decoder blocks, no causal mask).

    Each question word looks for the image regions it needs (`ImageTokens`); after `depth`
    blocks the question tokens are mean-pooled into the answer. `forward(..., need_weights=True)`
    also returns the last block's cross-attention weights (B, heads, question length, regions).

    >>> CrossAttentionFusion(20)(torch.rand(2, 1, 8, 8), torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6)).shape
    torch.Size([2, 2])
    """

    def __init__(self, vocab_size: int, dim: int = 64, heads: int = 4, depth: int = 2, max_len: int = 16,
                 image_tokens: str = "cnn", patch: int = 2, image_depth: int = 0, dropout: float = 0.0):
        super().__init__()
        self.image = ImageTokens(dim, image_tokens, patch=patch, depth=image_depth, heads=heads, dropout=dropout)
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.tok_pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads, 2 * dim, dropout, "gelu", norm_first=True)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, need_weights: bool = False):
        regions = self.image(images)
        h = self.tok(ids) + self.tok_pos[:ids.shape[1]]
        w = None
        for block in self.blocks:
            out = block(h, regions, self_mask=padding_mask(mask), is_causal=False, need_weights=need_weights)
            h, w = (out[0], out[1]["cross"]) if need_weights else (out, None)
        m = mask.unsqueeze(-1).to(torch.float32)
        logits = self.head((self.norm(h) * m).sum(1) / m.sum(1).clamp_min(1.0))
        return (logits, w) if need_weights else logits
