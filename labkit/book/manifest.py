"""The book's manifest (`book.toml`): profiles, chapters, their parameters and targets.

The runner (`labkit.book.runner`) and `check_targets` (`labkit.book.record`) read it; nothing in
the teaching modules does.
"""
from __future__ import annotations

import math
import operator
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
STATUSES = ("written", "planned")

# Environment variables through which the runner tells a notebook's kernel where it stands.
ENV_PROFILE = "LABKIT_PROFILE"
ENV_METRICS = "LABKIT_METRICS_FILE"
ENV_ROOT = "LABKIT_ROOT"


class ManifestError(ValueError):
    """book.toml is malformed, or a name given by the user is not in it."""


@dataclass(frozen=True)
class Target:
    metric: str
    op: str
    value: float

    def check(self, actual: float | None) -> bool:
        """True when `actual` satisfies the target; a missing or NaN value never does.

        >>> Target("acc", ">=", 0.9).check(0.93)
        True
        """
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            return False
        return bool(OPS[self.op](actual, self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Chapter:
    id: str
    slug: str
    title: str
    notebook: str
    status: str = "planned"
    title_zh: str = ""
    seeds: tuple[str, ...] = ()
    minutes: dict[str, float] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, tuple[Target, ...]] = field(default_factory=dict)
    terms: dict[str, str] = field(default_factory=dict)  # key terms, English -> Chinese
    gpu_tiny: dict[str, Any] = field(default_factory=dict)  # gpu sizes shrunk for a CPU (see tiny_params)

    @property
    def name(self) -> str:
        return f"{self.id}_{self.slug}"

    def targets_for(self, profile: str) -> tuple[Target, ...]:
        return self.targets.get(profile, ())

    def params_for(self, profile: str) -> dict[str, Any]:
        return dict(self.params.get(profile, {}))

    def tiny_params(self) -> dict[str, Any]:
        """The gpu profile's choices at the smoke profile's sizes: its code path, run on a CPU in about a smoke run's time.

        Smoke's sizes (numbers, lists of numbers), then the gpu profile's choices (model names, backends,
        flags: every value that is not a size), then `gpu_tiny`: numbers that choose a code path (beam
        search, one process per GPU) and sizes for sections smoke never runs. Smoke's switches (a
        section turned off with `False`) do not apply: the gpu profile runs those sections. Sizes
        that only the gpu profile sets stay at the notebook's default. `labkit run --profile gpu --tiny`.

        >>> Chapter("9", "s", "t", "n.ipynb", params={"smoke": {"steps": 2, "run_ddp": False},
        ...         "gpu": {"steps": 900, "backend": "nccl", "width": 512}}, gpu_tiny={"beams": 4}).tiny_params()
        {'steps': 2, 'backend': 'nccl', 'beams': 4}
        """
        sizes = {k: v for k, v in self.params_for("smoke").items() if _is_size(v)}
        choices = {k: v for k, v in self.params_for("gpu").items() if not _is_size(v)}
        return {**sizes, **choices, **self.gpu_tiny}


def _is_size(value: Any) -> bool:
    """A number, or a list or table of sizes (booleans are switches, strings are choices)."""
    if isinstance(value, list):
        return all(_is_size(v) for v in value)
    if isinstance(value, dict):
        return all(_is_size(v) for v in value.values())
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Part:
    """A group of chapters read together (the index and the report follow the parts)."""
    title: str
    chapters: tuple[Chapter, ...]
    title_zh: str = ""


@dataclass(frozen=True)
class Book:
    root: Path
    title: str
    version: str
    profiles: dict[str, dict[str, Any]]
    chapters: tuple[Chapter, ...]
    title_zh: str = ""
    parts: tuple[Part, ...] = ()
    speed_reference: float | None = None  # progress.speed_score() of the machine that measured the minutes

    def in_reading_order(self) -> tuple[Chapter, ...]:
        """Chapters part by part: ids stay stable for runs and links, the reading order may differ."""
        return tuple(c for part in self.parts for c in part.chapters) or self.chapters

    def chapter(self, key: str) -> Chapter:
        """Find a chapter by id ("06", "6"), slug or `id_slug`.

        >>> load_book().chapter("0").slug
        'setup'
        """
        key = str(key).strip()
        for ch in self.chapters:
            if key in (ch.id, ch.slug, ch.name) or (key.isdigit() and int(key) == int(ch.id)):
                return ch
        valid = ", ".join(f"{c.id} ({c.slug})" for c in self.chapters)
        raise ManifestError(f"unknown chapter {key!r}; valid chapters: {valid}")

    def profile(self, name: str) -> dict[str, Any]:
        if name not in self.profiles:
            raise ManifestError(f"unknown profile {name!r}; valid profiles: {', '.join(self.profiles)}")
        return self.profiles[name]


def find_root(start: Path | None = None) -> Path:
    """The directory holding book.toml: $LABKIT_ROOT, else the first parent of `start` (or cwd)."""
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "book.toml").is_file():
            return d
    # An installed (non-editable) labkit still finds the book it was installed from.
    pkg_root = Path(__file__).resolve().parent.parent
    if (pkg_root / "book.toml").is_file():
        return pkg_root
    raise ManifestError(f"no book.toml in {here} or its parents; run from the book's folder or set {ENV_ROOT}")


