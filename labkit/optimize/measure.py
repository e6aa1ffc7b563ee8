"""Measuring: latency (median and p90 over repeats, warm-up excluded), size on disk, peak memory, and
the CPU's int8 instructions (what an int8 speed-up depends on)."""
from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import OptimizeError


@dataclass
class Bench:
    """Latency of one callable: median and 90th percentile over `repeats` timed calls."""
    name: str
    median_ms: float
    p90_ms: float
    items: int
    times_ms: list[float] = field(repr=False, default_factory=list)

    @property
    def throughput(self) -> float:
        """Items (sentences, tokens) per second at the median latency."""
        return self.items / (self.median_ms / 1000)


def _bench_from(name: str, times: list[float], items: int) -> Bench:
    ms = [t * 1000 for t in times]
    return Bench(name, statistics.median(ms), float(np.percentile(ms, 90)), items, ms)


def benchmark(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3, items: int = 1,
              name: str = "") -> Bench:
    """Time `fn()`: `warmup` untimed calls, then the median and p90 of `repeats` timed calls.

    >>> b = benchmark(lambda: sum(range(10_000)), repeats=5)
    >>> b.median_ms > 0
    True
    """
    return compare_latency({name or "fn": fn}, repeats, warmup, items)[name or "fn"]


def compare_latency(fns: dict[str, Callable[[], Any]], repeats: int = 20, warmup: int = 3,
                    items: int = 1) -> dict[str, Bench]:
    """Time several callables *interleaved* (a, b, c, a, b, c, ...) and return a `Bench` each.

    On a shared machine the load changes from second to second; interleaving makes every
    variant see the same load, so their ratios are far steadier than timing one after another.

    >>> r = compare_latency({"a": lambda: sum(range(1000)), "b": lambda: sum(range(9000))}, repeats=5)
    >>> r["a"].median_ms < r["b"].median_ms
    True
    """
    if not fns:
        raise OptimizeError("compare_latency needs at least one callable in a dict {name: fn}")
    if repeats < 1 or warmup < 0 or items < 1:
        raise OptimizeError(f"need repeats >= 1, warmup >= 0, items >= 1; got {repeats}, {warmup}, {items}")
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: _bench_from(k, v, items) for k, v in times.items()}


def size_on_disk_mb(model_or_state) -> float:
    """Megabytes of `torch.save(state_dict)`: what the model costs on disk (and to download).

    >>> round(size_on_disk_mb(torch.nn.Linear(1000, 1000)), 1)
    4.0
    """
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getbuffer().nbytes / 1e6


def _rss_hwm_kb() -> tuple[int, int] | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    vals = {ln.split(":")[0]: int(ln.split()[1]) for ln in text.splitlines() if ln.startswith(("VmRSS", "VmHWM"))}
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Extra memory (MB) that one call of `fn()` needed at its peak, beyond what was already held.

    On CUDA: `torch.cuda.max_memory_allocated`. On Linux CPU: the kernel's resident-set
    high-water mark (reset through /proc/self/clear_refs) minus the resident set before the call.
    Free heap memory is first returned to the OS (glibc `malloc_trim`), so memory cached from
    earlier calls is counted again: the number is the working memory of one call (activations).

    >>> peak_memory_mb(lambda: torch.ones(50_000_000)) > 100     # doctest: +SKIP
    True
    """
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.inference_mode():
            fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 1e6
    try:
        import ctypes

        # Hand freed heap memory back to the OS first, so the call must fault its pages in again
        # and shows up in the high-water mark instead of silently reusing cached blocks.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        ok = True
    except OSError:
        ok = False
    before = _rss_hwm_kb() if ok else None
    if before is None:  # macOS, Windows, a container without /proc: sample the resident set instead
        return _sampled_peak_mb(fn)
    with torch.inference_mode():
        fn()
    after = _rss_hwm_kb()
    return max(0, after[1] - before[0]) / 1e3


def _sampled_peak_mb(fn: Callable[[], Any], every_s: float = 0.0005) -> float:
    """Peak resident memory during `fn()` by sampling it (psutil) from a thread: portable, and a
    lower bound (a peak shorter than the sampling period can be missed)."""
    import threading

    import psutil

    proc, peak, stop = psutil.Process(), [0], threading.Event()
    before = proc.memory_info().rss

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(every_s)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        with torch.inference_mode():
            fn()
    finally:
        peak[0] = max(peak[0], proc.memory_info().rss)
        stop.set()
        watcher.join()
    return max(0, peak[0] - before) / 1e6


# int8 dot-product instructions: x86 AVX512-VNNI / AVX-VNNI (a fused 8-bit multiply-accumulate), Intel AMX
# (a tile unit for int8 and bf16 matrices), Arm's SDOT (asimddp) and i8mm. Without one of them an int8
# matrix product goes through 16-bit intermediates and gains little over float32.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_instructions(cpuinfo: str | None = None) -> dict[str, Any]:
    """Which int8 matrix instructions this CPU has: the hardware a dynamic-int8 speed-up depends on.

    Returns `capability` (the vector instruction set PyTorch dispatches its kernels for,
    `torch.backends.cpu.get_cpu_capability()`: DEFAULT, AVX2, AVX512, ...), `int8_flags` (those of
    `INT8_FLAGS` the CPU reports), `vnni` (AVX512-VNNI or AVX-VNNI), `amx_int8` and `fast_int8` (any
    int8 dot-product instruction). The flags come from /proc/cpuinfo; where it does not exist (macOS,
    Windows) they are None: unknown, not absent. `cpuinfo` replaces the file's text (for tests).

    >>> info = int8_instructions("processor : 0\\nflags : fpu sse avx2 avx512f avx512_vnni\\n")
    >>> info["vnni"], info["amx_int8"], info["int8_flags"]
    (True, False, ['avx512_vnni'])
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = None
    capability = torch.backends.cpu.get_cpu_capability()
    if cpuinfo is None:
        return {"capability": capability, "int8_flags": None, "vnni": None, "amx_int8": None, "fast_int8": None}
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86 says flags, Arm says Features
            flags.update(value.split())
    found = [f for f in INT8_FLAGS if f in flags]
    vnni, amx = bool({"avx512_vnni", "avx_vnni"} & flags), "amx_int8" in flags
    return {"capability": capability, "int8_flags": found, "vnni": vnni, "amx_int8": amx, "fast_int8": bool(found)}
