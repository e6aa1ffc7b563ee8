"""The runner on a tiny book of its own: parameters, statuses, the results contract, errors."""
import json

import nbformat
import pytest

from labkit import book as bk
from labkit.book import cli, runner

TARGETS = '[{ metric = "y", op = "==", value = 4 }, { metric = "offline", op = "==", value = 1 }]'
MANIFEST = f"""
[book]
title = "Tiny"
version = "0"
[profiles.smoke]
offline = true
[profiles.cpu]
offline = true
[[chapters]]
id = "00"
slug = "square"
title = "Squares"
title_zh = "平方"
notebook = "nb/00_square.ipynb"
status = "written"
params.smoke = {{ x = 2 }}
targets.smoke = {TARGETS}
targets.cpu = {TARGETS}
[[chapters]]
id = "01"
slug = "boom"
title = "Raises"
notebook = "nb/01_boom.ipynb"
status = "written"
targets.smoke = [{{ metric = "y", op = ">", value = 0 }}]
[[chapters]]
id = "02"
slug = "later"
title = "Not written"
notebook = "nb/02_later.ipynb"
"""


def _notebook(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body_src)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    (root / "book.toml").write_text(MANIFEST)
    (root / "nb").mkdir()
    _notebook(root / "nb/00_square.ipynb", "x = 3  # the number\nlabel = 'a'",
              "import labkit, os\nlabkit.setup(chapter='00', quiet=True)\n"
              "labkit.record('y', x * x)\nlabkit.record('offline', int(os.environ['HF_HUB_OFFLINE'] == '1'))\n"
              "print(label, os.environ['LABKIT_PROFILE'])")
    _notebook(root / "nb/01_boom.ipynb", "n = 1",
              "import labkit\nlabkit.setup(chapter='01', quiet=True)\nlabkit.record('y', n)\n"
              "raise ValueError('bad input n')")
    return bk.load_book(root)


@pytest.mark.parametrize("text, value", [("3", 3), ("3e-4", 3e-4), ("true", True), ("[1, 2]", [1, 2]),
                                         ('"quoted"', "quoted"), ("gpt2", "gpt2"), ("a b", "a b")])
def test_parse_value_is_json_where_it_parses(text, value):
    assert runner.parse_value(text) == value


def test_parse_assignments_rejects_malformed_items():
    assert runner.parse_assignments(["lr=3e-4", "name=x=y"]) == {"lr": 3e-4, "name": "x=y"}
    with pytest.raises(bk.ManifestError, match="must look like name=value"):
        runner.parse_assignments(["steps"])
    with pytest.raises(bk.ManifestError, match="must look like name=value"):
        runner.parse_assignments(["2x=1"])


def test_plan_merges_profile_and_command_line_parameters(tiny):
    (ch, params), (ch1, p1), (ch2, p2) = runner.plan(tiny, None, "smoke", {"label": "b"})
    assert (ch.id, params) == ("00", {"x": 2, "label": "b"})
    assert p1 == {} and (ch2.status, p2) == ("planned", {})
    assert runner.plan(tiny, ["00"], "cpu")[0][1] == {}


def test_plan_rejects_unknown_names_before_running(tiny):
    with pytest.raises(bk.ManifestError, match=r"unknown parameter\(s\) steps.*00: x, label"):
        runner.plan(tiny, ["00"], "smoke", {"steps": 1})
    with pytest.raises(bk.ManifestError, match="unknown chapter '7'"):
        runner.plan(tiny, ["7"], "smoke")
    with pytest.raises(bk.ManifestError, match="unknown profile 'gpu'"):
        runner.plan(tiny, ["00"], "gpu")


