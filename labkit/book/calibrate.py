"""`labkit calibrate CH --seeds 0 1 2 --profile cpu`: targets from repeated measurements.

The chapter runs once per seed; for every metric the table shows min / mean / max over the seeds and,
for the metrics that have a target on that profile, a proposed target: below the minimum by a margin
for higher-is-better metrics (above the maximum for lower-is-better ones). A metric that came out
identical for every seed is deterministic: its proposal is the current target, which the book
derives from the arithmetic (a tolerance), not from the run. The printed TOML lines carry a comment
naming the sweep, so book.toml says where each number came from.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from . import manifest as bk

MARGIN = 0.05  # at least 5% of the mean's size, or the seeds' whole spread if that is larger


def _round(x: float, up: bool) -> float:
    """Two significant digits, rounded away from the measurements (so the target stays safe).

    >>> _round(0.7234, up=False), _round(0.7234, up=True), _round(-0.0123, up=False)
    (0.72, 0.73, -0.013)
    """
    if x == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(x))) - 1)
    steps = x / scale  # the 1e-9 keeps 0.66 from becoming 0.65 through 0.7 - 0.04 = 0.6599999...
    return round((math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)) * scale, 12)


def propose(op: str, values: list[float], current: float | None = None) -> tuple[float | None, str]:
    """A target for `op` from the values measured over seeds, and why.

    >>> propose(">=", [0.74, 0.78, 0.76])
    (0.7, 'stochastic: min 0.74, margin 0.04')
    >>> propose("<", [1e-7, 1e-7], current=1e-5)
    (1e-05, 'deterministic over 2 seeds: keep the tolerance')
    """
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, "not recorded"
    lo, hi, mean = min(vals), max(vals), statistics.fmean(vals)
    if lo == hi and len(vals) > 1:
        return current, f"deterministic over {len(vals)} seeds: keep the tolerance"
    margin = max(hi - lo, MARGIN * abs(mean))
    if op in (">=", ">"):
        return _round(lo - margin, up=False), f"stochastic: min {lo:.4g}, margin {margin:.2g}"
    if op in ("<=", "<"):
        return _round(hi + margin, up=True), f"stochastic: max {hi:.4g}, margin {margin:.2g}"
    return current, "an equality target: keep it"


def calibrate(chapter: str, seeds: list[int], profile: str, overrides: dict[str, Any] | None = None,
              out_dir: str | Path | None = None, book: bk.Book | None = None) -> dict[str, Any]:
    """Run `chapter` once per seed on `profile`; return the per-metric summary and proposals."""
    from . import runner

    book = book or bk.load_book()
    ch = book.chapter(chapter)
    if "seed" not in runner.notebook_parameters(book.root / ch.notebook):
        raise bk.ManifestError(f"chapter {ch.id} has no `seed` parameter to sweep")
    out = Path(out_dir or book.root / "runs" / "calibrate" / profile / ch.name)
    per_seed = [runner.run([ch.id], profile=profile, overrides={**(overrides or {}), "seed": seed},
                           out_dir=out / f"seed{seed}", book=book, echo=True)["chapters"][0]["metrics"]
                for seed in seeds]
    values = {name: [m.get(name) for m in per_seed] for name in sorted(set().union(*per_seed))}
    targets = {t.metric: t for t in ch.targets_for(profile)}
    rows = []
    for name, vals in sorted(values.items()):
        got = [v for v in vals if v is not None]
        row = {"metric": name, "n": len(got), "min": min(got, default=None), "max": max(got, default=None),
               "mean": statistics.fmean(got) if got else None, "values": vals}
        if name in targets:
            t = targets[name]
            row["op"], row["current"] = t.op, t.value
            row["proposed"], row["why"] = propose(t.op, got, t.value)
        rows.append(row)
    summary = {"chapter": ch.id, "profile": profile, "seeds": seeds, "rows": rows}
    (out / "calibrate.json").write_text(json.dumps(summary, indent=1))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The sweep as a table, then the proposed target lines for book.toml with their comments."""
    seeds = " ".join(map(str, summary["seeds"]))
    lines = [f"chapter {summary['chapter']}, profile {summary['profile']}, seeds {seeds}",
             f"{'metric':<34} {'min':>10} {'mean':>10} {'max':>10}  target now -> proposed"]
    fmt = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
    for r in summary["rows"]:
        target = (f"{r['op']} {r['current']:g} -> {fmt(r['proposed'])} ({r['why']})" if "op" in r else "")
        lines.append(f"{r['metric']:<34} {fmt(r['min']):>10} {fmt(r['mean']):>10} {fmt(r['max']):>10}  {target}")
    lines.append(f"\n# {summary['profile']} targets: seeds {seeds} (labkit calibrate); min/max per metric below")
    lines.append(f"targets.{summary['profile']} = [")
    for r in summary["rows"]:
        if "op" in r and r["proposed"] is not None:
            lines.append(f'  {{ metric = "{r["metric"]}", op = "{r["op"]}", value = {r["proposed"]:g} }},'
                         f"  # min {fmt(r['min'])} / max {fmt(r['max'])}")
    lines.append("]")
    return "\n".join(lines)
