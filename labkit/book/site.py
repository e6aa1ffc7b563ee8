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

import json
import shutil
import warnings
from html.parser import HTMLParser
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
.lk-part th { padding-top: 1em; font-size: 16px; }
.lk-toc ul { margin: .3em 0; columns: 2; } .lk-toc .lk-l3 { margin-left: 1.2em; font-size: 13px; }
.lk-search input { width: 100%; font-size: 16px; padding: .4em; margin: .5em 0; }
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


class _Sections(HTMLParser):
    """The headings (h1-h3, with nbconvert's anchors) and the prose under each, from a chapter's page:
    only markdown cells count (code and outputs would drown the search in numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict[str, Any]] = []
        self.depth = 0  # >0 inside a rendered markdown cell
        self.heading: dict[str, Any] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth:
            self.depth += tag == "div"
        elif tag == "div" and "jp-MarkdownOutput" in (a.get("class") or ""):
            self.depth = 1
        if self.depth and tag in ("h1", "h2", "h3") and a.get("id"):
            self.heading = {"level": int(tag[1]), "anchor": a["id"], "section": "", "text": ""}
            self.sections.append(self.heading)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self.heading is not None:
            self.heading["section"] = self.heading["section"].replace("¶", "").strip()
            self.heading = None
        elif self.depth and tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            return
        if self.heading is not None:
            self.heading["section"] += data
        elif self.sections:
            self.sections[-1]["text"] += data


def sections(page_html: str) -> list[dict[str, Any]]:
    """Each heading of a chapter page: level, anchor, heading text, prose below it.

    >>> sections('<div class="jp-MarkdownOutput"><h2 id="a-b">A b<a>¶</a></h2><p>Words here</p></div>')
    [{'level': 2, 'anchor': 'a-b', 'section': 'A b', 'text': 'Words here'}]
    """
    parser = _Sections()
    parser.feed(page_html)
    for s in parser.sections:
        s["text"] = " ".join(s["text"].split())
    return parser.sections


def _templates():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("labkit.book", "templates"), autoescape=True)


def _index_parts(book: bk.Book, pages: list[bk.Chapter], metas: dict[str, dict[str, Any]]) -> list[dict]:
    parts = []
    for part in book.parts:
        rows = []
        for ch in part.chapters:
            meta, targets = metas.get(ch.id, {}), metas.get(ch.id, {}).get("targets", [])
            state = ("in this run" if ch in pages else "not in this run") if ch.status == "written" else "planned"
            rows.append({"id": ch.id, "title": ch.title, "title_zh": ch.title_zh, "state": state,
                         "page": f"{ch.name}.html" if ch in pages else None,
                         "terms": " · ".join(f"{en} {zh}" for en, zh in ch.terms.items()),
                         "minutes": f"{meta['seconds'] / 60:.1f}" if "seconds" in meta else "–",
                         "met": sum(t["passed"] for t in targets), "total": len(targets)})
        parts.append({"title": part.title, "title_zh": part.title_zh, "rows": rows})
    return parts


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
    env, search = _templates(), []
    for k, ch in enumerate(pages):
        nb = nbformat.read(found[ch.id], as_version=4)
        metas[ch.id] = dict(nb.metadata.get("labkit", {}))
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{ch.id} {ch.title}"}})
        found_sections = sections(body)
        search += [{"page": f"{ch.name}.html", "title": f"{ch.id} {ch.title}", **{k2: s[k2] for k2 in
                    ("section", "anchor")}, "text": s["text"][:2000]} for s in found_sections]
        toc = [(s["level"], s["anchor"], s["section"]) for s in found_sections if s["level"] in (2, 3)]
        head = env.get_template("chapter_head.html.jinja").render(
            book=book, ch=ch, meta=metas[ch.id], toc=toc, prev=pages[k - 1] if k else None,
            next=pages[k + 1] if k + 1 < len(pages) else None)
        body = body.replace("</head>", f"<style>{CSS}</style></head>", 1)
        start = body.index(">", body.index("<body")) + 1
        (out / f"{ch.name}.html").write_text(body[:start] + head + body[start:], encoding="utf-8")
    # The search index is a script, not JSON fetched at run time: file:// pages may not fetch.
    (out / "_static" / "search_index.js").write_text(
        "window.LK_INDEX = " + json.dumps(search, ensure_ascii=False) + ";\n", encoding="utf-8")
    report = (run_dir / "report.html").is_file()
    if report:
        shutil.copy2(run_dir / "report.html", out / "report.html")
        if (run_dir / "report_files").is_dir():
            shutil.copytree(run_dir / "report_files", out / "report_files", dirs_exist_ok=True)
    index = out / "index.html"
    index.write_text(env.get_template("index.html.jinja").render(
        book=book, css=CSS, report=report, parts=_index_parts(book, pages, metas)), encoding="utf-8")
    return index