def test_run_writes_the_results_contract(tiny, tmp_path):
    res = runner.run(None, profile="smoke", overrides={"x": 2}, out_dir=tmp_path, book=tiny, echo=False)
    assert json.loads((tmp_path / "results.json").read_text()) == res
    assert res["profile"] == "smoke" and res["passed"] is False  # chapter 01 raises
    square, boom, later = res["chapters"]
    assert set(square) >= {"id", "slug", "notebook", "seconds", "status", "passed", "metrics", "targets", "error"}
    assert square["status"] == "ok" and square["passed"] is True and square["error"] is None
    assert square["metrics"] == {"y": 4.0, "offline": 1.0}
    assert square["targets"][0] == {"metric": "y", "op": "==", "value": 4.0, "actual": 4.0, "passed": True}
    assert square["seconds"] > 0
    executed = nbformat.read(tmp_path / "00_square.ipynb", as_version=4)
    assert executed.metadata["labkit"]["metrics"] == {"y": 4.0, "offline": 1.0}
    assert "a smoke" in executed.cells[-1].outputs[0]["text"]
    # A notebook that raises is an error with its cell and message; what it recorded is kept.
    assert boom["status"] == "error" and boom["passed"] is False
    assert "ValueError: bad input n" in boom["error"] and boom["metrics"] == {"y": 1.0}
    assert later["status"] == "planned" and later["passed"] is False
    table = runner.format_table(res)
    assert "(not written yet)" in table and "1/2 chapters passed, 1 planned -> FAIL" in table


def test_a_missed_target_fails_the_chapter(tiny, tmp_path):
    res = runner.run(["00"], profile="cpu", overrides={"x": 3}, out_dir=tmp_path, book=tiny, echo=False)
    (square,) = res["chapters"]
    assert square["status"] == "failed" and not res["passed"]
    assert square["targets"][0]["actual"] == 9.0 and square["targets"][0]["passed"] is False


