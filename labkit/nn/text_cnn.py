"""A convolutional text classifier: n-gram detectors of several widths, max over time."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class TextCNN(nn.Module):
    """Kim (2014)-style text classifier: embeddings, 1-D convolutions of several widths, max over time.

    >>> TextCNN(100, 2)(torch.randint(1, 100, (4, 20))).shape
    torch.Size([4, 2])
    """

    def __init__(self, vocab_size: int, num_classes: int, emb_dim: int = 64, widths: Sequence[int] = (2, 3, 4),
                 channels: int = 64, dropout: float = 0.5, padding_idx: int = 0):
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of kernel widths >= 1, got {widths}")
        self.emb = nn.Embedding(vocab_size, emb_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(emb_dim, channels, w) for w in widths)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels * len(widths), num_classes)
        self.max_width = max(widths)

    def forward(self, idx: Tensor) -> Tensor:
        if idx.shape[1] < self.max_width:  # a convolution needs at least `width` positions
            idx = nn.functional.pad(idx, (0, self.max_width - idx.shape[1]), value=self.emb.padding_idx or 0)
        x = self.emb(idx).transpose(1, 2)                      # (batch, emb, time) for Conv1d
        # Each filter is an n-gram detector; max over time keeps its strongest match anywhere.
        feats = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.head(self.drop(torch.cat(feats, dim=1)))
