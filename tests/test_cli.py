import sys
import tomllib

import pytest

from labkit import book as bk
from labkit.book import cli


def test_readme_chapter_table_is_current(root):
    assert cli.update_readme(bk.load_book(), check=True), "README is stale: run `labkit readme`"
    book = bk.load_book()
    table = cli.chapter_table(book)
    assert table.count("\n") == 1 + len(book.parts) + len(book.chapters)  # header rule, a row per part and chapter
    assert "| 00 | [Setup" in table and "语言模型" in table and "| | **Foundations** | **基础** | | |" in table


def test_list_shows_every_chapter(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{c.id}  " in out for c in bk.load_book().chapters)


def test_doctor_passes_on_this_machine(capsys):
    assert cli.main(["doctor"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and "[OK] asset smollm2-135m-instruct" in out


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as e:
        cli.main(["fly"])
    assert e.value.code == 2


def _names(reqs):
    import re

    return {re.split(r"[<>=!~ ;\[]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_environment_yml_mirrors_pyproject(root):
    import yaml

    py = tomllib.loads((root / "pyproject.toml").read_text())
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    declared = py["project"]["dependencies"] + py["project"]["optional-dependencies"]["test"]
    assert sorted(pip) == sorted(declared)
    assert "python>=3.11,<3.14" in env["dependencies"]
    for pkg in py["tool"]["labkit"]["no-deps"]:  # installed by hand, documented in the header
        assert f"pip install --no-deps {pkg}" in (root / "environment.yml").read_text()
        assert pkg in (root / "Makefile").read_text()


def test_constraints_pin_the_cpu_torch_and_every_dependency(root):
    pins = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in (root / "constraints.txt").read_text().splitlines()
            if "==" in ln and not ln.startswith("#")}
    assert pins["torch"] == "2.13.0"
    py = tomllib.loads((root / "pyproject.toml").read_text())
    missing = _names(py["project"]["dependencies"] + py["project"]["optional-dependencies"]["test"]) - set(pins)
    assert not missing, f"not pinned in constraints.txt: {missing}"


def test_python_is_supported(root):
    """3.11, 3.12 and 3.13: what pyproject declares, the doctor accepts and the Makefile looks for."""
    from labkit.book.doctor import SUPPORTED_PYTHONS

    assert SUPPORTED_PYTHONS[0] <= sys.version_info[:2] <= SUPPORTED_PYTHONS[-1]
    py = tomllib.loads((root / "pyproject.toml").read_text())
    assert py["project"]["requires-python"] == ">=3.11,<3.14"
    assert "for v in 3.13 3.12 3.11" in (root / "Makefile").read_text()