def test_cli_exit_codes(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(bk.ENV_ROOT, str(tiny.root))
    assert cli.main(["run", "00", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert "1/1 chapters passed, 0 planned -> PASS" in capsys.readouterr().out
    assert cli.main(["run", "00", "--profile", "smoke", "-p", "x=5", "--out", str(tmp_path)]) == 1
    assert cli.main(["run", "42"]) == 2
    assert "unknown chapter '42'" in capsys.readouterr().err
    assert cli.main(["run", "00", "-p", "nope=1"]) == 2
    assert cli.main(["list", "--params"]) == 0
    out = capsys.readouterr().out
    assert "square" in out and "x = 3" in out and "planned" in out


def test_params_file_gives_per_chapter_parameters(tiny, tmp_path):
    f = tmp_path / "class.yaml"
    f.write_text('profile: smoke\nchapters: ["00", "01"]\nall:\n  label: b\n"01":\n  n: 5\nsquare:\n  x: 4\n')
    spec = runner.read_params_file(f)
    assert spec == {"profile": "smoke", "chapters": ["00", "01"], "all": {"label": "b"},
                    "per_chapter": {"01": {"n": 5}, "square": {"x": 4}}}
    plan = runner.plan(tiny, spec["chapters"], "smoke", spec["all"], spec["per_chapter"])
    assert [p for _, p in plan] == [{"x": 4, "label": "b"}, {"n": 5}]


@pytest.mark.parametrize("text, message", [
    ("- 1\n- 2\n", "expected a mapping"),
    ("profile: [cpu]\n", "profile must be a name"),
    ("chapters: 00\n", "chapters must be a list"),
    ('"00": 3\n', "must map parameter names to values"),
    ("all: {x: [1\n", "not valid YAML"),
])
def test_params_file_errors_are_clear(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(bk.ManifestError, match=message):
        runner.read_params_file(f)
    with pytest.raises(bk.ManifestError, match="not found"):
        runner.read_params_file(tmp_path / "missing.yaml")


def test_params_file_names_are_checked(tiny):
    with pytest.raises(bk.ManifestError, match=r"chapter 00 \(square\) has no parameter\(s\) steps"):
        runner.plan(tiny, ["00"], "smoke", {}, {"00": {"steps": 1}})
    with pytest.raises(bk.ManifestError, match="not selected"):
        runner.plan(tiny, ["00"], "smoke", {}, {"01": {"n": 1}})
    with pytest.raises(bk.ManifestError, match="planned, not written"):
        runner.plan(tiny, None, "smoke", {}, {"02": {"n": 1}})


def test_report_of_one_run_and_of_a_class(tiny, tmp_path, monkeypatch, capsys):
    from labkit.book import report

    monkeypatch.setenv(bk.ENV_ROOT, str(tiny.root))
    f = tmp_path / "p.yaml"
    f.write_text("chapters: ['00']\nsquare:\n  x: 2\n")
    alice, bob = tmp_path / "class" / "alice", tmp_path / "class" / "bob"
    assert cli.main(["run", "-f", str(f), "--profile", "smoke", "--out", str(alice), "--report"]) == 0
    assert "report:" in capsys.readouterr().out
    assert cli.main(["run", "00", "--profile", "smoke", "-p", "x=3", "--out", str(bob)]) == 1
    res = json.loads((alice / "results.json").read_text())
    assert res["machine"]["cores"] >= 1 and res["machine"]["torch"] != "missing"
    md = (alice / "report.md").read_text()
    assert "| `y` | 4 | == 4 | met |" in md and "平方" in md and (alice / "report_files" / "minutes_0.png").is_file()
    paths = report.write_report([alice, bob], book=tiny)
    summary = paths[0].read_text()
    assert paths[0].parent == tmp_path / "class"
    assert "## Class summary" in summary and "| alice | 2/2" in summary and "| bob | 1/2" in summary
    assert "<table>" in paths[1].read_text() and "**missed**" in summary
    with pytest.raises(bk.ManifestError, match="run folder not found"):
        report.collect(tmp_path / "nope", tiny)
    # A class report goes on past a foreign or unreadable folder, and names it.
    foreign, broken = tmp_path / "class" / "carol", tmp_path / "class" / "dave"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    paths = report.write_report([alice, foreign, broken, bob], book=tiny)
    text = paths[0].read_text()
    assert "| alice | 2/2" in text and "| bob | 1/2" in text
    assert "## Folders not in this report" in text and "carol" in text and "dave" in text
    assert 'id="class-summary"' in paths[1].read_text()  # the page's contents link to each section


def test_a_class_report_never_writes_to_the_root(tiny, tmp_path, monkeypatch):
    from pathlib import Path

    from labkit.book import report

    assert report._default_out([Path("/a/x"), Path("/b/y")]) == Path.cwd() / "class_report"
    assert report._default_out([Path("/a/x"), Path("/a/y")]) == Path("/a")


def test_the_readme_params_file_example_plans(root, tmp_path):
    """The teacher's example in README.md is a valid parameters file for the real book."""
    import re

    text = (root / "README.md").read_text()
    example = re.search(r"```yaml\n(# class-a.yaml.*?)```", text, re.S).group(1)
    (tmp_path / "class-a.yaml").write_text(example)
    spec = runner.read_params_file(tmp_path / "class-a.yaml")
    plan = runner.plan(bk.load_book(root), spec["chapters"], spec["profile"], spec["all"], spec["per_chapter"])
    assert [c.id for c, _ in plan] == ["00", "05"] and plan[1][1]["train_steps"] == 300


def test_a_value_of_the_wrong_type_stops_before_anything_runs(tiny):
    with pytest.raises(bk.ManifestError, match=r"chapter 00, parameter x = 'abc': expected an integer"):
        runner.plan(tiny, ["00"], "smoke", {"x": "abc"})
    with pytest.raises(bk.ManifestError, match=r"parameter label = 3: expected a string"):
        runner.plan(tiny, ["00"], "smoke", {"label": 3})
    assert runner.plan(tiny, ["00"], "smoke", {"x": 5})[0][1]["x"] == 5


def test_every_profile_of_the_real_book_passes_the_parameter_checks():
    """The gpu profile's parameters too: names and types, for every written chapter."""
    book = bk.load_book()
    for profile in ("smoke", "cpu", "gpu"):
        assert len(runner.plan(book, None, profile)) == len(book.chapters)


def test_tiny_runs_the_gpu_choices_at_smoke_sizes():
    """`--tiny`: smoke's sizes, the gpu profile's models, options and sections, then `gpu_tiny`."""
    book = bk.load_book()
    plans = dict((ch.id, params) for ch, params in runner.plan(book, None, "gpu", tiny=True))
    assert plans["08"]["ddp_backend"] == "nccl" and "run_ddp" not in plans["08"]  # smoke's switch-off is not taken
    assert plans["08"]["n_train"] == book.chapter("08").params_for("smoke")["n_train"]
    assert plans["10"]["num_beams"] == book.chapter("10").gpu_tiny["num_beams"]  # a number that picks a path
    assert "n_embd" not in plans["06"]  # a size only the gpu profile sets: the notebook's default
    assert plans["06"] == book.chapter("06").params_for("smoke")  # so chapter 06's gpu path is its smoke path
    assert plans["13"]["bible_steps"] == book.chapter("13").gpu_tiny["bible_steps"] and "use_bible" not in plans["13"]
    with pytest.raises(bk.ManifestError, match="use it with --profile gpu"):
        runner.plan(book, ["00"], "cpu", tiny=True)


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and "labkit 0.1.0" in capsys.readouterr().out


def test_calibrate_sweeps_seeds_and_proposes_targets_below_the_minimum(tmp_path):
    from labkit.book import calibrate

    (tmp_path / "book.toml").write_text(
        '[book]\ntitle = "T"\nversion = "0"\n[profiles.smoke]\noffline = true\n[[chapters]]\nid = "00"\n'
        'slug = "s"\ntitle = "S"\nnotebook = "nb/00_s.ipynb"\nstatus = "written"\ntargets.smoke = ['
        '{ metric = "acc", op = ">=", value = 0.1 }, { metric = "err", op = "<", value = 1e-6 }]\n')
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb/00_s.ipynb", "seed = 0  # the seed",
              "import labkit\nlabkit.setup(chapter='00', seed=seed, quiet=True)\n"
              "labkit.record('acc', 0.70 + 0.02 * seed)\nlabkit.record('err', 1e-9)")
    book = bk.load_book(tmp_path)
    summary = calibrate.calibrate("00", [0, 1, 2], "smoke", out_dir=tmp_path / "cal", book=book)
    rows = {r["metric"]: r for r in summary["rows"]}
    assert rows["acc"]["min"] == pytest.approx(0.70) and rows["acc"]["max"] == pytest.approx(0.74)
    assert rows["acc"]["proposed"] == 0.66  # min 0.70 minus the spread 0.04, two digits, rounded down
    assert rows["err"]["proposed"] == 1e-6 and "deterministic" in rows["err"]["why"]
    text = calibrate.format_summary(summary)
    assert '{ metric = "acc", op = ">=", value = 0.66 },  # min 0.7 / max 0.74' in text
    assert (tmp_path / "cal" / "calibrate.json").is_file()
    # results.json records the seed of each run: the one given, else the notebook's default.
    assert json.loads((tmp_path / "cal" / "seed2" / "results.json").read_text())["chapters"][0]["seed"] == 2
    assert runner.run(["00"], profile="smoke", out_dir=tmp_path / "plain", book=book, echo=False)["chapters"][0]["seed"] == 0


def test_a_chapter_without_targets_on_the_profile_is_unchecked_not_passed(tiny, tmp_path):
    res = runner.run(["00"], profile="cpu", out_dir=tmp_path, book=tiny, echo=False)
    assert res["chapters"][0]["status"] == "failed"  # cpu targets exist (and x = 3 misses y == 4): checked
    bare = bk.parse_book({"book": {"title": "t", "version": "0"}, "profiles": {"smoke": {}},
                          "chapters": [{"id": "00", "slug": "square", "title": "S", "status": "written",
                                        "notebook": "nb/00_square.ipynb"}]}, tiny.root)
    res = runner.run(["00"], profile="smoke", out_dir=tmp_path / "bare", book=bare, echo=False)
    assert res["chapters"][0]["status"] == "unchecked" and res["passed"] is False
