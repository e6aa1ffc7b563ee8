"""Logits processors: (batch, vocab) scores in, (batch, vocab) scores out, in Hugging Face's order:
repetition penalty, temperature, top-k, top-p (`process_logits`).
"""
from __future__ import annotations

import torch


NEG_INF = -float("inf")


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by T: T < 1 sharpens softmax(scores), T > 1 flattens it.

    >>> apply_temperature(torch.tensor([[2.0, 1.0]]), 0.5)
    tensor([[4., 2.]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; for the arg-max use do_sample=False")
    return scores / temperature


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest scores of each row (ties with the k-th are kept too), set the rest to -inf.

    >>> top_k_filter(torch.tensor([[1.0, 3.0, 2.0]]), 2)
    tensor([[-inf, 3., 2.]])
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive integer, got {k!r}; use None to switch it off")
    kth = torch.topk(scores, min(k, scores.shape[-1])).values[..., -1:]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probabilities sum to >= p.

    A token is kept when the probability mass of the tokens *more* likely than it is still < p,
    so the token that crosses p is kept too.

    >>> top_p_filter(torch.log(torch.tensor([[0.5, 0.3, 0.2]])), 0.7).exp()
    tensor([[0.5000, 0.3000, 0.0000]])
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}; use None to switch it off")
    # Hugging Face sorts ascending and removes a token when the mass up to and including it (from the
    # unlikely end) is <= 1 - p. That is the same rule as "mass of more likely tokens >= p", and
    # summing in the same order gives the same floating-point boundary, so we sum the same way.
    sorted_scores, order = torch.sort(scores, descending=False)
    cum_from_tail = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum_from_tail <= (1 - p)
    remove_sorted[..., -min_tokens_to_keep:] = False  # the most likely tokens sit at the end
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return scores.masked_fill(remove, NEG_INF)


def apply_repetition_penalty(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: every token already in the row (prompt included) gets its logit
    divided by `penalty` if positive, multiplied by it if negative; either way it becomes less likely.

    >>> apply_repetition_penalty(torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[0, 1]]), 2.0)
    tensor([[ 1., -4.,  1.]])
    """
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 means off), got {penalty}")
    seen = scores.gather(1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def process_logits(input_ids: torch.Tensor, scores: torch.Tensor, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None,
                   repetition_penalty: float = 1.0) -> torch.Tensor:
    """All processors in Hugging Face's order: repetition penalty, temperature, top-k, top-p.

    >>> process_logits(torch.tensor([[0]]), torch.tensor([[2.0, 1.0, 0.0]]), temperature=0.5, top_k=2,
    ...                repetition_penalty=2.0)   # token 0 was seen: 2 -> 1, then / 0.5
    tensor([[2., 2., -inf]])
    """
    # Off-values are skipped, as Hugging Face skips them: x / 1.0 is exact, but it keeps the two
    # implementations step-for-step identical and saves work.
    if repetition_penalty is not None and repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, input_ids, repetition_penalty)
    if temperature is not None and temperature != 1.0:
        scores = apply_temperature(scores, temperature)
    if top_k:
        scores = top_k_filter(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    return scores
