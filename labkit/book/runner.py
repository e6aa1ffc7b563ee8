"""Execute chapters with papermill on a profile, and write `results.json`.

The contract of `results.json`:
    {"profile": P, "passed": bool, "machine": {platform, cores, memory_gib, gpu, versions...},
     "started": time, "chapters": [{"id", "slug", "notebook", "seconds", "status", "passed",
     "metrics": {name: number}, "targets": [{"metric", "op", "value", "actual", "passed"}],
     "error", "parameters"}]}
with status one of "ok" (ran, every target met), "failed" (ran, a target missed), "error" (the
notebook raised), "unchecked" (it ran, but the profile gives it no targets: never passed) or
"planned" (not written yet; never passed).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import manifest as bk
from .. import runtime  # the device and hub rules live there
from . import session
from .progress import ENGINE, ProgressEngine, Reporter, expected_minutes, speed_score


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, booleans, lists), else the string.

    >>> parse_value("3e-4"), parse_value("true"), parse_value("[1, 2]"), parse_value("gpt2")
    (0.0003, True, [1, 2], 'gpt2')
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """`["lr=3e-4", "steps=10"]` -> `{"lr": 0.0003, "steps": 10}`; a malformed item fails clearly."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise bk.ManifestError(f"parameter {item!r} must look like name=value, e.g. -p steps=100")
        out[name.strip()] = parse_value(value.strip())
    return out


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The names and defaults of a notebook's `parameters` cell (via papermill's inspector).

    Papermill's parser skips lines it cannot read (for instance a comment containing '='), and such
    a parameter could then never be overridden: that is an error here, not a silent default.
    """
    import ast
    import contextlib
    import io

    import nbformat
    import papermill as pm

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        found = {name: p["default"] for name, p in pm.inspect_notebook(str(notebook)).items()}
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise bk.ManifestError(f"{notebook}: no cell tagged 'parameters'")
    assigned = [t.id for node in ast.parse(cells[0].source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    unparsed = [n for n in assigned if n not in found]
    if unparsed:
        raise bk.ManifestError(f"{notebook}: papermill cannot parse the parameter line(s) of {', '.join(unparsed)}; "
                               "keep each on one line as `name = value  # comment` with no '=' in the comment")
    return found


_TYPE_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
               list: "a list, e.g. [1, 2]", dict: "a mapping"}


def check_type(chapter: str, name: str, value: Any, default_src: str) -> None:
    """A value must have the type of the notebook's default (an int where the default is an int, ...).

    An integer is accepted for a float default; a default of None accepts anything.

    >>> check_type("00", "seed", 3, "0")
    >>> check_type("00", "seed", "abc", "0")
    Traceback (most recent call last):
    ...
    labkit.book.manifest.ManifestError: chapter 00, parameter seed = 'abc': expected an integer like the notebook's default 0, got a string
    """
    import ast

    try:
        default = ast.literal_eval(default_src)
    except (ValueError, SyntaxError):
        return  # an expression (e.g. a computed default): nothing to compare with
    if default is None:
        return
    want = type(default)
    ok = (isinstance(value, want) and not (isinstance(value, bool) and want is not bool)) or (
        want is float and isinstance(value, int) and not isinstance(value, bool)) or (
        want is tuple and isinstance(value, list))
    if not ok:
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        raise bk.ManifestError(f"chapter {chapter}, parameter {name} = {value!r}: expected "
                               f"{_TYPE_NAMES.get(want, want.__name__)} like the notebook's default {default_src}, "
                               f"got {got.split(',')[0]}")


def effective_seed(notebook: Path, params: dict[str, Any]) -> Any:
    """The seed a run used (results.json records it): the one given, else the notebook's default."""
    import ast

    if "seed" in params:
        return params["seed"]
    default = notebook_parameters(notebook).get("seed")
    try:
        return ast.literal_eval(default) if default is not None else None
    except (ValueError, SyntaxError):
        return None


