"""The static HTML book: executed notebooks of a run, an index from book.toml, no CDN.

`build_site(run_dir, out)` converts each chapter's executed notebook (outputs, plots, the widgets'
saved state) with nbconvert's `lab` template, adds a navigation bar and the chapter's targets, and
writes `index.html` with the bilingual chapter list and key terms. Every script the pages load
(MathJax 2.7, require.js, the Jupyter widgets HTML manager) is copied into `_static/` from the
folder `make js` fills (`.venv/share/labkit-js`), so the site reads the same offline.

    >>> build_site("runs/cpu", "build/html")        # doctest: +SKIP
    PosixPath('build/html/index.html')
"""
from __future__ import annotations

import html
import shutil
import warnings
from pathlib import Path
from typing import Any

from . import manifest as bk

# What the pages load, relative to the site's root, and where each comes from in the JS folder
# (npm packages unpacked by `make js`: mathjax@2.7.9, requirejs@2.3.8, @jupyter-widgets/html-manager@1.0.15).
MATHJAX_URL = "_static/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
REQUIRE_URL = "_static/require.js"
WIDGETS_URL = "_static/html-manager/embed-amd.js"
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_CHTML-full.js", "extensions", "jax/input/TeX", "jax/element",
                 "jax/output/CommonHTML", "fonts/HTML-CSS/TeX/woff", "localization/en")

CSS = """
body { margin: 0; }
.lk-nav { position: sticky; top: 0; z-index: 10; display: flex; gap: 1.2em; align-items: center;
  padding: .55em 1.5em; background: #1f2937; color: #e5e7eb; font: 14px/1.4 system-ui, sans-serif; }
.lk-nav a { color: #93c5fd; text-decoration: none; } .lk-nav .lk-title { flex: 1; color: #fff; }
.lk-box { margin: 1em auto; max-width: 1100px; padding: .6em 1em; border: 1px solid #d1d5db;
  border-radius: 6px; font: 14px/1.5 system-ui, sans-serif; background: #f9fafb; }
.lk-box table, .lk-index table { border-collapse: collapse; } .lk-box td, .lk-box th,
.lk-index td, .lk-index th { padding: .2em .8em; border-bottom: 1px solid #e5e7eb; text-align: left; }
.lk-ok { color: #15803d; } .lk-bad { color: #b91c1c; }
.lk-index { max-width: 1100px; margin: 2em auto; font: 15px/1.55 system-ui, sans-serif; padding: 0 1em; }
.lk-terms { color: #4b5563; font-size: 13px; }
"""


def default_js_dir(book: bk.Book) -> Path:
    return book.root / ".venv" / "share" / "labkit-js"


def copy_js(js_dir: Path, static: Path) -> list[str]:
    """Copy the scripts the pages load into `static`; return what is missing (with how to get it)."""
    missing = []
    static.mkdir(parents=True, exist_ok=True)
    mj = js_dir / "mathjax"
    if (mj / "MathJax.js").is_file():
        for part in MATHJAX_PARTS:
            src, dst = mj / part, static / "mathjax" / part
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    else:
        missing.append("MathJax (formulas stay as TeX)")
    if (js_dir / "requirejs" / "require.js").is_file():
        shutil.copy2(js_dir / "requirejs" / "require.js", static / "require.js")
    else:
        missing.append("require.js (widgets stay static)")
    hm = js_dir / "html-manager" / "dist"
    if (hm / "embed-amd.js").is_file():
        shutil.copytree(hm, static / "html-manager", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.map", "embed.js", "*.LICENSE.txt"))
    else:
        missing.append("the Jupyter widgets HTML manager (widgets stay static)")
    return missing


def _targets_box(meta: dict[str, Any]) -> str:
    if not meta:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(t['metric'])}</code></td><td>{t['op']} {t['value']:g}</td>"
        f"<td>{'missing' if t['actual'] is None else format(t['actual'], '.4g')}</td>"
        f"<td class='{'lk-ok' if t['passed'] else 'lk-bad'}'>{'met' if t['passed'] else 'missed'}</td></tr>"
        for t in meta.get("targets", []))
    status = meta.get("status", "?")
    cls = "lk-ok" if status == "ok" else "lk-bad"
    head = (f"<b>Profile</b> {html.escape(str(meta.get('profile')))} · <b>status</b> "
            f"<span class='{cls}'>{html.escape(status)}</span> · {meta.get('seconds', 0) / 60:.1f} min")
    table = f"<table><tr><th>metric</th><th>target</th><th>value</th><th></th></tr>{rows}</table>" if rows else ""
    return f"<div class='lk-box'>{head}{table}</div>"


def _nav(book: bk.Book, ch: bk.Chapter, pages: list[bk.Chapter]) -> str:
    i = pages.index(ch)
    prev = f"<a href='{pages[i - 1].name}.html'>&larr; {pages[i - 1].id}</a>" if i > 0 else ""
    nxt = f"<a href='{pages[i + 1].name}.html'>{pages[i + 1].id} &rarr;</a>" if i + 1 < len(pages) else ""
    return (f"<nav class='lk-nav'><a href='index.html'>{html.escape(book.title_zh or book.title)}</a>"
            f"<span class='lk-title'>{ch.id} · {html.escape(ch.title)} · {html.escape(ch.title_zh)}</span>"
            f"{prev}{nxt}</nav>")


