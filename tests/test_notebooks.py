"""Every written chapter, executed on the smoke profile through the runner, must pass its targets."""
import json

import nbformat
import pytest

from labkit import book as bk
from labkit import runner

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
        assert "labkit.setup(" in code[1].source, f"{nb_path.name}: cell 3 calls labkit.setup"
        assert "labkit.check_targets()" in "".join(c.source for c in code), nb_path.name
        assert any("Exercises" in c.source for c in nb.cells if c.cell_type == "markdown"), nb_path.name
    listed = {(root / c.notebook).name for c in WRITTEN}
    assert listed == {p.name for p in (root / "notebooks").glob("*.ipynb")}, "book.toml and notebooks/ disagree"


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", WRITTEN, ids=[c.name for c in WRITTEN])
def test_chapter_passes_on_smoke(chapter, tmp_path):
    res = runner.run([chapter.id], profile="smoke", out_dir=tmp_path, book=BOOK, echo=False)
    (entry,) = res["chapters"]
    assert entry["status"] != "error", f"{chapter.name} raised: {entry['error']}"
    assert entry["passed"], runner.format_table(res)
    assert entry["metrics"], "the chapter recorded nothing"
    assert json.loads((tmp_path / "results.json").read_text())["passed"] is True
