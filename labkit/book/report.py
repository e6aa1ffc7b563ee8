"""The results report: every chapter's metrics against its targets, minutes, machine, versions.

`write_report([run_dir])` reads a run folder (its `results.json` and the executed notebooks, whose
metadata the runner stamps with metrics and targets) and writes `report.md` and `report.html`
there, with a minutes chart and the figures of cells tagged `report` (the chapters' trade-off
plots) under `report_files/`. Given several run folders (one per student, say) it also writes a
class summary: one row per run, one column per chapter.

    >>> write_report(["runs/cpu"])                                     # doctest: +SKIP
    [PosixPath('runs/cpu/report.md'), PosixPath('runs/cpu/report.html')]
"""
from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from . import manifest as bk

FILES = "report_files"


def collect(run_dir: str | Path, book: bk.Book | None = None) -> dict[str, Any]:
    """A run's results: results.json merged with the stamps of executed notebooks in the folder.

    Chapters run separately into one folder each rewrite results.json; their executed notebooks
    keep their own results, so nothing run there is lost.
    """
    import nbformat

    book = book or bk.load_book()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise bk.ManifestError(f"run folder not found: {run_dir}; run the book first (`make run`)")
    res_file = run_dir / "results.json"
    results = json.loads(res_file.read_text()) if res_file.is_file() else {}
    entries = {c["id"]: c for c in results.get("chapters", []) if c.get("status") != "planned"}
    figures: dict[str, list[bytes]] = {}
    for ch in book.chapters:
        nb_file = run_dir / f"{ch.name}.ipynb"
        if not nb_file.is_file():
            continue
        nb = nbformat.read(nb_file, as_version=4)
        stamp = nb.metadata.get("labkit")
        if stamp and ch.id not in entries:
            entries[ch.id] = {"id": ch.id, "slug": ch.slug, **stamp}
        figures[ch.id] = [base64.b64decode(o["data"]["image/png"]) for c in nb.cells
                          if "report" in c.metadata.get("tags", []) for o in c.get("outputs", [])
                          if "image/png" in o.get("data", {})]
    if not entries:
        raise bk.ManifestError(f"{run_dir} holds no results.json and no executed chapter notebooks")
    chapters = [entries[c.id] for c in book.chapters if c.id in entries]
    profiles = {c.get("profile", results.get("profile")) for c in chapters} - {None}
    return {"dir": str(run_dir), "name": run_dir.name, "profile": ", ".join(sorted(profiles)) or "?",
            "machine": results.get("machine"), "started": results.get("started"), "chapters": chapters,
            "figures": figures, "passed": all(c.get("passed") for c in chapters)}


def _fmt(x: Any) -> str:
    return "missing" if x is None else (format(x, ".4g") if isinstance(x, (int, float)) else str(x))