def _index(book: bk.Book, pages: list[bk.Chapter], metas: dict[str, dict[str, Any]], report: bool) -> str:
    rows = []
    for part in book.parts:
        rows.append(f"<tr class='lk-part'><th colspan='6'>{html.escape(part.title)} · {html.escape(part.title_zh)}</th></tr>")
        rows += [_index_row(ch, pages, metas) for ch in part.chapters]
    return _index_page(book, rows, report)


def _index_row(ch: bk.Chapter, pages: list[bk.Chapter], metas: dict[str, dict[str, Any]]) -> str:
    meta = metas.get(ch.id, {})
    title = (f"<a href='{ch.name}.html'>{html.escape(ch.title)}</a>" if ch in pages
             else html.escape(ch.title))
    targets = meta.get("targets", [])
    met = (f"<span class='{'lk-ok' if all(t['passed'] for t in targets) else 'lk-bad'}'>"
           f"{sum(t['passed'] for t in targets)}/{len(targets)}</span>") if targets else "–"
    state = ("in this run" if ch in pages else "not in this run") if ch.status == "written" else "planned"
    terms = " · ".join(f"{html.escape(en)} {html.escape(zh)}" for en, zh in ch.terms.items())
    mins = f"{meta['seconds'] / 60:.1f}" if "seconds" in meta else "–"
    return (f"<tr><td>{ch.id}</td><td>{title}<div class='lk-terms'>{terms}</div></td>"
            f"<td>{html.escape(ch.title_zh)}</td><td>{state}</td><td>{mins}</td><td>{met}</td></tr>")




def _index_page(book: bk.Book, rows: list[str], report: bool) -> str:
    link = "<p><a href='report.html'>Results report</a> (metrics against targets, machine, versions)</p>" \
        if report else ""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(book.title)}</title>"
            f"<style>{CSS}</style></head><body><div class='lk-index'><h1>{html.escape(book.title)}<br>"
            f"<small>{html.escape(book.title_zh)}</small></h1>"
            f"<p>Version {html.escape(book.version)}. Each page is a chapter's notebook as executed by the runner, "
            f"with its outputs and the targets it was checked against.</p>{link}"
            "<table><tr><th>#</th><th>chapter · key terms</th><th>中文</th><th>status</th><th>minutes</th>"
            f"<th>targets met</th></tr>{''.join(rows)}</table></div></body></html>")


def build_site(run_dir: str | Path, out: str | Path, book: bk.Book | None = None,
               js_dir: str | Path | None = None) -> Path:
    """Write the HTML book of the executed notebooks in `run_dir` to `out`; return index.html."""
    import nbformat
    from nbconvert import HTMLExporter

    book = book or bk.load_book()
    run_dir, out = Path(run_dir), Path(out)
    found = {ch.id: run_dir / f"{ch.name}.ipynb" for ch in book.chapters if (run_dir / f"{ch.name}.ipynb").is_file()}
    if not found:
        raise bk.ManifestError(f"no executed chapter notebooks in {run_dir}: run the book first "
                               f"(`make run`, or `labkit run --out {run_dir}`)")
    out.mkdir(parents=True, exist_ok=True)
    missing = copy_js(Path(js_dir) if js_dir else default_js_dir(book), out / "_static")
    if missing:
        warnings.warn("HTML book built without " + "; ".join(missing) + ": run `make js` to fetch them "
                      "(npm), then rebuild", stacklevel=2)
    # Every URL the template would take from a CDN points into _static/ (mermaid is only loaded for
    # diagrams, which the book has none of; its local URL keeps the pages free of remote loads).
    exporter = HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL, require_js_url=REQUIRE_URL,
                            widget_renderer_url=WIDGETS_URL, jupyter_widgets_base_url="_static/html-manager/",
                            jquery_url="", mermaid_js_url="_static/mermaid.esm.min.mjs", mermaid_layout_elk_js_url="")
    pages = [ch for ch in book.in_reading_order() if ch.id in found]
    metas: dict[str, dict[str, Any]] = {}
    for ch in pages:
        nb = nbformat.read(found[ch.id], as_version=4)
        metas[ch.id] = dict(nb.metadata.get("labkit", {}))
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{ch.id} {ch.title}"}})
        head = f"<style>{CSS}</style>"
        body = body.replace("</head>", head + "</head>", 1)
        start = body.index(">", body.index("<body")) + 1
        body = body[:start] + _nav(book, ch, pages) + _targets_box(metas[ch.id]) + body[start:]
        (out / f"{ch.name}.html").write_text(body, encoding="utf-8")
    report = (run_dir / "report.html").is_file()
    if report:
        shutil.copy2(run_dir / "report.html", out / "report.html")
        if (run_dir / "report_files").is_dir():
            shutil.copytree(run_dir / "report_files", out / "report_files", dirs_exist_ok=True)
    index = out / "index.html"
    index.write_text(_index(book, pages, metas, report), encoding="utf-8")
    return index