def plan(book: bk.Book, chapters: list[str] | None, profile: str,
         overrides: dict[str, Any] | None = None,
         chapter_overrides: dict[str, dict[str, Any]] | None = None,
         tiny: bool = False) -> list[tuple[bk.Chapter, dict[str, Any]]]:
    """Resolve chapters and the parameters each one gets; every name is checked before anything runs.

    Precedence, lowest first: the notebook's defaults, `params.<profile>` in book.toml (with `tiny`:
    the gpu profile's choices at smoke sizes, `Chapter.tiny_params`), `overrides` (given to every
    selected chapter that has the parameter), `chapter_overrides` (one chapter's parameters, keyed by
    chapter id or slug).
    """
    book.profile(profile)
    if tiny and profile != "gpu":
        raise bk.ManifestError(f"--tiny runs the gpu profile's code path at smoke sizes; use it with --profile gpu, "
                               f"not {profile}")
    selected = [book.chapter(c) for c in chapters] if chapters else list(book.chapters)
    overrides = overrides or {}
    per_chapter: dict[str, dict[str, Any]] = {}
    for key, values in (chapter_overrides or {}).items():
        ch = book.chapter(key)
        if ch not in selected:
            raise bk.ManifestError(f"parameters are given for chapter {ch.id} ({ch.slug}), which is not selected; "
                                   f"selected: {', '.join(c.id for c in selected)}")
        per_chapter[ch.id] = {**per_chapter.get(ch.id, {}), **values}
    out, unused, known = [], set(overrides), {}
    for ch in selected:
        if ch.status == "planned":
            if ch.id in per_chapter:
                raise bk.ManifestError(f"chapter {ch.id} ({ch.slug}) is planned, not written: it takes no parameters")
            out.append((ch, {}))
            continue
        nb = book.root / ch.notebook
        if not nb.is_file():
            raise bk.ManifestError(f"chapter {ch.id}: notebook {ch.notebook} is missing but status is 'written'")
        valid = notebook_parameters(nb)
        known[ch.id] = valid
        base = ch.tiny_params() if tiny else ch.params_for(profile)
        bad = sorted(set(base) - set(valid))
        if bad:
            where = "params.smoke, params.gpu or gpu_tiny" if tiny else f"params.{profile}"
            raise bk.ManifestError(f"book.toml, chapter {ch.id}, {where}: unknown parameter(s) "
                                   f"{', '.join(bad)}; valid parameters: {', '.join(valid) or '(none)'}")
        bad = sorted(set(per_chapter.get(ch.id, {})) - set(valid))
        if bad:
            raise bk.ManifestError(f"chapter {ch.id} ({ch.slug}) has no parameter(s) {', '.join(bad)}; "
                                   f"valid parameters: {', '.join(valid) or '(none)'}")
        unused -= set(valid)
        params = {**base, **{k: v for k, v in overrides.items() if k in valid},
                  **per_chapter.get(ch.id, {})}
        for name, value in params.items():
            check_type(ch.id, name, value, valid[name])
        out.append((ch, params))
    if unused:
        listing = "; ".join(f"{cid}: {', '.join(v) or '(none)'}" for cid, v in known.items())
        raise bk.ManifestError(f"unknown parameter(s) {', '.join(sorted(unused))} for the selected "
                               f"chapter(s); valid parameters: {listing or '(no written chapter selected)'}")
    return out


PARAMS_FILE_KEYS = ("profile", "chapters", "all")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """A teacher's parameters file (YAML), checked: {profile, chapters, all, per_chapter}.

    The file looks like this (every key optional)::

        profile: cpu              # smoke, cpu or gpu
        chapters: ["01", "05"]    # default: the whole book
        all:                      # given to every selected chapter that has the parameter
          seed: 1
        "05":                     # one chapter's parameters (id or slug)
          epochs: 3
    """
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bk.ManifestError(f"parameters file not found: {file}") from None
    except yaml.YAMLError as e:
        raise bk.ManifestError(f"{file} is not valid YAML: {e}") from None
    data = data if data is not None else {}
    if not isinstance(data, dict):
        raise bk.ManifestError(f"{file}: expected a mapping with keys {', '.join(PARAMS_FILE_KEYS)} "
                               f"or chapter ids, got {type(data).__name__}")
    out: dict[str, Any] = {"profile": data.get("profile"), "chapters": data.get("chapters"),
                           "all": data.get("all") or {}, "per_chapter": {}}
    if out["profile"] is not None and not isinstance(out["profile"], str):
        raise bk.ManifestError(f"{file}: profile must be a name such as cpu, got {out['profile']!r}")
    if out["chapters"] is not None:
        if not isinstance(out["chapters"], list):
            raise bk.ManifestError(f'{file}: chapters must be a list such as ["01", "05"], got {out["chapters"]!r}')
        out["chapters"] = [str(c) for c in out["chapters"]]
    for key, value in data.items():
        if key in PARAMS_FILE_KEYS:
            continue
        if not isinstance(value, dict):
            raise bk.ManifestError(f"{file}: {key!r} must map parameter names to values; top-level keys are "
                                   f"{', '.join(PARAMS_FILE_KEYS)} or a chapter id (quote it: \"05\")")
        out["per_chapter"][str(key)] = value
    if not isinstance(out["all"], dict):
        raise bk.ManifestError(f"{file}: all must map parameter names to values")
    return out


