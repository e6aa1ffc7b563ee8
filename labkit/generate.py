"""Decoding written from scratch on a causal LM's logits, step for step equal to Hugging Face `generate`.

A decoder turns next-token logits into text, one token at a time:

- *logits processors* reshape the scores first, in Hugging Face's order: repetition penalty,
  temperature, top-k, top-p (`process_logits`);
- *greedy* decoding takes the arg-max, *sampling* draws from softmax(scores) with `torch.multinomial`
  (the same call as `generate`, so the same seed gives the same tokens) (`generate`);
- *beam search* keeps the `num_beams` best partial sequences by summed log-probability and scores a
  finished one by sum / length**length_penalty (`beam_search`);
- a *KV cache* (`DynamicCache`) keeps every layer's keys and values, so each step feeds one new
  token instead of the whole sequence; *stop sequences* end a generation on a string, and `stream`
  yields the text as it grows.

Measures of generated text live here too: `distinct_n`, `repetition_rate`, `continuation_nats`; and
`generate_batch`, greedy chat answers to many prompts at once (left padding).

    >>> out = generate(model, tok("The sea is", return_tensors="pt").input_ids, max_new_tokens=8)  # doctest: +SKIP
    >>> tok.decode(out.new_tokens[0])                                                              # doctest: +SKIP
"""
from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch

__all__ = ["apply_temperature", "top_k_filter", "top_p_filter", "apply_repetition_penalty", "process_logits",
           "new_cache", "generate", "GenerationOutput", "beam_search", "BeamOutput", "stream",
           "distinct_n", "repetition_rate", "words", "continuation_nats", "generate_batch"]

NEG_INF = -float("inf")


