"""What a chapter records (`record`), where its results go, and the check against its targets.

A notebook calls `record(name, value)` for each result and `check_targets()` at the end; the runner
reads the same metrics file. Another chapter reads a chapter's numbers only through `metrics_of`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .manifest import (DEFAULT_PROFILE, ENV_METRICS, ENV_PROFILE, PROFILES, ManifestError, evaluate_targets,
                       find_root, load_book)

_state: dict[str, Any] = {"chapter": None, "metrics": {}}


def active_profile() -> str:
    """The profile a notebook runs under: set by the runner, `cpu` when run by hand."""
    profile = os.environ.get(ENV_PROFILE, DEFAULT_PROFILE)
    if profile not in PROFILES:
        raise ManifestError(f"{ENV_PROFILE}={profile!r} is not one of {', '.join(PROFILES)}")
    return profile


def metrics_path(folder: Path, chapter: str) -> Path:
    """The one name of a chapter's metrics file in a run folder, for runner runs and hand runs alike.

    >>> metrics_path(Path("runs/cpu"), "6").name
    '06_pretraining.metrics.json'
    """
    return Path(folder) / f"{load_book().chapter(chapter).name}.metrics.json"


def _metrics_file() -> Path | None:
    if os.environ.get(ENV_METRICS):
        return Path(os.environ[ENV_METRICS])
    if _state["chapter"]:
        # Run by hand (JupyterLab): keep results beside the runner's, under runs/interactive.
        try:
            return metrics_path(find_root() / "runs" / "interactive", _state["chapter"])
        except ManifestError:
            return None
    return None


def run_dir() -> Path:
    """Folder of the current run (where the runner writes results.json); runs/interactive by hand.

    Chapters put artefacts that later chapters read here, e.g. chapter 06's scaling runs.
    """
    f = _metrics_file()
    d = f.parent if f is not None else Path.cwd() / "runs" / "interactive"
    d.mkdir(parents=True, exist_ok=True)
    return d


def set_chapter(chapter_id: str | None) -> None:
    """Called by `labkit.setup`: start a fresh record for this chapter."""
    _state["chapter"] = chapter_id
    _state["metrics"] = {}
    f = _metrics_file()
    if f is not None and f.exists():
        f.unlink()


def record(name: str, value: float) -> None:
    """Store one result of the chapter (a number) for the runner and `check_targets`.

    >>> record("val_loss", 1.93)
    >>> recorded()["val_loss"]
    1.93
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"metric name must be an identifier like 'val_loss', got {name!r}")
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)):
        raise TypeError(f"record({name!r}, ...) needs a number, got {type(value).__name__}")
    value = float(value)
    _state["metrics"][name] = value
    f = _metrics_file()
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(_state["metrics"], indent=1))


def recorded() -> dict[str, float]:
    """The metrics recorded so far in this kernel."""
    return dict(_state["metrics"])



def check_targets(chapter: str | None = None, profile: str | None = None, strict: bool = False):
    """Print the active profile's targets against what this chapter recorded.

    Returns a pandas DataFrame (shown as a table in a notebook). With `strict=True` a failed
    target raises, for scripts; the runner does its own check, so notebooks leave it False.
    """
    import pandas as pd

    chapter = chapter or _state["chapter"]
    if chapter is None:
        raise RuntimeError("no chapter set: call labkit.setup(chapter='NN') first, or pass chapter=")
    profile = profile or active_profile()
    ch = load_book().chapter(chapter)
    rows = evaluate_targets(ch.targets_for(profile), _state["metrics"])
    extra = [{"metric": k, "op": "", "value": None, "actual": v, "passed": None}
             for k, v in _state["metrics"].items() if k not in {r["metric"] for r in rows}]
    table = pd.DataFrame(rows + extra, columns=["metric", "op", "value", "actual", "passed"])
    n_ok = sum(r["passed"] for r in rows)
    print(f"chapter {ch.id} on profile {profile!r}: {n_ok}/{len(rows)} targets met")
    if strict and n_ok < len(rows):
        failed = [f"{r['metric']} {r['op']} {r['value']:g} (got {r['actual']})" for r in rows if not r["passed"]]
        raise AssertionError("targets not met: " + "; ".join(failed))
    return table


def metrics_of(chapter: str, run: str | Path | None = None) -> dict[str, float]:
    """What another chapter recorded: in `run` if given, else in this run's folder, else in the last
    run of the active profile (`runs/<profile>`). Empty, with a note, when it has not been run.

    >>> isinstance(metrics_of("00", run="/nonexistent"), dict)
    chapter 00 has no results in /nonexistent: run `labkit run 00` first
    True
    """
    folders = [Path(run)] if run else [run_dir()]
    if not run:
        try:
            folders.append(find_root() / "runs" / active_profile())
        except ManifestError:
            pass
    for folder in folders:
        f = metrics_path(folder, chapter)
        if f.is_file():
            return json.loads(f.read_text())
    print(f"chapter {chapter} has no results in {' or '.join(str(f) for f in folders)}: "
          f"run `labkit run {chapter}` first")
    return {}


def chapter_minutes(book=None):
    """Minutes of every written chapter: book.toml's per profile, and this run's where the runner ran it.

    >>> "cpu" in chapter_minutes().columns
    True
    """
    import pandas as pd

    book = book or load_book()
    rows = {ch.name: ch.minutes for ch in book.chapters if ch.status == "written" and ch.minutes}
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=["smoke", "cpu", "gpu"]).dropna(
        axis=1, how="all")
    results = run_dir() / "results.json"
    if results.is_file():
        this_run = {f"{c['id']}_{c['slug']}": c["seconds"] / 60 for c in json.loads(results.read_text())["chapters"]
                    if c["status"] != "planned"}
        table["this run"] = pd.Series(this_run)
    return table
