import json
from pathlib import Path

import pytest

import labkit
from labkit import book as bk


def test_manifest_lists_every_chapter_once_in_order_of_ids_and_in_one_part():
    book = bk.load_book()
    assert [c.id for c in book.chapters] == [f"{i:02d}" for i in range(22)]
    in_parts = [c.id for part in book.parts for c in part.chapters]
    assert sorted(in_parts) == [c.id for c in book.chapters]
    assert [c.id for c in book.in_reading_order()] == in_parts
    assert set(book.profiles) == {"smoke", "cpu", "gpu"}
    assert all(c.status in bk.STATUSES for c in book.chapters)
    assert book.chapter("00").status == "written"
    for c in book.chapters:
        assert c.notebook == f"notebooks/{c.id}_{c.slug}.ipynb"
        assert c.title_zh, f"chapter {c.id} needs a Chinese title"


def test_written_chapters_have_targets_on_every_profile(root):
    for c in bk.load_book().chapters:
        if c.status == "written":
            assert (root / c.notebook).is_file()
            assert c.targets_for("smoke") and c.targets_for("cpu") and c.targets_for("gpu"), c.id
            # The gpu profile is the cpu profile at full scale: its targets name metrics the cpu run records.
            cpu = {t.metric for t in c.targets_for("cpu")}
            assert {t.metric for t in c.targets_for("gpu")} <= cpu, c.id
            # Minutes are measured or absent ("–" in the tables): never an estimate typed in.
            assert "smoke" in c.minutes, c.id


@pytest.mark.parametrize("key", ["0", "00", "setup", "00_setup", " 00 "])
def test_chapter_lookup_by_id_slug_or_name(key):
    assert bk.load_book().chapter(key).id == "00"


def test_unknown_chapter_and_profile_list_the_valid_names():
    book = bk.load_book()
    with pytest.raises(bk.ManifestError, match=r"unknown chapter '99'.*00 \(setup\)"):
        book.chapter("99")
    with pytest.raises(bk.ManifestError, match="valid profiles: smoke, cpu, gpu"):
        book.profile("tpu")


def _book(**chapter):
    ch = {"id": "01", "slug": "x", "title": "X", "notebook": "n.ipynb", **chapter}
    return {"book": {"title": "T", "version": "1"}, "profiles": {"smoke": {}, "cpu": {}}, "chapters": [ch]}


@pytest.mark.parametrize("chapter, message", [
    ({"targets": {"cpu": [{"metric": "a", "op": "=>", "value": 1}]}}, "op '=>' is not one of"),
    ({"targets": {"cpu": [{"metric": "a", "op": ">=", "value": "high"}]}}, "must be a number"),
    ({"targets": {"cpu": [{"metric": "a", "op": ">="}]}}, "exactly the keys"),
    ({"params": {"tpu": {"n": 1}}}, r"params for unknown profile\(s\) \['tpu'\]"),
    ({"status": "done"}, "status 'done' is not one of"),
    ({"terms": ["perplexity"]}, "terms must map English to Chinese"),
    ({"terms": {"perplexity": 1}}, "terms must map English to Chinese"),
    ({"gpu_tiny": [20]}, "gpu_tiny must be a table of parameters"),
])
def test_malformed_manifest_fails_with_a_clear_message(chapter, message):
    with pytest.raises(bk.ManifestError, match=message):
        bk.parse_book(_book(**chapter), Path("."))


def test_every_chapter_has_bilingual_key_terms(root):
    book = bk.load_book(root)
    for ch in book.chapters:
        assert ch.title_zh and len(ch.terms) >= 3, f"chapter {ch.id}: title_zh and at least 3 key terms"
        assert all(any("\u4e00" <= c <= "\u9fff" for c in zh) for zh in ch.terms.values()), ch.id
    assert bk.parse_book(_book(terms={"perplexity": "困惑度"}), Path(".")).chapters[0].terms == {"perplexity": "困惑度"}


def test_duplicate_ids_and_missing_keys_are_rejected():
    data = _book()
    data["chapters"].append(dict(data["chapters"][0]))
    with pytest.raises(bk.ManifestError, match="duplicate id"):
        bk.parse_book(data, Path("."))
    data = _book()
    del data["chapters"][0]["slug"]
    with pytest.raises(bk.ManifestError, match="missing 'slug'"):
        bk.parse_book(data, Path("."))


def test_invalid_toml_is_reported_with_the_file(tmp_path):
    (tmp_path / "book.toml").write_text("[book\ntitle=")
    with pytest.raises(bk.ManifestError, match="not valid TOML"):
        bk.load_book(tmp_path)


