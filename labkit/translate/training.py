"""Training a translation model: label-smoothed cross-entropy (equal to
`F.cross_entropy(label_smoothing=...)`) and teacher forcing with AdamW, warm-up + cosine decay
(`labkit.train.lr_at`) and clipping; works for `Seq2SeqTransformer` and Hugging Face
encoder-decoders.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: F401 (the docstring example compares with it)

from .model import _forward_fn
from .tokens import batches


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                                 ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy against (1 - eps) one-hot + eps uniform: loss = (1-eps) NLL + eps mean_v(-log p_v).

    Equal to `F.cross_entropy(..., label_smoothing=eps)`; the model is never pushed to infinite
    confidence, which helps beam search and BLEU.

    >>> z, y = torch.randn(4, 10), torch.tensor([1, 2, -100, 3])
    >>> torch.allclose(label_smoothed_cross_entropy(z, y, 0.1), F.cross_entropy(z, y, label_smoothing=0.1))
    True
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1); got {smoothing}")
    logp = logits.reshape(-1, logits.shape[-1]).float().log_softmax(-1)
    y = targets.reshape(-1)
    keep = y != ignore_index
    logp, y = logp[keep], y[keep]
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    return ((1 - smoothing) * nll + smoothing * -logp.mean(-1)).mean()


def train_seq2seq(model, encoded: Sequence[tuple[list[int], list[int]]], steps: int, batch_size: int = 64,
                  lr: float = 1e-3, warmup: float = 0.05, label_smoothing: float = 0.1, weight_decay: float = 0.01,
                  seed: int = 0, pad_id: int = 0, device: str | torch.device | None = None,
                  progress: bool = True, desc: str = "train") -> list[float]:
    """Teacher-forced training with label smoothing, AdamW, warm-up + cosine decay, clipping at 1.

    Works for `Seq2SeqTransformer` and for Hugging Face encoder-decoders (same batches, same loss).
    The loop is `labkit.train.fit`; the model and batches go to `device`, by default the model's.
    Returns the loss of every step.

    >>> losses = train_seq2seq(model, encode_pairs(tok, train_pairs), steps=500)   # doctest: +SKIP
    """
    from ..train import fit

    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if not encoded:
        raise ValueError("no training pairs")
    fwd = _forward_fn(model)
    device = device or next(model.parameters()).device
    # Kept as calibrated (chapter 13's targets rest on it): Transformer betas and decay on every
    # parameter, not labkit.train.param_groups' matrices only; moving means re-calibrating.
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    rng = random.Random(seed)

    def epochs():  # endless: a new shuffled pass whenever one runs out
        while True:
            yield from batches(encoded, batch_size, generator=rng, pad_id=pad_id, device=device)

    def loss_fn(m, batch):
        src, src_mask, tgt_in, labels = batch
        return label_smoothed_cross_entropy(fwd(src, src_mask, tgt_in), labels, label_smoothing)

    return fit(model, epochs(), loss_fn, steps=steps, lr=lr, warmup=warmup, clip=1.0, optimizer=opt,
               device=device, mixed_precision=False, progress=progress, desc=desc).train_loss