def _chapter_rows(book: bk.Book, run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in run["chapters"]:
        ch = book.chapter(c["id"])
        targets = c.get("targets", [])
        rows.append({"id": c["id"], "title": ch.title, "title_zh": ch.title_zh, "status": c.get("status"),
                     "minutes": round(c.get("seconds", 0) / 60, 1), "met": sum(t["passed"] for t in targets),
                     "targets": targets, "error": c.get("error"),
                     "other": {k: v for k, v in c.get("metrics", {}).items()
                               if k not in {t["metric"] for t in targets}}})
    return rows


def _minutes_chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1))
    colors = ["#16a34a" if r["status"] == "ok" else "#dc2626" for r in rows]
    ax.barh([f"{r['id']} {r['title'][:38]}" for r in rows][::-1], [r["minutes"] for r in rows][::-1],
            color=colors[::-1])
    ax.set_xlabel("minutes (green: every target met)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine_lines(run: dict[str, Any]) -> list[str]:
    from .session import machine

    info, where = run.get("machine"), "the machine of the run"
    if not info:
        info, where = machine(), "the machine writing this report (the run did not record its own)"
    return [f"Machine: {where}"] + [f"- {k}: {v}" for k, v in info.items()]


def _markdown(book: bk.Book, runs: list[dict[str, Any]], figs: dict[str, list[str]]) -> str:
    lines = [f"# Results report: {book.title}", "", f"{book.title_zh} · written {time.strftime('%Y-%m-%d %H:%M')}", ""]
    if len(runs) > 1:
        lines += _class_summary_md(book, runs)
    for run in runs:
        rows = _chapter_rows(book, run)
        lines += [f"## Run `{run['dir']}`", "", f"Profile {run['profile']}; started {run.get('started') or '?'}; "
                  f"{'every chapter passed' if run['passed'] else 'NOT every chapter passed'}; "
                  f"{sum(r['minutes'] for r in rows):.1f} minutes in all.", ""]
        lines += _machine_lines(run) + [""]
        lines += ["| # | chapter | 中文 | status | minutes | targets met |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['title']} | {r['title_zh']} | {r['status']} | {r['minutes']} | "
                  f"{r['met']}/{len(r['targets'])} |" for r in rows]
        if figs.get(run["dir"]):
            lines += ["", f"![minutes per chapter]({figs[run['dir']][0]})"]
        for r in rows:
            lines += ["", f"### {r['id']} {r['title']} ({r['title_zh']})", ""]
            if r["error"]:
                lines += [f"**Error:** `{r['error']}`", ""]
            lines += ["| metric | value | target | |", "|---|---|---|---|"]
            lines += [f"| `{t['metric']}` | {_fmt(t['actual'])} | {t['op']} {t['value']:g} | "
                      f"{'met' if t['passed'] else '**missed**'} |" for t in r["targets"]]
            lines += [f"| `{k}` | {_fmt(v)} | – | |" for k, v in r["other"].items()]
            lines += [f"\n![{r['id']} figure]({f})" for f in figs.get(f"{run['dir']}#{r['id']}", [])]
    return "\n".join(lines) + "\n"


def _class_summary_md(book: bk.Book, runs: list[dict[str, Any]]) -> list[str]:
    ids = [c.id for c in book.chapters if any(c.id in {x["id"] for x in r["chapters"]} for r in runs)]
    lines = ["## Class summary", "", "One row per run folder; each cell: targets met / targets, minutes.", "",
             "| run | " + " | ".join(ids) + " | all passed |", "|---" * (len(ids) + 2) + "|"]
    for run in runs:
        by_id = {r["id"]: r for r in _chapter_rows(book, run)}
        cells = [f"{by_id[i]['met']}/{len(by_id[i]['targets'])} ({by_id[i]['minutes']}m)" if i in by_id else "–"
                 for i in ids]
        lines.append(f"| {run['name']} | " + " | ".join(cells) + f" | {'yes' if run['passed'] else 'no'} |")
    return lines + [""]


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left}
img{max-width:100%}strong{color:#b91c1c}nav.toc{background:#f6f6f6;padding:.5em 1em}
</style></head><body>
{% if toc %}<nav class="toc"><b>Contents</b><ul>{% for level, anchor, text in toc %}
<li style="margin-left:{{ (level - 2) * 1.2 }}em"><a href="#{{ anchor }}">{{ text }}</a></li>{% endfor %}</ul></nav>{% endif %}
{{ body }}
</body></html>
"""


def _html(markdown: str, title: str) -> str:
    """The report's Markdown as an HTML page: markdown-it-py renders it (tables included), jinja2 lays
    out the page, and every level-2 and level-3 heading gets an anchor and a line in the contents.

    >>> page = _html("## Run a\\n\\n| x | y |\\n|---|---|\\n| 1 | 2 |", "t")
    >>> '<td>1</td>' in page and 'href="#run-a"' in page
    True
    """
    import re

    import jinja2
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(markdown)
    toc, seen = [], set()
    for k, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.tag in ("h2", "h3"):
            text = tokens[k + 1].content
            anchor = re.sub(r"[^0-9a-z\u4e00-\u9fff]+", "-", text.lower()).strip("-") or f"s{k}"
            while anchor in seen:
                anchor += "-"
            seen.add(anchor)
            tok.attrSet("id", anchor)
            toc.append((int(tok.tag[1]), anchor, re.sub(r"`", "", text)))
    body = md.renderer.render(tokens, md.options, {})
    page = jinja2.Environment(autoescape=True).from_string(PAGE)
    return page.render(title=title, toc=toc, body=jinja2.utils.markupsafe.Markup(body))


def _default_out(dirs: list[Path]) -> Path:
    """The run folder itself, or the class's common folder; never the file-system root."""
    if len(dirs) == 1:
        return dirs[0]
    common = Path(os.path.commonpath(dirs))
    return common if common != Path(common.anchor) else Path.cwd() / "class_report"


def write_report(run_dirs: list[str | Path], out: str | Path | None = None,
                 book: bk.Book | None = None) -> list[Path]:
    """Write report.md and report.html (and report_files/) for one or several run folders."""
    book = book or bk.load_book()
    if not run_dirs:
        raise bk.ManifestError("give at least one run folder, e.g. labkit report runs/cpu")
    runs, skipped = [], []
    for d in run_dirs:  # a class report goes on past a folder it cannot read, and says so
        try:
            runs.append(collect(d, book))
        except (bk.ManifestError, OSError, ValueError, KeyError) as e:
            if len(run_dirs) == 1:
                raise
            skipped.append((str(d), f"{type(e).__name__}: {e}"))
    if not runs:
        raise bk.ManifestError("no readable run folder: " + "; ".join(f"{d} ({why})" for d, why in skipped))
    dirs = [Path(r["dir"]).resolve() for r in runs]
    out = Path(out) if out else _default_out(dirs)
    files = out / FILES
    files.mkdir(parents=True, exist_ok=True)
    figs: dict[str, list[str]] = {}
    for k, run in enumerate(runs):
        chart = files / f"minutes_{k}.png"
        _minutes_chart(_chapter_rows(book, run), chart)
        figs[run["dir"]] = [f"{FILES}/{chart.name}"]
        for cid, images in run["figures"].items():
            names = []
            for j, png in enumerate(images):
                (files / f"run{k}_{cid}_{j}.png").write_bytes(png)
                names.append(f"{FILES}/run{k}_{cid}_{j}.png")
            figs[f"{run['dir']}#{cid}"] = names
    md = _markdown(book, runs, figs)
    if skipped:
        md += "\n## Folders not in this report\n\n" + "\n".join(f"- `{d}`: {why}" for d, why in skipped) + "\n"
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(_html(md, f"Results report: {book.title}"), encoding="utf-8")
    return [out / "report.md", out / "report.html"]