@pytest.mark.parametrize("op, value, actual, ok", [
    (">=", 0.9, 0.9, True), (">=", 0.9, 0.89, False), ("<=", 1e-6, 5e-7, True), (">", 0, 0, False),
    ("<", 2.0, 1.99, True), ("==", 1, 1.0, True), ("==", 1, 0, False), (">=", 0, None, False),
    (">=", 0, float("nan"), False),
])
def test_target_check(op, value, actual, ok):
    assert bk.Target("m", op, value).check(actual) is ok


def test_evaluate_targets_marks_missing_metrics_as_failed():
    rows = bk.evaluate_targets((bk.Target("a", ">=", 1), bk.Target("b", "<", 2)), {"a": 3.0})
    assert rows == [{"metric": "a", "op": ">=", "value": 1, "actual": 3.0, "passed": True},
                    {"metric": "b", "op": "<", "value": 2, "actual": None, "passed": False}]


def test_record_writes_the_side_file_and_check_targets_reads_it(tmp_path, monkeypatch, capsys):
    side = tmp_path / "m.json"
    monkeypatch.setenv(bk.ENV_METRICS, str(side))
    monkeypatch.setenv(bk.ENV_PROFILE, "smoke")
    bk.set_chapter("00")
    labkit.record("chat_answer_correct", True)
    labkit.record("cosine_similar", 0.7)
    import numpy as np

    labkit.record("cosine_gap", np.float32(0.25))
    assert json.loads(side.read_text()) == {"chat_answer_correct": 1.0, "cosine_similar": 0.7,
                                            "cosine_gap": pytest.approx(0.25)}
    table = labkit.check_targets()
    assert "chapter 00 on profile 'smoke': 2/3 targets met" in capsys.readouterr().out
    assert list(table["passed"]) == [True, True, False]
    with pytest.raises(AssertionError, match="cosine_gap > 0.3"):
        labkit.check_targets(strict=True)


@pytest.mark.parametrize("name, value, err", [("val loss", 1.0, ValueError), ("acc", "high", TypeError),
                                               ("acc", [1], TypeError)])
def test_record_rejects_bad_names_and_values(name, value, err, monkeypatch):
    monkeypatch.delenv(bk.ENV_METRICS, raising=False)
    bk.set_chapter(None)
    with pytest.raises(err):
        labkit.record(name, value)


def test_active_profile_defaults_to_cpu_and_rejects_unknown(monkeypatch):
    monkeypatch.delenv(bk.ENV_PROFILE, raising=False)
    assert bk.active_profile() == "cpu"
    monkeypatch.setenv(bk.ENV_PROFILE, "fast")
    with pytest.raises(bk.ManifestError, match="not one of smoke, cpu, gpu"):
        bk.active_profile()


def test_parts_must_name_known_chapters_exactly_once():
    base = {"book": {"title": "t", "version": "1"}, "profiles": {"cpu": {}},
            "chapters": [{"id": "00", "slug": "a", "title": "A", "notebook": "n"},
                         {"id": "01", "slug": "b", "title": "B", "notebook": "n"}]}
    book = bk.parse_book({**base, "parts": [{"title": "P", "chapters": ["01", "00"]}]}, Path("."))
    assert [c.id for c in book.in_reading_order()] == ["01", "00"]
    with pytest.raises(bk.ManifestError, match="part 'P'.*unknown chapter '07'"):
        bk.parse_book({**base, "parts": [{"title": "P", "chapters": ["00", "01", "07"]}]}, Path("."))
    with pytest.raises(bk.ManifestError, match="chapter 01 is in no part"):
        bk.parse_book({**base, "parts": [{"title": "P", "chapters": ["00"]}]}, Path("."))
    with pytest.raises(bk.ManifestError, match="chapter 00 is in two parts"):
        bk.parse_book({**base, "parts": [{"title": "P", "chapters": ["00", "01"]},
                                         {"title": "Q", "chapters": ["00"]}]}, Path("."))
    assert [p.title for p in bk.parse_book(base, Path(".")).parts] == ["Chapters"]


def test_every_profile_runs_offline_and_names_no_hub_model():
    """The gpu profile too: GPU machines may reach no network; hub ids are the reader's choice (`--hub -p ...`)."""
    import re

    book = bk.load_book()
    for name in ("smoke", "cpu", "gpu"):
        assert book.profile(name)["offline"] is True, name
    hub_id = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as on the hub
    for ch in book.chapters:
        for profile, params in ch.params.items():
            named = [f"{k}={v}" for k, v in params.items() if isinstance(v, str) and hub_id.match(v)]
            assert not named, f"chapter {ch.id} params.{profile} names hub models: {named}"


def test_hub_switch_turns_the_hub_on_for_any_profile(monkeypatch):
    from labkit.book import session

    monkeypatch.delenv(session.ENV_HUB, raising=False)
    assert session.profile_environment({"offline": True})["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv(session.ENV_HUB, "1")
    assert session.profile_environment({"offline": True})["HF_HUB_OFFLINE"] == "0"
