"""Continuous batching on the from-scratch Llama with a paged KV cache, and the two batching
schemes it replaces.

A serving engine runs a loop of *steps*. Each step feeds the model one packed list of tokens: the
whole prompt of every sequence that was just admitted (*prefill*) and the last generated token of
every sequence already running (*decode*), then samples one new token per sequence.

- **continuous batching** (连续批处理): at every step finished sequences leave and waiting ones join,
  as long as there is a free slot (`max_batch`) and free cache blocks; the batch never drains.
- **static batching** (静态批处理): a batch is admitted only when the previous one has completely
  finished, so a short request waits for the longest one in its batch and newcomers queue.
- **one at a time**: static batching with `max_batch=1`.

All three run the same code; only the admission rule differs. When the cache runs out of blocks
mid-generation, the newest sequence is *preempted*: its blocks are freed and it goes back to the
front of the queue, to be recomputed later (vLLM's "recompute" policy).

    >>> from labkit.llama import Llama, LlamaConfig
    >>> torch.manual_seed(0); model = Llama(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32,
    ...                                                 num_layers=1, num_heads=4, num_kv_heads=2)).eval()
    <torch._C.Generator object at ...>
    >>> eng = Engine(model, num_blocks=16, block_size=4, max_batch=2)
    >>> reqs = [Request([1, 2, 3], max_new_tokens=5), Request([4, 5], max_new_tokens=3)]
    >>> done = eng.run(reqs)
    >>> [len(r.output) for r in done], eng.cache.allocator.num_free
    ([5, 3], 16)
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..generate import apply_temperature, top_p_filter
from ..llama import Llama, attention
from .paged import PagedKVCache

__all__ = ["Request", "Engine", "summarize", "poisson_arrivals"]

_ids = itertools.count()


@dataclass
class Request:
    """One generation request and, once served, its output and timings (seconds on the engine's clock).

    `on_token(request, token)` is called from the engine's thread for every new token, and once with
    token None when the request ends (`finish_reason` is then "stop", "length" or "cancelled").
    """
    prompt: list[int]
    max_new_tokens: int = 32
    temperature: float = 0.0          # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    arrival: float = 0.0
    on_token: Callable[["Request", int | None], None] | None = None
    id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    output: list[int] = field(default_factory=list)
    t_submit: float | None = None
    t_first: float | None = None
    t_done: float | None = None
    finish_reason: str | None = None
    preemptions: int = 0

    def __post_init__(self):
        if not self.prompt:
            raise ValueError("a request needs at least one prompt token")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        self._gen = None
        if self.temperature > 0:
            self._gen = torch.Generator()
            self._gen.manual_seed(self.seed if self.seed is not None else int(torch.randint(2**62, (1,))))

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output


class Engine:
    """A paged-KV-cache engine over a `labkit.llama.Llama`.

    policy: "continuous" (admit at every step) or "static" (admit only into an empty batch).
    num_blocks * block_size: how many tokens the cache holds over all running sequences.
    """

    def __init__(self, model: Llama, num_blocks: int = 256, block_size: int = 16, max_batch: int = 8,
                 policy: str = "continuous", clock: Callable[[], float] = time.perf_counter):
        if policy not in ("continuous", "static"):
            raise ValueError(f"policy must be 'continuous' or 'static', got {policy!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        cfg = model.cfg
        self.model, self.policy, self.max_batch, self.clock = model, policy, max_batch, clock
        dev = next(model.parameters()).device
        self.device = dev
        self.cache = PagedKVCache(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, num_blocks, block_size,
                                  dtype=next(model.parameters()).dtype, device=dev)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._inbox: deque[Request] = deque()
        self._cancel: set[str] = set()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self.steps = 0
        self.batch_sizes: list[int] = []

    # -- the public, thread-safe side --------------------------------------------------------------
    def submit(self, req: Request) -> Request:
        """Queue a request (from any thread); it joins the batch at a coming step."""
        need = len(req.prompt) + req.max_new_tokens
        if self.cache.blocks_needed(need) > self.cache.allocator.num_blocks:
            raise ValueError(f"request needs {need} tokens of cache but the whole cache holds "
                             f"{self.cache.allocator.num_blocks * self.cache.block_size}; shorten it")
        req.t_submit = self.clock()
        with self._lock:
            self._inbox.append(req)
            self._lock.notify()
        return req

    def cancel(self, req_id: str) -> None:
        """Stop a request (e.g. its client went away): its slot and blocks are freed at the next step."""
        with self._lock:
            self._cancel.add(req_id)
            self._lock.notify()

    def has_work(self) -> bool:
        return bool(self._inbox or self.waiting or self.running or self._cancel)

    # -- one step ----------------------------------------------------------------------------------
    def _finish(self, r: Request, reason: str) -> None:
        r.finish_reason, r.t_done = reason, self.clock()
        if r.id in self.cache.tables:
            self.cache.free(r.id)
        if r.on_token:
            r.on_token(r, None)

    def _take_inbox(self) -> None:
        with self._lock:
            self.waiting.extend(self._inbox)
            self._inbox.clear()
            cancel, self._cancel = self._cancel, set()
        for r in [r for r in self.running if r.id in cancel]:
            self.running.remove(r)
            self._finish(r, "cancelled")
        for r in [r for r in self.waiting if r.id in cancel]:
            self.waiting.remove(r)
            self._finish(r, "cancelled")

    def _admit(self) -> None:
        if self.policy == "static" and self.running:
            return  # a static batch runs to its end before anyone joins
        while self.waiting and len(self.running) < self.max_batch:
            r = self.waiting[0]
            if not self.cache.can_fit(len(r.tokens) + 1):
                break
            self.waiting.popleft()
            self.cache.add(r.id)
            self.running.append(r)

    def _make_room(self) -> None:
        """Grow every running sequence's table by its new tokens, preempting the newest on shortage."""
        i = 0
        while i < len(self.running):
            r = self.running[i]
            if self.cache.grow(r.id, len(r.tokens)):
                i += 1
                continue
            victim = self.running.pop()  # newest; it may be r itself
            self.cache.free(victim.id)
            victim.preemptions += 1
            self.waiting.appendleft(victim)

    def step(self) -> int:
        """Run one engine step; returns how many sequences were in the batch (0: nothing to do)."""
        self._take_inbox()
        self._admit()
        if not self.running:
            return 0
        starts = {r.id: self.cache.lengths[r.id] for r in self.running}  # tokens already cached
        self._make_room()
        batch = self.running
        tokens, positions, slots, last, prefill, decode = [], [], [], [], [], []
        n = 0
        for r in batch:
            start, total = starts[r.id], len(r.tokens)
            tokens += r.tokens[start:]
            positions += range(start, total)
            slots.append(self.cache.slots(r.id, start, total))
            (decode if total - start == 1 else prefill).append((r, n, total - start, start))
            n += total - start
            last.append(n - 1)
        dev = self.device
        new_slots = torch.cat(slots)
        # Decoding sequences attend together: their cached slots, padded to the longest, with a mask.
        dec_idx = torch.tensor([i for _, i, _, _ in decode], dtype=torch.long, device=dev)
        if decode:
            lens = [self.cache.lengths[r.id] for r, *_ in decode]
            width = max(lens)
            dec_slots = torch.stack([torch.nn.functional.pad(self.cache.slots(r.id, 0, L), (0, width - L))
                                     for (r, *_), L in zip(decode, lens)])
            dec_mask = (torch.arange(width, device=dev)[None, :] < torch.tensor(lens, device=dev)[:, None])[:, None]
        pre = [(i, m, s, self.cache.slots(r.id, 0, s + m)) for r, i, m, s in prefill]

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            self.cache.write(layer, new_slots, k, v)
            out = torch.empty_like(q)
            if decode:
                K, V = self.cache.read(layer, dec_slots)
                out[dec_idx] = attention(q[dec_idx][:, None], K, V, dec_mask)[:, 0]
            for i, m, s, seq_slots in pre:
                K, V = self.cache.read(layer, seq_slots)
                # query j (position s + j) sees keys at positions <= s + j
                mask = torch.ones(m, s + m, dtype=torch.bool, device=dev).tril(diagonal=s)[None]
                out[i:i + m] = attention(q[i:i + m][None], K[None], V[None], mask)[0]
            return out

        with torch.inference_mode():
            logits = self.model(torch.tensor(tokens, device=dev), torch.tensor(positions, device=dev), attend,
                                select=torch.tensor(last, device=dev)).float()
        now = self.clock()
        self.steps += 1
        self.batch_sizes.append(len(batch))
        for row, r in zip(logits, list(batch)):
            tok = self._sample(row, r)
            if r.t_first is None:
                r.t_first = now
            if tok in r.stop_token_ids:
                self.running.remove(r)
                self._finish(r, "stop")
                continue
            r.output.append(tok)
            if r.on_token:
                r.on_token(r, tok)
            if len(r.output) >= r.max_new_tokens:
                self.running.remove(r)
                self._finish(r, "length")
        return len(batch)

    @staticmethod
    def _sample(logits: torch.Tensor, r: Request) -> int:
        if r.temperature <= 0:
            return int(logits.argmax())
        scores = apply_temperature(logits[None], r.temperature)
        if r.top_p < 1.0:
            scores = top_p_filter(scores, r.top_p)
        # The request's generator lives on the CPU (seeded draws independent of the device).
        return int(torch.multinomial(scores.softmax(-1).cpu(), 1, generator=r._gen))

    # -- driving it ----------------------------------------------------------------------------------
    def run(self, requests: Sequence[Request], progress: Callable[[int], None] | None = None) -> list[Request]:
        """Serve requests that arrive at `request.arrival` seconds, until all are done.

        Idle gaps (nothing running, next arrival in the future) are skipped on a virtual clock rather
        than slept through, so a load test costs only the time spent computing.
        """
        pending = deque(sorted(requests, key=lambda r: r.arrival))
        t0, skipped = time.perf_counter(), 0.0
        saved = self.clock
        self.clock = lambda: time.perf_counter() - t0 + skipped
        try:
            while pending or self.has_work():
                while pending and pending[0].arrival <= self.clock():
                    r = pending.popleft()
                    self.submit(r)
                    r.t_submit = r.arrival
                if not self.has_work():
                    skipped += max(0.0, pending[0].arrival - self.clock())
                    continue
                done_before = sum(r.t_done is not None for r in requests)
                self.step()
                if progress:
                    progress(sum(r.t_done is not None for r in requests) - done_before)
        finally:
            self.clock = saved
        return list(requests)

    def start(self) -> "Engine":
        """Run steps in a background thread whenever there is work (for a server)."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="labkit-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self.has_work():
                    self._lock.wait(timeout=0.5)
                if self._stop:
                    return
            try:
                self.step()
            except Exception as e:  # a bug must not leave clients waiting forever: end their requests
                print(f"labkit engine: step failed ({e!r}); ending the running requests", flush=True)
                for r in list(self.running) + list(self.waiting):
                    self._finish(r, "error")
                self.running.clear()
                self.waiting.clear()


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """Arrival times (s) of n requests with exponential gaps of mean 1/rate; rate=inf: all at time 0.

    >>> poisson_arrivals(3, float("inf")).tolist()
    [0.0, 0.0, 0.0]
    >>> bool(np.all(np.diff(poisson_arrivals(5, 2.0)) > 0))
    True
    """
    if np.isinf(rate):
        return np.zeros(n)
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


def summarize(requests: Sequence[Request]) -> dict[str, float]:
    """Throughput and the latency percentiles of served requests (times in ms, throughput in tokens/s).

    >>> r = Request([1], arrival=0.0); r.output, r.t_first, r.t_done = [5, 6], 0.1, 0.3
    >>> s = summarize([r]); round(s["throughput"], 3), round(s["ttft_p50_ms"], 1)
    (6.667, 100.0)
    """
    done = [r for r in requests if r.t_done is not None and r.t_first is not None]
    if not done:
        raise ValueError("no finished request to summarize")
    ttft = np.array([r.t_first - r.arrival for r in done]) * 1000
    lat = np.array([r.t_done - r.arrival for r in done]) * 1000
    span = max(r.t_done for r in done) - min(r.arrival for r in done)
    tokens = sum(len(r.output) for r in done)
    return {"requests": len(done), "tokens": tokens, "seconds": span, "throughput": tokens / span,
            "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p90_ms": float(np.percentile(ttft, 90)),
            "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p90_ms": float(np.percentile(lat, 90))}
