"""Scoring language models on the same text: cross-entropy, perplexity and bits per character.

Perplexity depends on the unit (characters, words, tokens of one tokenizer), so models with different
units are compared by bits per character: total nats of the text / number of characters / ln 2.
`causal_lm_nats` scores a text with a Hugging Face causal LM in sliding windows of its context.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2)


def perplexity(total_nats: float, n: int) -> float:
    """exp(average nats per unit): the effective number of equally likely choices per unit.

    >>> perplexity(2 * math.log(4), 2)
    4.0
    """
    if n <= 0:
        raise ValueError(f"perplexity needs a positive number of units, got {n}")
    return math.exp(total_nats / n)


def bits_per_char(total_nats: float, n_chars: int) -> float:
    """Total nats of a text / its number of characters / ln 2.

    >>> bits_per_char(10 * math.log(2), 5)
    2.0
    """
    if n_chars <= 0:
        raise ValueError(f"bits_per_char needs a positive number of characters, got {n_chars}")
    return total_nats / n_chars / LN2


def cross_entropy(logits, targets, ignore_index: int = -100):
    """Summed cross-entropy in nats, sum_i (logsumexp(logits_i) - logits_i[target_i]), in float32.

    >>> import torch; round(float(cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1, -100]))), 4)  # 2 ln 4
    2.7726
    """
    import torch

    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    logits, targets = logits[keep], targets[keep]
    picked = logits.gather(1, targets[:, None]).squeeze(1)
    return (torch.logsumexp(logits, dim=-1) - picked).sum()


@dataclass
class TextScore:
    """Result of `causal_lm_nats`: per-token nats and where each token ends in the text."""

    token_nats: np.ndarray  # nats of each token of the text, in order
    token_ends: np.ndarray  # character offset just after each token
    n_chars: int
    windows: int  # forward passes made

    @property
    def total_nats(self) -> float:
        return float(self.token_nats.sum())

    @property
    def n_tokens(self) -> int:
        return len(self.token_nats)

    @property
    def token_ppl(self) -> float:
        return perplexity(self.total_nats, self.n_tokens)

    @property
    def bpc(self) -> float:
        return bits_per_char(self.total_nats, self.n_chars)

    def char_nats(self) -> np.ndarray:
        """Nats per character with each token's nats put on its last character (for plots)."""
        out = np.zeros(self.n_chars)
        np.add.at(out, np.clip(self.token_ends - 1, 0, self.n_chars - 1), self.token_nats)
        return out


def window_plan(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (start, end, first_target) over n token positions. Position 0 (the prefix) is never a
    target; every other position is a target exactly once; after the first window, each window starts
    max(context - stride, 1) tokens before its first target, so those tokens serve as its context.

    >>> window_plan(10, 4, 2)
    [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    """
    if not 0 < stride <= context:
        raise ValueError(f"need 0 < stride <= context, got stride={stride}, context={context}")
    overlap = max(context - stride, 1)  # a window's first target needs at least one token before it
    plan, start, first = [], 0, 1
    while first < n:
        end = min(start + context, n)
        plan.append((start, end, first))
        first, start = end, end - overlap
    return plan


def causal_lm_nats(model, tokenizer, text: str, context: int = 1024, stride: int = 512,
                   prefix_id: int | None = None, progress: bool = True) -> TextScore:
    """Score `text` with a causal LM: every token's nats, each predicted with up to `context` tokens.

    The text is tokenized once, `prefix_id` (default: the tokenizer's BOS, else EOS) is put in front
    so the first token is predicted too, and windows of `context` tokens move by `stride`; the tokens
    new in each window are scored, seeing at least context - stride tokens before them.

    >>> s = causal_lm_nats(model, tok, "The cat sat on the mat.", context=256, stride=128)  # doctest: +SKIP
    >>> print(f"{s.bpc:.2f} bits per character, token perplexity {s.token_ppl:.1f}")   # doctest: +SKIP
    """
    import torch

    if not isinstance(text, str) or not text:
        raise ValueError("causal_lm_nats needs a non-empty string")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and context > max_pos:
        raise ValueError(f"context={context} exceeds the model's max_position_embeddings={max_pos}")
    if prefix_id is None:
        prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix_id is None:
        raise ValueError("the tokenizer has no BOS or EOS token; pass prefix_id explicitly")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [prefix_id] + list(enc["input_ids"])
    ends = np.array([e for _, e in enc["offset_mapping"]], dtype=np.int64)
    if tokenizer.decode(enc["input_ids"]) != text:
        # Then the nats belong to a slightly different string; bits per character would be off.
        warnings.warn("the tokenizer does not round-trip this text exactly", stacklevel=2)
    plan = window_plan(len(ids), context, stride)
    device = next(model.parameters()).device
    nats = np.zeros(len(ids) - 1)
    bar = plan
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(plan, desc="scoring windows", leave=False)
    with torch.inference_mode():
        for start, end, first in bar:
            x = torch.tensor([ids[start:end]], device=device)
            logits = model(input_ids=x).logits[0].float()
            # Logit row j predicts token start + j + 1; the targets are first..end-1.
            rows = logits[first - start - 1:end - start - 1]
            tgt = x[0, first - start:]
            lp = torch.log_softmax(rows, dim=-1).gather(1, tgt[:, None]).squeeze(1)
            nats[first - 1:end - 1] = -lp.cpu().numpy()
    return TextScore(nats, ends, len(text), len(plan))
