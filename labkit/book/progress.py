"""Long runs talk: a live line per chapter (cell i of N, elapsed, expected minutes on this machine).

The expected minutes are `book.toml`'s measured minutes scaled by how fast this machine is compared
with the machine that measured them: `speed_score()` times a small fixed torch workload for about
two seconds (the same 2-core machine type ran the same training loop at 13.8k and at 6.4k tokens/s
on two days, so a fixed figure would mislead). On a terminal the line updates in place; in a log
(CI, a file) it prints a plain line at most every `every_s` seconds.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from papermill.engines import NBClientEngine, papermill_engines

ENGINE = "labkit-progress"


def speed_score(seconds: float = 2.0) -> float:
    """Training steps per second of a small MLP (forward, backward, AdamW) on this machine, now.

    >>> speed_score(0.2) > 0
    True
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(128, 256, generator=gen)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or steps < 3:
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return steps / elapsed


def expected_minutes(book_minutes: float | None, reference: float | None, score: float | None) -> float | None:
    """book.toml's minutes scaled to this machine: slower now than the reference means longer.

    >>> expected_minutes(10.0, 100.0, 50.0)
    20.0
    """
    if not book_minutes:
        return None
    if not reference or not score:
        return book_minutes
    return book_minutes * reference / score


class Reporter:
    """Prints one chapter's progress; `cell(i, n)` is called as each cell starts."""

    def __init__(self, name: str, expected: float | None, out: TextIO | None = None, every_s: float = 30.0):
        self.name, self.expected, self.out, self.every_s = name, expected, out or sys.stdout, every_s
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last = -every_s

    def line(self, i: int, n: int) -> str:
        elapsed = (time.perf_counter() - self.start) / 60
        exp = f" · expected ~{self.expected:.1f} min here" if self.expected else ""
        return f"   {self.name}: cell {i}/{n} · {elapsed:.1f} min{exp}"

    def cell(self, index: int | None, n: int) -> None:
        now = time.perf_counter()
        if self.tty:
            self.out.write("\r" + self.line((index or 0) + 1, n).ljust(78))
        elif now - self.last >= self.every_s:
            self.out.write(self.line((index or 0) + 1, n) + "\n")
            self.last = now
        else:
            return
        self.out.flush()

    def done(self, status: str, met: int, total: int, seconds: float) -> None:
        end = "\r" if self.tty else ""
        self.out.write(f"{end}<- {self.name}: {status}, {met}/{total} targets met, {seconds / 60:.1f} min".ljust(78) + "\n")
        self.out.flush()


class ProgressEngine(NBClientEngine):
    """papermill's nbclient engine, telling `reporter` when each cell starts."""

    reporter: Reporter | None = None

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        rep = cls.reporter
        if rep is not None:
            started = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                rep.cell(cell_index, len(nb_man.nb.cells))
                return started(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register(ENGINE, ProgressEngine)
