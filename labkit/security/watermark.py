"""A green-list watermark in the decoding loop and its z-test detector (Kirchenbauer et al., 2023).

At every step the previous token and a secret key pick a pseudo-random *green list*: a share `gamma`
of the vocabulary. The decoder adds `delta` to the logits of green tokens before sampling, so a
watermarked text holds more green tokens than chance. The detector needs only the key and the
tokenizer: it counts green tokens among T scored tokens, and under "no watermark" that count is
Binomial(T, gamma), so

    z = (green - gamma * T) / sqrt(T * gamma * (1 - gamma))

is about standard normal; z > 4 (one-sided p about 3e-5) says "watermarked".

The paper seeds a random permutation with hash(key, previous token); here the hash decides each
token's colour directly (`green_mask`), which is the same partition idea, vectorised and cheap to
check token by token in the detector.

>>> green_mask(torch.tensor([5]), 10, gamma=0.5, key=1).sum().item()   # about half of 10 tokens
4
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["P", "token_hash", "green_mask", "is_green", "watermark_logits", "GreenListProcessor",
           "z_score", "detect", "Detection", "generate_watermarked", "substitute_tokens"]

P = 2_147_483_647  # the Mersenne prime 2**31 - 1: products of two residues fit in int64


def _check(gamma: float, key: int) -> None:
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma (the green share of the vocabulary) must be in (0, 1), got {gamma}")
    if not isinstance(key, int) or key < 0:
        raise ValueError(f"key must be a non-negative integer, got {key!r}")


def token_hash(prev: torch.Tensor, tokens: torch.Tensor, key: int) -> torch.Tensor:
    """A pseudo-random number in [0, 1) for each (previous token, token) pair under `key`.

    Multiplication modulo a prime is a bijection, so for a fixed previous token the map token -> hash
    scrambles the vocabulary; the square mixes it again so neighbouring ids get unrelated colours.

    >>> token_hash(torch.tensor([3]), torch.tensor([7]), key=42).item() < 1.0
    True
    """
    prev, tokens = prev.long(), tokens.long()
    u = (prev * 1_000_003 + key * 7_919 + 12_345) % P + 1     # 1..P: a non-zero multiplier per context
    w = (tokens * 48_271 + 11) % P
    h = (u * w) % P
    h = (h * h + u) % P
    return h.double() / P


def green_mask(prev: torch.Tensor, vocab_size: int, gamma: float = 0.25, key: int = 15485863) -> torch.Tensor:
    """(batch, vocab) booleans: True where a token is green after the row's previous token `prev` (batch,).

    >>> m = green_mask(torch.tensor([1, 2]), 1000, gamma=0.25); m.shape, round(m.float().mean().item(), 1)
    (torch.Size([2, 1000]), 0.2)
    """
    _check(gamma, key)
    vocab = torch.arange(vocab_size, device=prev.device)
    return token_hash(prev[:, None], vocab[None, :], key) < gamma


def is_green(prev: torch.Tensor, tokens: torch.Tensor, gamma: float = 0.25, key: int = 15485863) -> torch.Tensor:
    """Colour of given tokens (same shape as `prev`): what the detector checks, one pair at a time.

    >>> bool(is_green(torch.tensor([1]), torch.tensor([0]), 0.25)[0]) == bool(green_mask(torch.tensor([1]), 5)[0, 0])
    True
    """
    _check(gamma, key)
    return token_hash(prev, tokens, key) < gamma


def watermark_logits(input_ids: torch.Tensor, scores: torch.Tensor, gamma: float = 0.25,
                     delta: float | torch.Tensor = 2.0, key: int = 15485863) -> torch.Tensor:
    """Add `delta` to the logits of the green tokens of each row (its last token picks the list).

    `delta` is one number, or one per row (shape (batch,)): rows with 0 stay unwatermarked, so
    watermarked and plain texts can share one batch (one forward pass per token for both).

    >>> s = watermark_logits(torch.tensor([[4]]), torch.zeros(1, 8), gamma=0.5, delta=2.0)
    >>> sorted(set(s[0].tolist()))
    [0.0, 2.0]
    """
    d = torch.as_tensor(delta, dtype=scores.dtype, device=scores.device)
    if bool((d < 0).any()):
        raise ValueError(f"delta (the logit bonus of green tokens) must be >= 0, got {delta}")
    if d.dim() == 1:
        if d.numel() != scores.shape[0]:
            raise ValueError(f"one delta per row: got {d.numel()} deltas for {scores.shape[0]} rows")
        d = d[:, None]
    mask = green_mask(input_ids[:, -1], scores.shape[-1], gamma, key)
    return scores + d * mask.to(scores.dtype)


class GreenListProcessor:
    """The watermark as a Hugging Face logits processor: `model.generate(..., logits_processor=[...])`.

    `delta` is one number or one per row of the batch (0 = no watermark for that row).

    >>> proc = GreenListProcessor(gamma=0.25, delta=2.0)
    >>> proc(torch.tensor([[4]]), torch.zeros(1, 8)).max().item()
    2.0
    """

    def __init__(self, gamma: float = 0.25, delta: float | Sequence[float] = 2.0, key: int = 15485863):
        _check(gamma, key)
        self.gamma, self.key = gamma, key
        self.delta = delta if isinstance(delta, (int, float)) else torch.tensor(list(delta), dtype=torch.float32)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return watermark_logits(input_ids, scores, self.gamma, self.delta, self.key)


def z_score(green: float, total: int, gamma: float) -> float:
    """The one-proportion z-statistic of `green` successes in `total` trials against rate `gamma`.

    >>> round(z_score(100, 200, 0.25), 3)
    8.165
    """
    if total <= 0:
        return 0.0
    return (green - gamma * total) / math.sqrt(total * gamma * (1 - gamma))


@dataclass
class Detection:
    """What `detect` returns for one text."""

    z: float
    green: int
    scored: int
    p_value: float  # one-sided, normal approximation
    watermarked: bool


def detect(token_ids: Sequence[int], gamma: float = 0.25, key: int = 15485863, threshold: float = 4.0,
           ignore_repeats: bool = False) -> Detection:
    """Count green tokens of one token sequence (the first token has no context and is skipped).

    `ignore_repeats` scores each (previous, token) pair once: repeated phrases would otherwise count
    many times (the paper's remedy for low-entropy, repetitive text).

    >>> d = detect([1, 2, 3, 4, 5]); d.scored, d.watermarked
    (4, False)
    """
    ids = torch.as_tensor(list(token_ids), dtype=torch.long)
    if ids.numel() < 2:
        return Detection(0.0, 0, 0, 0.5, False)
    prev, cur = ids[:-1], ids[1:]
    if ignore_repeats:
        pairs = torch.unique(torch.stack([prev, cur], 1), dim=0)
        prev, cur = pairs[:, 0], pairs[:, 1]
    green = int(is_green(prev, cur, gamma, key).sum())
    total = int(cur.numel())
    z = z_score(green, total, gamma)
    p = 0.5 * math.erfc(z / math.sqrt(2))
    return Detection(z, green, total, p, z > threshold)


def generate_watermarked(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 200,
                         gamma: float = 0.25, delta: float | Sequence[float] = 2.0, key: int = 15485863,
                         temperature: float = 1.0,
                         top_k: int | None = None, seed: int = 0, batch_size: int = 16,
                         min_new_tokens: int | None = None, progress: bool = True) -> list[list[int]]:
    """Sampled chat answers (token ids, EOS cut) to many prompts, watermarked when delta > 0.

    delta = 0 gives the unwatermarked baseline with the same sampler. `delta` may also be a list, one
    per prompt: watermarked and plain answers are then sampled in the same batches (one forward pass
    per token serves both). `min_new_tokens` holds EOS back, so every text reaches the length the
    detector is measured at.

    >>> ids = generate_watermarked(model, tok, ["Tell me about the sea."], 50)   # doctest: +SKIP
    """
    from ..generate import generate_batch

    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt in [...]")
    deltas = [float(delta)] * len(prompts) if isinstance(delta, (int, float)) else [float(d) for d in delta]
    if len(deltas) != len(prompts):
        raise ValueError(f"delta: one number, or one per prompt ({len(prompts)}), got {len(deltas)}")

    def before_batch(s: int, _width: int) -> dict:
        torch.manual_seed(seed + s)  # each batch reproducible on its own
        d = deltas[s:s + batch_size]
        return {"logits_processor": [GreenListProcessor(gamma, d if len(set(d)) > 1 else d[0], key)] if any(d) else []}

    return generate_batch(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size,
                          progress=progress, return_ids=True, before_batch=before_batch, do_sample=True,
                          temperature=temperature, top_k=top_k or 0, top_p=1.0, min_new_tokens=min_new_tokens)


def substitute_tokens(token_ids: Sequence[int], share: float, vocab_size: int, seed: int = 0) -> list[int]:
    """Replace a share of the tokens by random ones: the cheapest attack on a watermark (each edit can
    turn up to two scored pairs red).

    >>> len(substitute_tokens([1, 2, 3, 4], 0.5, 100))
    4
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    g = torch.Generator().manual_seed(seed)
    ids = torch.as_tensor(list(token_ids), dtype=torch.long)
    if ids.numel() == 0:
        return []
    pick = torch.rand(ids.numel(), generator=g) < share
    ids[pick] = torch.randint(0, vocab_size, (int(pick.sum()),), generator=g)
    return ids.tolist()
