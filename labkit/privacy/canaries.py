"""Canaries in a language model: `digit_canary_logprobs` and `exposure` (the "secret sharer" canary
exposure), and `PositionBatchedGPT`, labkit's GPT made ready for opacus.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..gpt import GPT


class PositionBatchedGPT(GPT):
    """labkit's GPT with position ids given per example, so opacus can compute per-example gradients.

    opacus computes an embedding's per-example gradient from its input, which must carry the batch
    dimension; GPT looks positions up with a shared (length,) tensor. The output is identical.
    >>> from labkit.gpt import GPTConfig
    >>> m = PositionBatchedGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    """

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, length) token ids; got shape {tuple(idx.shape)}")
        b, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence of length {t} is longer than block_size={self.config.block_size}")
        pos = torch.arange(t, device=idx.device).unsqueeze(0).expand(b, t)
        return self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))


@torch.no_grad()
def digit_canary_logprobs(model: nn.Module, prefix_ids: Sequence[int], digit_ids: Sequence[int],
                          n_digits: int, batch_size: int = 1024) -> np.ndarray:
    """log p(d_1 ... d_n | prefix) for EVERY string of n digits, in numeric order (10**n values).

    One forward pass per (n-1)-digit prefix gives the last digit's distribution too, so the cost is
    10**(n-1) sequences, not 10**n. `model(idx)` must return logits first (labkit's GPT does).
    >>> # lp = digit_canary_logprobs(model, encode("my pin is "), encode("0123456789"), 4)
    """
    if len(digit_ids) != 10:
        raise ValueError(f"digit_ids must hold the ids of '0'..'9' (10 ids); got {len(digit_ids)}")
    if not 1 <= n_digits <= 7:
        raise ValueError(f"n_digits must be in 1..7 (10**n candidates are scored); got {n_digits}")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device  # the ids go where the model is; the scores come back to the CPU
    digits = torch.tensor(list(digit_ids))
    prefix = torch.tensor(list(prefix_ids))
    m = n_digits - 1
    heads = torch.arange(10 ** m)
    # The digits of every head, most significant first.
    head_digits = torch.stack([(heads // 10 ** (m - 1 - j)) % 10 for j in range(m)], 1) if m else heads[:, None][:, :0]
    out = torch.empty(10 ** m, 10)
    for s in range(0, 10 ** m, batch_size):
        hd = head_digits[s:s + batch_size]
        idx = torch.cat([prefix.expand(len(hd), -1), digits[hd]], 1)
        logp = F.log_softmax(model(idx.to(dev))[0].float(), dim=-1).cpu()
        p0 = len(prefix) - 1  # the logits at position i predict token i + 1
        lp_head = torch.zeros(len(hd))
        for j in range(m):
            lp_head += logp[torch.arange(len(hd)), p0 + j, digits[hd[:, j]]]
        out[s:s + len(hd)] = lp_head[:, None] + logp[:, p0 + m][:, digits]
    model.train(was_training)
    return out.reshape(-1).numpy()


def exposure(candidate_logprobs: np.ndarray, secret_index: int) -> tuple[int, float]:
    """Rank of the secret among all candidates (1 = most likely) and its exposure in bits.

    exposure = log2(#candidates) - log2(rank) (Carlini et al., "The Secret Sharer", 2019): 0 bits when
    the secret is the least likely candidate, log2(#candidates) when it is the most likely.
    >>> exposure(np.array([-3.0, -1.0, -2.0, -4.0]), 1)
    (1, 2.0)
    """
    lp = np.asarray(candidate_logprobs, float)
    if not 0 <= secret_index < len(lp):
        raise ValueError(f"secret_index {secret_index} outside 0..{len(lp) - 1}")
    # Ties are counted against the secret (rank = 1 + number of candidates at least as likely).
    rank = int((lp > lp[secret_index]).sum() + (lp == lp[secret_index]).sum())
    return rank, float(math.log2(len(lp)) - math.log2(rank))
