"""Every written chapter, executed on the smoke profile through the runner, must pass its targets."""
import json

import nbformat
import pytest

from labkit import book as bk
from labkit.book import runner

BOOK = bk.load_book()
WRITTEN = [c for c in BOOK.chapters if c.status == "written"]


def test_notebooks_are_stored_clean(root):
    for nb_path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), f"{nb_path.name}: clear outputs"
        assert "parameters" in code[0].metadata.get("tags", []), f"{nb_path.name}: first code cell must be parameters"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        assert {"kernelspec", "language_info"} <= set(nb.metadata), nb_path.name
        assert nb.metadata.kernelspec.name == "labkit", f"{nb_path.name}: the book's kernel is 'labkit'"
        assert "labkit.setup(" in code[1].source, f"{nb_path.name}: cell 3 calls labkit.setup"
        assert "labkit.check_targets()" in "".join(c.source for c in code), nb_path.name
        assert any("Exercises" in c.source for c in nb.cells if c.cell_type == "markdown"), nb_path.name
    listed = {(root / c.notebook).name for c in WRITTEN}
    assert listed == {p.name for p in (root / "notebooks").glob("*.ipynb")}, "book.toml and notebooks/ disagree"


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    """One run folder for every chapter's smoke run: the HTML book and the report are built from it."""
    return tmp_path_factory.mktemp("smoke_run")


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", WRITTEN, ids=[c.name for c in WRITTEN])
def test_chapter_passes_on_smoke(chapter, smoke_dir):
    res = runner.run([chapter.id], profile="smoke", out_dir=smoke_dir, book=BOOK, echo=False)
    (entry,) = res["chapters"]
    assert entry["status"] != "error", f"{chapter.name} raised: {entry['error']}"
    assert entry["passed"], runner.format_table(res)
    assert entry["metrics"], "the chapter recorded nothing"
    assert json.loads((smoke_dir / "results.json").read_text())["passed"] is True


# The gpu code path on this CPU: the gpu profile's models, options and sections at smoke sizes
# (`labkit run --profile gpu --tiny`). Where those parameters are smoke's own (the gpu profile only
# scales sizes up), the smoke run above already executes that path; the others run here.
GPU_PATHS = [c for c in WRITTEN if c.tiny_params() != c.params_for("smoke")]


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", GPU_PATHS, ids=[c.name for c in GPU_PATHS])
def test_chapter_gpu_code_path_runs_on_the_cpu(chapter, tmp_path):
    res = runner.run([chapter.id], profile="gpu", tiny=True, device="cpu", out_dir=tmp_path, book=BOOK, echo=False)
    (entry,) = res["chapters"]
    assert entry["status"] == "unchecked", f"{chapter.name} on the gpu path raised: {entry['error']}"
    assert res["device"] == "cpu" and res["tiny"] and entry["parameters"] == chapter.tiny_params()
    # At smoke sizes it records what the smoke run's targets read.
    assert {t.metric for t in chapter.targets_for("smoke")} <= set(entry["metrics"])


@pytest.mark.notebook
def test_html_book_and_report_from_the_smoke_run(smoke_dir, tmp_path):
    """After the smoke runs above: every executed chapter has its page, with all its figures, no CDN."""
    import re

    from labkit.book import report, site

    if not any(smoke_dir.glob("*.ipynb")):  # this test alone: run one chapter first
        runner.run(["00"], profile="smoke", out_dir=smoke_dir, book=BOOK, echo=False)
    md, page = report.write_report([smoke_dir], book=BOOK)
    index = site.build_site(smoke_dir, tmp_path / "html", book=BOOK)
    text = md.read_text()
    executed = [c for c in BOOK.chapters if (smoke_dir / f"{c.name}.ipynb").is_file()]
    for ch in executed:
        nb = nbformat.read(smoke_dir / f"{ch.name}.ipynb", as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        html = (index.parent / f"{ch.name}.html").read_text()
        assert html.count("data:image/png;base64") >= figures, f"{ch.name}: figures missing from its page"
        assert f"{ch.name}.html" in index.read_text()
        assert f"### {ch.id} {ch.title}" in text
        # No script, stylesheet or module is loaded from another host: the book reads offline.
        remote = [u for u in re.findall(r'(?:src|href)="(https?://[^"]+)"|import\("(https?://[^"]+)"\)', html)
                  if not re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", "".join(u))]  # a local server is not remote
        assert not remote, f"{ch.name}: remote loads {remote[:3]}"
        assert "_static/mathjax/MathJax.js" in html
    assert (index.parent / "report.html").is_file() and "minutes per chapter" in page.read_text()
