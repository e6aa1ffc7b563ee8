"""Inference engineering: padding and batching, the KV cache."""
from __future__ import annotations

import time
from typing import Sequence

import torch

from .errors import OptimizeError


def make_batches(texts: Sequence[str], tokenizer, batch_size: int = 32, padding: str = "dynamic",
                 max_length: int = 128) -> list[dict[str, torch.Tensor]]:
    """Tokenized batches with one of three padding strategies.

    "fixed": every batch padded to `max_length`; "dynamic": each batch padded to its longest
    text; "bucket": texts sorted by length first, so each batch holds texts of similar length
    (the order changes: each batch carries "index" to put predictions back in place).

    >>> [b["input_ids"].shape for b in make_batches(["a", "a b c"], tok, 2, "dynamic")]  # doctest: +SKIP
    """
    if padding not in ("fixed", "dynamic", "bucket"):
        raise OptimizeError(f"padding must be 'fixed', 'dynamic' or 'bucket', got {padding!r}")
    if batch_size < 1:
        raise OptimizeError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    order = list(range(len(texts)))
    if padding == "bucket":
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = sorted(order, key=lambda i: lengths[i])
    out = []
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        b = tokenizer([texts[j] for j in idx], truncation=True, max_length=max_length, return_tensors="pt",
                      padding="max_length" if padding == "fixed" else True)
        b = dict(b)
        b["index"] = torch.tensor(idx)
        out.append(b)
    return out


def pad_fraction(batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Share of all token positions in the batches that are padding (wasted compute).

    >>> pad_fraction([{"attention_mask": torch.tensor([[1, 1], [1, 0]])}])
    0.25
    """
    total = sum(b["attention_mask"].numel() for b in batches)
    return 1 - sum(int(b["attention_mask"].sum()) for b in batches) / max(total, 1)


@torch.inference_mode()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int, use_cache: bool = True
                    ) -> tuple[torch.Tensor, list[float]]:
    """Greedy decoding written out, with or without the KV cache; returns (ids, seconds per token).

    Without the cache every step runs the whole sequence through the model again (cost grows
    with the length); with it, a step runs only the newest token and reads the keys and values
    of the earlier ones from the cache.

    >>> ids, times = greedy_generate(lm, tok("Hello", return_tensors="pt").input_ids, 8)  # doctest: +SKIP
    """
    if max_new_tokens < 1:
        raise OptimizeError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    ids, past, times = input_ids, None, []
    for _ in range(max_new_tokens):
        t0 = time.perf_counter()
        if use_cache:
            out = model(input_ids=ids if past is None else ids[:, -1:], past_key_values=past, use_cache=True)
            past = out.past_key_values
        else:
            out = model(input_ids=ids, use_cache=False)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        times.append(time.perf_counter() - t0)
    return ids, times
