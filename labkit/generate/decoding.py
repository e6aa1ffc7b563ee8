"""The decoding loop, step for step equal to Hugging Face `generate`: greedy (arg-max) or sampling
(`torch.multinomial`, the same call as `generate`, so the same seed gives the same tokens), with a
*KV cache* (`DynamicCache`: each step feeds one new token instead of the whole sequence) and *stop
sequences* that end a generation on a string.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .processors import process_logits


def new_cache(model):
    """An empty key/value cache for `model` (transformers' `DynamicCache`; it grows as tokens are fed).

    >>> cache = new_cache(model); model(input_ids=ids, past_key_values=cache); cache.get_seq_length()  # doctest: +SKIP
    """
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _eos_list(model, eos_token_id) -> list[int]:
    if eos_token_id is None:
        eos_token_id = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos_token_id is None:
        return []
    return [int(e) for e in (eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])]


def _check_ids(input_ids) -> torch.Tensor:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError("input_ids must be a (batch, length) LongTensor, e.g. tok(text, return_tensors='pt').input_ids")
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids is empty: give at least one prompt token (e.g. the BOS token)")
    return input_ids


@dataclass
class GenerationOutput:
    """What `generate` returns: the full sequences, the new tokens per row, and how long it took."""

    sequences: torch.Tensor  # (batch, prompt + generated), finished rows padded with pad_token_id
    new_tokens: list[list[int]]  # each row's generated ids, up to and including EOS / the stop match
    token_logprobs: list[list[float]]  # log p(token) under the raw model (before any processor), per row
    prompt_length: int
    seconds: float  # wall-clock time of the whole loop (prefill included)
    steps: int  # forward passes after the prefill
    stopped_by: list[str] = field(default_factory=list)  # per row: "eos", "stop", or "length"

    @property
    def n_new(self) -> int:
        return sum(len(t) for t in self.new_tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.n_new / self.seconds if self.seconds > 0 else float("nan")


class _Feeder:
    """Feeds a causal LM and returns next-token logits: the prompt first, then one step at a time.

    With a KV cache the first forward pass ("prefill") reads the prompt and each later pass reads
    only the newest token, attending to the keys and values stored for the earlier ones. Without a
    cache, every pass re-reads the whole sequence: the same numbers, but the work of a step grows
    with the length of the sequence.
    """

    def __init__(self, model, input_ids: torch.Tensor, use_cache: bool = True, past_key_values=None):
        self.model, self.seq, self.use_cache = model, input_ids, use_cache
        self.cache = None
        if use_cache:
            # A given cache holds a shared prefix; it is copied because a cache grows in place.
            self.cache = new_cache(model) if past_key_values is None else copy.deepcopy(past_key_values)

    def first(self) -> torch.Tensor:
        if self.use_cache:
            return self._forward(self.seq[:, self.cache.get_seq_length():])
        return self._forward(self.seq)

    def next(self, new_tokens: torch.Tensor, parents: torch.Tensor | None = None) -> torch.Tensor:
        """Append one token per row; `parents[i]` (beam search) is the row that row i continues."""
        if parents is not None:
            self.seq = self.seq[parents]
            if self.cache is not None:
                self.cache.reorder_cache(parents)
        self.seq = torch.cat([self.seq, new_tokens[:, None]], dim=1)
        return self._forward(new_tokens[:, None] if self.use_cache else self.seq)

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=self.use_cache)
        # float32 copy of the last position only: the (batch, length, vocab) logits are freed.
        return out.logits[:, -1].to(copy=True, dtype=torch.float32)


@torch.inference_mode()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int = 32, do_sample: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float = 1.0, eos_token_id: int | Sequence[int] | None = None,
             pad_token_id: int | None = None, stop: Sequence[str] | None = None, tokenizer=None,
             use_cache: bool = True, past_key_values=None, on_token=None) -> GenerationOutput:
    """Greedy decoding or sampling with our own loop; the same tokens as `model.generate` with the same settings.

    Rows of `input_ids` must have equal length (no padding): sample several continuations of one prompt
    with `input_ids.repeat(n, 1)`. `stop` strings need the `tokenizer`; a row stops at the token that
    completes one (it is kept, as Hugging Face keeps it). `past_key_values` is a cache that already holds
    the first tokens of every row (a shared prefix, computed once); it is copied, never changed.
    `on_token(step, tokens)` is called after every step (for streaming).

    >>> ids = tok("The sea is", return_tensors="pt").input_ids                          # doctest: +SKIP
    >>> torch.manual_seed(0); out = generate(model, ids, 16, do_sample=True, top_p=0.9)  # doctest: +SKIP
    """
    input_ids = _check_ids(input_ids)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if stop and tokenizer is None:
        raise ValueError("stop strings are matched on text: pass tokenizer= as well")
    if isinstance(stop, str):
        stop = [stop]
    if past_key_values is not None and not use_cache:
        raise ValueError("past_key_values needs use_cache=True")
    if do_sample:  # fail before the loop, with the processors' own messages
        process_logits(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 2), temperature, top_k, top_p,
                       repetition_penalty)
    eos = _eos_list(model, eos_token_id)
    if pad_token_id is None:
        pad_token_id = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
        pad_token_id = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    batch, prompt_len = input_ids.shape
    dev = input_ids.device  # the model's device: a GPU reader passes ids already moved there
    eos_t = torch.tensor(eos, dtype=torch.long, device=dev)
    unfinished = torch.ones(batch, dtype=torch.bool, device=dev)
    stopped_by = ["length"] * batch
    seq = input_ids
    t0 = time.perf_counter()
    feeder = _Feeder(model, input_ids, use_cache, past_key_values)
    logits = feeder.first()
    n_steps = 0
    logprobs = []
    for step in range(max_new_tokens):
        if do_sample:
            scores = process_logits(seq, logits, temperature, top_k, top_p, repetition_penalty)
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            # Greedy: the penalty is the only processor that can change the arg-max.
            scores = process_logits(seq, logits, repetition_penalty=repetition_penalty)
            nxt = scores.argmax(dim=-1)
        # A finished row keeps running in the batch (cheap) but only ever receives padding.
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_token_id))
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        # How likely the raw model found the chosen token: the perplexity of what a decoder makes it say.
        logprobs.append(torch.log_softmax(logits, dim=-1).gather(1, nxt[:, None]).squeeze(1))
        for b in range(batch):
            if not unfinished[b]:
                continue
            if eos and bool(torch.isin(nxt[b], eos_t)):
                unfinished[b], stopped_by[b] = False, "eos"
            elif stop and _hit_stop(tokenizer, seq[b, prompt_len:], stop):
                unfinished[b], stopped_by[b] = False, "stop"
        if on_token is not None:
            on_token(step, nxt)
        if not unfinished.any() or step == max_new_tokens - 1:
            break
        logits = feeder.next(nxt)
        n_steps += 1
    seconds = time.perf_counter() - t0
    new_tokens, token_logprobs = [], []
    all_lp = torch.stack(logprobs, dim=1).tolist()
    for b in range(batch):
        row = seq[b, prompt_len:].tolist()
        if stopped_by[b] != "length":  # cut the padding that follows the row's last real token
            row = row[:_finish_index(row, seq[b, prompt_len:], tokenizer, eos, stop, stopped_by[b]) + 1]
        new_tokens.append(row)
        token_logprobs.append(all_lp[b][:len(row)])
    return GenerationOutput(seq, new_tokens, token_logprobs, prompt_len, seconds, n_steps, stopped_by)


def _hit_stop(tokenizer, new_ids: torch.Tensor, stop: Sequence[str]) -> bool:
    text = tokenizer.decode(new_ids, skip_special_tokens=False)
    return any(s in text for s in stop)


def _finish_index(row: list[int], row_t, tokenizer, eos, stop, why: str) -> int:
    """Index of the token that ended a row (its first EOS, or the token that completed a stop string)."""
    if why == "eos":
        return next(i for i, t in enumerate(row) if t in eos)
    for i in range(len(row)):
        if _hit_stop(tokenizer, row_t[:i + 1], stop):
            return i
    return len(row) - 1


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """The text before the first stop string (a stop string is a delimiter, not part of the answer).

    >>> cut_at_stop("Paris.\\nQ: next", ["\\n"])
    'Paris.'
    """
    if not stop:
        return text
    cut = min((text.find(s) for s in stop if s in text), default=len(text))
    return text[:cut]