# ----------------------------------------------------------------------------------------------
# Logits processors: (batch, vocab) scores in, (batch, vocab) scores out.
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# The decoding loop.
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Streaming.
# ----------------------------------------------------------------------------------------------
def stream(model, tokenizer, input_ids: torch.Tensor, skip_special_tokens: bool = True,
           **settings) -> Iterator[str]:
    """Yield the generated text piece by piece while `generate` runs (batch of one prompt).

    The whole continuation is decoded again at every step and only the new suffix is yielded: a
    token can be half a character (UTF-8 bytes split over two tokens, shown as U+FFFD) or change
    how the previous token is decoded, so pieces are held back until they are final.

    >>> for piece in stream(model, tok, ids, max_new_tokens=20): print(piece, end="")   # doctest: +SKIP
    """
    import queue
    import threading

    input_ids = _check_ids(input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError(f"stream takes one prompt (batch of 1), got a batch of {input_ids.shape[0]}")
    pieces: queue.Queue = queue.Queue()
    state = {"ids": [], "shown": 0}
    done = object()

    def on_token(step, nxt):
        state["ids"].append(int(nxt[0]))
        text = tokenizer.decode(state["ids"], skip_special_tokens=skip_special_tokens)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return
        if len(text) > state["shown"]:
            pieces.put(text[state["shown"]:])
            state["shown"] = len(text)

    result: dict = {}

    def run():
        try:
            result["out"] = generate(model, input_ids, tokenizer=tokenizer, on_token=on_token, **settings)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            result["error"] = e
        finally:
            pieces.put(done)

    # The model runs in a thread so the caller receives each piece as soon as it exists (as with
    # transformers' TextIteratorStreamer); torch releases the GIL inside its kernels.
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    while (item := pieces.get()) is not done:
        yield item
    worker.join()
    if "error" in result:
        raise result["error"]
    out = result["out"]
    final = tokenizer.decode(out.new_tokens[0], skip_special_tokens=skip_special_tokens)
    if len(final) > state["shown"]:  # whatever was held back at the end
        yield final[state["shown"]:]


# ----------------------------------------------------------------------------------------------
# Beam search.
# ----------------------------------------------------------------------------------------------
@dataclass
class BeamOutput:
    """The best finished hypotheses of `beam_search`, best first."""

    sequences: list[list[int]]  # prompt + generated ids
    scores: list[float]  # sum of log-probabilities / generated_length ** length_penalty
    prompt_length: int
    steps: int

    @property
    def best(self) -> list[int]:
        return self.sequences[0]

    @property
    def new_tokens(self) -> list[int]:
        return self.sequences[0][self.prompt_length:]


@torch.inference_mode()
def beam_search(model, input_ids: torch.Tensor, num_beams: int = 4, max_new_tokens: int = 32,
                length_penalty: float = 1.0, early_stopping: bool | str = False,
                eos_token_id: int | Sequence[int] | None = None, use_cache: bool = True) -> BeamOutput:
    """Beam search for one prompt, with the semantics of `model.generate(num_beams=..., do_sample=False)`.

    Each step extends every running beam by every token, keeps the 2 * num_beams best continuations by
    summed log-probability, moves those that end (EOS, or the length limit) among the best num_beams
    to the finished list with score sum / length ** length_penalty, and carries on with the best
    num_beams that did not end. `early_stopping`: True stops as soon as num_beams hypotheses are
    finished; False stops when the best running beam, scored at its current length, can no longer
    beat the worst finished one; "never" scores it at the longest possible length (when
    length_penalty > 0), as the textbook algorithm does.

    >>> out = beam_search(model, tok("The sea is", return_tensors="pt").input_ids, num_beams=4)  # doctest: +SKIP
    >>> tok.decode(out.new_tokens)                                                               # doctest: +SKIP
    """
    input_ids = _check_ids(input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError("beam_search takes one prompt (a batch of 1); loop over prompts")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    eos = _eos_list(model, eos_token_id)
    dev = input_ids.device
    eos_t = torch.tensor(eos, dtype=torch.long, device=dev)
    prompt_len = input_ids.shape[1]
    max_length = prompt_len + max_new_tokens
    n_keep = max(2, 1 + len(eos)) * num_beams  # enough that num_beams survive even if the best all end

    running = input_ids.repeat(num_beams, 1)  # the beams start identical ...
    running_scores = torch.full((num_beams,), -1e9, device=dev)
    running_scores[0] = 0.0  # ... so only the first counts at step one (no duplicate beams)
    finished: list[tuple[float, list[int]]] = []  # (score, ids), best first, at most num_beams
    may_improve = True  # can a running beam still beat the worst finished one?
    feeder = _Feeder(model, running, use_cache)
    logits = feeder.first()
    n_steps = 0
    while True:
        cur_len = running.shape[1]
        vocab = logits.shape[-1]
        logp = torch.log_softmax(logits, dim=-1) + running_scores[:, None]  # (beams, vocab)
        top_scores, top_idx = torch.topk(logp.reshape(-1), k=n_keep)
        from_beam, token = top_idx // vocab, top_idx % vocab
        candidates = torch.cat([running[from_beam], token[:, None]], dim=1)
        ends = torch.isin(token, eos_t) | (cur_len + 1 >= max_length)

        # Finished hypotheses: only candidates among the best num_beams may enter, and only while
        # the search can still improve (Hugging Face's rules).
        full_and_early = len(finished) == num_beams and early_stopping is True
        if may_improve and not full_and_early:
            gen_len = cur_len + 1 - prompt_len
            for i in range(num_beams):
                if ends[i]:
                    finished.append((float(top_scores[i] / (gen_len ** length_penalty)), candidates[i].tolist()))
            finished = sorted(finished, key=lambda f: -f[0])[:num_beams]

        # The running beams of the next step: the best num_beams candidates that did not end.
        alive_scores = top_scores + ends.float() * -1e9
        keep = torch.topk(alive_scores, k=num_beams).indices
        running, running_scores = candidates[keep], alive_scores[keep]

        cur_len += 1
        if len(finished) == num_beams:
            best_len = (max_length - prompt_len) if (early_stopping == "never" and length_penalty > 0) \
                else (cur_len - prompt_len)
            best_possible = float(running_scores[0] / (best_len ** length_penalty))
            may_improve = may_improve and best_possible > finished[-1][0]
        if not may_improve or (len(finished) == num_beams and early_stopping is True) or bool(ends.all()):
            break
        logits = feeder.next(running[:, -1], parents=from_beam[keep])
        n_steps += 1
    return BeamOutput([s for _, s in finished], [sc for sc, _ in finished], prompt_len, n_steps)


# ----------------------------------------------------------------------------------------------
# Measuring generated text.
# ----------------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the units of `distinct_n` and `repetition_rate`.

    >>> words("The sea, the SEA!")
    ['the', 'sea', ',', 'the', 'sea', '!']
    """
    return _WORD.findall(text.lower())


def _ngrams(units: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams / all n-grams, over all texts together.

    1.0 means no n-gram occurs twice anywhere; low values mean the texts repeat themselves or each other.

    >>> distinct_n(["a b a b", "a b c"], n=2)   # a-b, b-a, a-b, a-b, b-c: 3 distinct of 5
    0.6
    """
    if isinstance(texts, str):
        raise TypeError("distinct_n takes a list of texts; wrap a single text in [...]")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for t in texts for g in _ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_rate(texts: Iterable[str], n: int = 2) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text, averaged over texts.

    This is 1 - distinct-n computed inside each text: 0 means no text repeats itself.

    >>> round(repetition_rate(["a b a b", "a b c"], n=2), 4)   # (1 - 2/3 + 0) / 2
    0.1667
    """
    if isinstance(texts, str):
        raise TypeError("repetition_rate takes a list of texts; wrap a single text in [...]")
    rates = []
    for t in texts:
        grams = _ngrams(words(t), n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else float("nan")


@torch.inference_mode()
def continuation_nats(model, prompt_ids: torch.Tensor, new_tokens: Sequence[int]) -> tuple[float, int]:
    """Total nats of `new_tokens` under the model given the prompt (the raw model, no processors).

    exp(nats / n) is the perplexity of the continuation: how surprised the model itself is by what
    a decoder made it say.

    >>> nats, n = continuation_nats(model, ids, out.new_tokens[0])   # doctest: +SKIP
    >>> labkit.evaluate.perplexity(nats, n)                          # doctest: +SKIP
    """
    prompt_ids = _check_ids(prompt_ids)
    if prompt_ids.shape[0] != 1:
        raise ValueError("continuation_nats scores one prompt at a time")
    new = torch.as_tensor(list(new_tokens), dtype=torch.long, device=prompt_ids.device)[None]
    if new.shape[1] == 0:
        return 0.0, 0
    full = torch.cat([prompt_ids, new], dim=1)
    logits = model(input_ids=full).logits[0, prompt_ids.shape[1] - 1:-1].float()
    lp = torch.log_softmax(logits, dim=-1).gather(1, new[0][:, None]).squeeze(1)
    return float(-lp.sum()), new.shape[1]


# ----------------------------------------------------------------------------------------------
# Many chat answers at once.

def generate_batch(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 24,
                   batch_size: int = 16, system: str | None = None, progress: bool = True) -> list[str]:
    """Greedy answers of a chat model to many user messages, a batch at a time (left padding).

    One user message per prompt (after an optional `system` message), through the chat template, as
    `labkit.qa.closed_book_answer` does for one question; batching makes the CPU do one forward pass
    per new token for many answers. Chapters 07 and 15 score held-out instructions with it.

    >>> generate_batch(model, tok, ["What is the capital of France?"])   # doctest: +SKIP
    ['The capital of France is Paris.']
    """
    from tqdm.auto import tqdm

    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt in [...]")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat template; use 'smollm2-135m-instruct'")
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    try:
        for s in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress, leave=False):
            head = [{"role": "system", "content": system}] if system else []
            texts = [tokenizer.apply_chat_template(head + [{"role": "user", "content": p}], add_generation_prompt=True,
                                                   tokenize=False) for p in prompts[s:s + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(next(model.parameters()).device)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=pad)
            answers += [tokenizer.decode(o[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
                        for o in out]
    finally:
        tokenizer.padding_side = side
    return answers