def _error_info(exc: BaseException) -> str:
    """The failing cell and message of a papermill error, without the kernel's full traceback."""
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    return f"cell [{cell}] {name}: {value}" if cell is not None else f"{name}: {value}"


def kernel_name() -> str:
    """The book's own kernel (`make setup` registers it for the venv), else the default `python3`."""
    from jupyter_client.kernelspec import KernelSpecManager

    from .doctor import KERNEL

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def run_chapter(book: bk.Book, ch: bk.Chapter, params: dict[str, Any], profile: str,
                out_dir: Path, progress: bool = False, device: str | None = None,
                threads: int | None = None, reporter: Reporter | None = None, tiny: bool = False) -> dict[str, Any]:
    """Execute one chapter; return its entry of results.json (never raises for a notebook error).

    With a `reporter`, each cell start is reported (cell i of N, elapsed, expected minutes). A `tiny`
    run (the gpu code path at smoke sizes) checks no targets: the profile's targets are for its sizes.
    """
    entry: dict[str, Any] = {"id": ch.id, "slug": ch.slug, "notebook": ch.notebook, "seconds": 0.0,
                             "status": "planned", "passed": False, "metrics": {}, "targets": [],
                             "error": None, "parameters": params}
    if ch.status == "planned":
        return entry
    entry["seed"] = effective_seed(book.root / ch.notebook, params)
    import papermill as pm

    out_nb = out_dir / f"{ch.name}.ipynb"
    metrics_file = out_dir / f"{ch.name}.metrics.json"  # = record.metrics_path
    metrics_file.unlink(missing_ok=True)
    kernel_env = {bk.ENV_PROFILE: profile, bk.ENV_METRICS: str(metrics_file.resolve()), bk.ENV_ROOT: str(book.root),
                  **session.profile_environment(book.profile(profile), device=device, threads=threads)}
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    start = time.perf_counter()
    ProgressEngine.reporter = reporter
    try:
        pm.execute_notebook(str(book.root / ch.notebook), str(out_nb), parameters=params,
                            cwd=str((book.root / ch.notebook).parent), kernel_name=kernel_name(),
                            engine_name=ENGINE, progress_bar=progress, log_output=False,
                            request_save_on_cell_execute=False)
        entry["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a failing chapter is reported, the others still run
        entry["status"], entry["error"] = "error", _error_info(exc)
    finally:
        entry["seconds"] = round(time.perf_counter() - start, 1)
        ProgressEngine.reporter = None
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if metrics_file.exists():
        entry["metrics"] = json.loads(metrics_file.read_text())
    entry["targets"] = [] if tiny else bk.evaluate_targets(ch.targets_for(profile), entry["metrics"])
    if entry["status"] == "ok" and not entry["targets"]:
        entry["status"] = "unchecked"  # ran, but nothing on this profile says whether it worked
    elif entry["status"] == "ok":
        entry["passed"] = all(t["passed"] for t in entry["targets"])
        entry["status"] = "ok" if entry["passed"] else "failed"
    if out_nb.exists():
        _stamp(out_nb, entry, profile)
    if reporter is not None:
        reporter.done(entry["status"], sum(t["passed"] for t in entry["targets"]), len(entry["targets"]),
                      entry["seconds"])
    return entry


def _stamp(nb_path: Path, entry: dict[str, Any], profile: str) -> None:
    """Keep the recorded metrics and target checks in the executed notebook's metadata too."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata["labkit"] = {"profile": profile, "id": entry["id"], "slug": entry["slug"],
                             "metrics": entry["metrics"], "targets": entry["targets"], "status": entry["status"],
                             "seconds": entry["seconds"], "error": entry["error"], "parameters": entry["parameters"]}
    nbformat.write(nb, nb_path)


def run(chapters: list[str] | None = None, profile: str = bk.DEFAULT_PROFILE,
        overrides: dict[str, Any] | None = None, out_dir: str | Path | None = None,
        book: bk.Book | None = None, echo: bool = True,
        chapter_overrides: dict[str, dict[str, Any]] | None = None, device: str | None = None,
        threads: int | None = None, tiny: bool = False) -> dict[str, Any]:
    """Run chapters on a profile; write executed notebooks and results.json under `out_dir`.

    `device` and `threads` override the profile's (see `session.profile_environment`). `tiny` runs the
    gpu profile's code path at smoke sizes (`Chapter.tiny_params`; default folder runs/gpu-tiny) on the
    device at hand unless `device` names one.

    >>> res = run(["00"], profile="smoke", out_dir="runs/smoke")   # doctest: +SKIP
    >>> res["passed"]  # doctest: +SKIP
    True
    """
    book = book or bk.load_book()
    todo = plan(book, chapters, profile, overrides, chapter_overrides, tiny=tiny)
    if tiny and not device and not os.environ.get(runtime.ENV_DEVICE):
        device = "auto"  # a tiny run checks the gpu path on whatever machine it is on
    out = Path(out_dir or book.root / "runs" / (f"{profile}-tiny" if tiny else profile))
    out.mkdir(parents=True, exist_ok=True)
    kernel_env = session.profile_environment(book.profile(profile), device=device, threads=threads)
    machine = session.machine()
    reference, expect = book.speed_reference, {}
    if echo:  # a few seconds that turn book.toml's minutes into this machine's
        machine["speed_score"] = round(speed_score(), 1)
        expect = {ch.id: expected_minutes(ch.minutes.get("smoke" if tiny else profile), reference, machine["speed_score"])
                  for ch, _ in todo if ch.status != "planned"}
        known = [m for m in expect.values() if m]
        factor = reference / machine["speed_score"] if reference else 1.0
        how = (f"book.toml's minutes x {factor:.2f}, from a speed test" if reference else
               "book.toml's minutes; no speed reference recorded to scale them")
        print(f"{len(expect)} chapter(s) on the {profile} profile: about {sum(known):.0f} min on this machine ({how})"
              + (f"; {len(expect) - len(known)} chapter(s) not timed yet" if len(known) < len(expect) else ""),
              flush=True)
    results: dict[str, Any] = {"profile": profile, "tiny": tiny, "passed": False, "out": str(out), "machine": machine,
                               "device": kernel_env["LABKIT_DEVICE"], "threads": int(kernel_env[session.ENV_THREADS]),
                               "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "chapters": []}
    for ch, params in todo:
        if echo and ch.status != "planned":
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            print(f"-> {ch.name} [{profile}] {shown}", flush=True)
        reporter = Reporter(f"{ch.name} [{profile}]", expect.get(ch.id)) if echo and ch.status != "planned" else None
        results["chapters"].append(run_chapter(book, ch, params, profile, out, device=device, threads=threads,
                                               reporter=reporter, tiny=tiny))
        (out / "results.json").write_text(json.dumps(results, indent=1))
    ran = [c for c in results["chapters"] if c["status"] != "planned"]
    results["passed"] = bool(ran) and all(c["passed"] for c in ran)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if echo:
        print(format_table(results))
        print(f"executed notebooks and results.json in {out}")
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table: chapter, status, minutes, each target with its value."""
    lines = [f"profile: {results['profile']}",
             f"{'chapter':<28} {'status':<8} {'min':>5}  targets (actual)"]
    for c in results["chapters"]:
        checks = "; ".join(
            f"{'✓' if t['passed'] else '✗'} {t['metric']} {t['op']} {t['value']:g} "
            f"({'missing' if t['actual'] is None else format(t['actual'], '.4g')})" for t in c["targets"])
        if c["status"] == "planned":
            checks = "(not written yet)"
        elif c["error"]:
            checks = (checks + " | " if checks else "") + c["error"][:200]
        lines.append(f"{c['id'] + '_' + c['slug']:<28} {c['status']:<8} {c['seconds'] / 60:>5.1f}  {checks}")
    n_ok = sum(c["passed"] for c in results["chapters"])
    n_run = sum(c["status"] != "planned" for c in results["chapters"])
    n_planned = len(results["chapters"]) - n_run
    if results.get("tiny"):  # a code-path check: nothing is passed, a chapter either ran or raised
        n_clean = sum(c["status"] == "unchecked" for c in results["chapters"])
        lines.append(f"{n_clean}/{n_run} chapters ran the gpu code path at smoke sizes without an error "
                     f"(a tiny run checks no targets) -> {'OK' if n_clean == n_run else 'FAIL'}")
        return "\n".join(lines)
    lines.append(f"{n_ok}/{n_run} chapters passed, {n_planned} planned -> {'PASS' if results['passed'] else 'FAIL'}")
    return "\n".join(lines)