def _parse_target(raw: Any, where: str) -> Target:
    if not isinstance(raw, dict) or set(raw) != {"metric", "op", "value"}:
        raise ManifestError(f"{where}: a target needs exactly the keys metric, op, value; got {raw!r}")
    if raw["op"] not in OPS:
        raise ManifestError(f"{where}: op {raw['op']!r} is not one of {', '.join(OPS)}")
    if not isinstance(raw["value"], (int, float)) or isinstance(raw["value"], bool):
        raise ManifestError(f"{where}: target value for {raw['metric']!r} must be a number")
    return Target(str(raw["metric"]), raw["op"], float(raw["value"]))


def parse_book(data: dict[str, Any], root: Path) -> Book:
    """Validate the parsed TOML of a manifest and build a `Book`.

    >>> parse_book({"book": {"title": "t", "version": "1"}, "profiles": {"cpu": {}}, "chapters": []}, Path(".")).title
    't'
    """
    meta = data.get("book") or {}
    for key in ("title", "version"):
        if key not in meta:
            raise ManifestError(f"[book] needs a {key!r}")
    profiles = data.get("profiles") or {}
    if not profiles:
        raise ManifestError("book.toml declares no [profiles.*]")
    chapters, seen = [], set()
    for i, raw in enumerate(data.get("chapters") or []):
        where = f"chapter #{i + 1} ({raw.get('id', '?')})"
        for key in ("id", "slug", "title", "notebook"):
            if key not in raw:
                raise ManifestError(f"{where}: missing {key!r}")
        if raw["id"] in seen:
            raise ManifestError(f"{where}: duplicate id {raw['id']!r}")
        seen.add(raw["id"])
        status = raw.get("status", "planned")
        if status not in STATUSES:
            raise ManifestError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
        for section in ("params", "targets", "minutes"):
            unknown = set(raw.get(section) or {}) - set(profiles)
            if unknown:
                raise ManifestError(f"{where}: {section} for unknown profile(s) {sorted(unknown)}; "
                                    f"profiles are {', '.join(profiles)}")
        targets = {p: tuple(_parse_target(t, f"{where} targets.{p}") for t in ts)
                   for p, ts in (raw.get("targets") or {}).items()}
        gpu_tiny = raw.get("gpu_tiny") or {}
        if not isinstance(gpu_tiny, dict):
            raise ManifestError(f"{where}: gpu_tiny must be a table of parameters, e.g. gpu_tiny = {{ steps = 20 }}")
        terms = raw.get("terms") or {}
        if not isinstance(terms, dict) or not all(isinstance(v, str) for v in terms.values()):
            raise ManifestError(f'{where}: terms must map English to Chinese, e.g. terms = {{ perplexity = "困惑度" }}')
        chapters.append(Chapter(
            id=str(raw["id"]), slug=raw["slug"], title=raw["title"], notebook=raw["notebook"],
            status=status, title_zh=raw.get("title_zh", ""), seeds=tuple(raw.get("seeds", ())),
            minutes={k: float(v) for k, v in (raw.get("minutes") or {}).items()},
            params={k: dict(v) for k, v in (raw.get("params") or {}).items()}, targets=targets,
            terms=dict(terms), gpu_tiny=dict(gpu_tiny)))
    return Book(root=root, title=meta["title"], version=str(meta["version"]), profiles=profiles,
                chapters=tuple(chapters), title_zh=meta.get("title_zh", ""),
                parts=_parse_parts(data.get("parts"), chapters), speed_reference=meta.get("speed_reference"))


def _parse_parts(raw: Any, chapters: list[Chapter]) -> tuple[Part, ...]:
    """`[[parts]]` tables (title, title_zh, chapters = ids); without any, one part holds every chapter."""
    if not raw:
        return (Part("Chapters", tuple(chapters)),)
    by_id, seen, parts = {c.id: c for c in chapters}, {}, []
    for p in raw:
        title = p.get("title", "?")
        ids = [str(i) for i in p.get("chapters", [])]
        for i in ids:
            if i not in by_id:
                raise ManifestError(f"part {title!r} lists unknown chapter {i!r}; chapters: {', '.join(by_id)}")
            if i in seen:
                raise ManifestError(f"chapter {i} is in two parts ({seen[i]!r} and {title!r})")
            seen[i] = title
        parts.append(Part(title, tuple(by_id[i] for i in ids), p.get("title_zh", "")))
    missing = [i for i in by_id if i not in seen]
    if missing:
        raise ManifestError(f"chapter {missing[0]} is in no part: add it to a [[parts]] table in book.toml")
    return tuple(parts)


def load_book(path: str | Path | None = None) -> Book:
    """Read and validate book.toml (found from the working directory when `path` is None).

    >>> book = load_book()
    >>> [c.id for c in book.chapters][:3]
    ['00', '01', '02']
    """
    file = Path(path) if path else find_root() / "book.toml"
    if file.is_dir():
        file = file / "book.toml"
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {file}") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{file} is not valid TOML: {e}") from None
    return parse_book(data, file.parent.resolve())

def evaluate_targets(targets: tuple[Target, ...], metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One row per target: metric, op, value, actual (None if missing), passed.

    >>> evaluate_targets((Target("acc", ">=", 0.9),), {"acc": 0.95})[0]["passed"]
    True
    """
    return [{"metric": t.metric, "op": t.op, "value": t.value, "actual": metrics.get(t.metric),
             "passed": t.check(metrics.get(t.metric))} for t in targets]
