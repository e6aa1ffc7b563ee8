"""labkit.qa: SQuAD metrics on known cases, BM25 against bm25s and rank-bm25, the QA data set, spans."""
import math

import numpy as np
import pytest

from labkit import qa


# --- SQuAD metrics: cases worked out by hand from the official script's definitions ---------------

@pytest.mark.parametrize("raw, norm", [
    ("The Cat", "cat"),
    ("  an   apple, a pear! ", "apple pear"),
    ("Théâtre", "théâtre"),                      # accents are not punctuation
    ("the", ""),
    ("Anne-Marie's", "annemaries"),              # punctuation is deleted, not replaced by a space
    ("theatre", "theatre"),                      # 'the' only as a whole word
])
def test_normalize_answer(raw, norm):
    assert qa.normalize_answer(raw) == norm


def test_exact_match_known_cases():
    assert qa.exact_match("Paris", ["paris"]) == 1.0
    assert qa.exact_match("the Paris.", "Paris") == 1.0
    assert qa.exact_match("Paris France", ["Paris", "Lyon"]) == 0.0
    assert qa.exact_match("Lyon", ["Paris", "Lyon"]) == 1.0   # best over gold answers


def test_f1_known_cases():
    # pred {cat, sat}, gold {cat, sat, on, mat}: P = 1, R = 1/2, F1 = 2/3
    assert qa.f1_score("the cat sat", ["a cat sat on the mat"]) == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: common {big:1, dog:1}, P = 2/3, R = 1
    assert qa.f1_score("big big dog", ["big dog"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert qa.f1_score("Lima", ["Paris"]) == 0.0
    assert qa.f1_score("", [""]) == 1.0          # SQuAD v2: both empty is a match
    assert qa.f1_score("", ["Lima"]) == 0.0
    assert qa.f1_score("the capital Lima", ["Lima", "capital Lima"]) == 1.0


def test_metrics_validate_input():
    with pytest.raises(ValueError, match="gold"):
        qa.exact_match("x", [])
    with pytest.raises(TypeError):
        qa.normalize_answer(3)


def test_answer_in_and_groundedness():
    assert qa.answer_in("The capital of Peru is Lima.", ["Lima"]) == 1.0
    assert qa.answer_in("Limassol", ["Lima"]) == 0.0        # whole words only
    assert qa.groundedness("Lima", "Its capital is Lima.") == 1.0
    assert qa.groundedness("Lima and Cusco", "Its capital is Lima.") == pytest.approx(0.5)


# --- BM25 against the libraries --------------------------------------------------------------

DOCS = ["the cat sat on the mat", "a dog barked at the cat", "cats and dogs and the cat",
        "the the the", "Lima is the capital of Peru", "Peru borders Chile and Bolivia"]
QUERIES = ["cat", "the cat", "dog mat", "capital of Peru", "unknownword", "peru peru"]


def test_bm25_equals_bm25s_lucene():
    bm25s = pytest.importorskip("bm25s")
    mine = qa.BM25(DOCS, k1=1.2, b=0.75)
    ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    ref.index([qa.tokenize(d) for d in DOCS], show_progress=False)
    for q in QUERIES:
        toks = [t for t in qa.tokenize(q) if t in mine.index]
        want = ref.get_scores(toks) if toks else np.zeros(len(DOCS))
        # bm25s (like Lucene >= 8) leaves out the constant factor (k1 + 1): same ranking.
        np.testing.assert_allclose(mine.scores(q) / (1.2 + 1), want, rtol=1e-5, atol=1e-6)


def test_bm25_tf_part_equals_rank_bm25():
    rank_bm25 = pytest.importorskip("rank_bm25")
    mine = qa.BM25(DOCS)
    ref = rank_bm25.BM25Okapi([qa.tokenize(d) for d in DOCS], k1=1.5, b=0.75)
    # rank-bm25 uses idf = ln((N - df + 0.5) / (df + 0.5)) with a floor; the tf part is the same,
    # so dividing each single-term score by its own idf must agree.
    for term in ["peru", "capital", "mat", "dog"]:  # df < N/2, so rank-bm25 applies no floor
        ours = mine.scores(term) / mine.idf[term]
        theirs = ref.get_scores([term]) / ref.idf[term]
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_bm25_search_and_validation():
    bm = qa.BM25(DOCS)
    top = bm.search("capital of Peru", k=2)
    assert top[0][0] == 4 and top[0][1] > top[1][1]
    assert len(bm.search("cat", k=100)) == len(DOCS)
    with pytest.raises(ValueError):
        qa.BM25([])
    with pytest.raises(ValueError):
        bm.search("cat", k=0)


def test_recall_and_mrr():
    assert qa.recall_at_k([[3, 1, 2], [0, 2, 1]], [1, 1], k=2) == 0.5
    assert qa.mrr([[3, 1, 2], [0, 2, 1]], [1, 7]) == pytest.approx(0.25)


# --- the corpus and the data set ---------------------------------------------------------------

def test_corpus_and_dataset_are_disjoint_and_answerable():
    corpus = qa.countries_corpus()
    ids = [p["id"] for p in corpus]
    assert len(ids) == len(set(ids))
    ds = qa.build_qa_dataset(seed=0)
    tr, te = ds["train"], ds["test"]
    assert {e["title"] for e in tr}.isdisjoint({e["title"] for e in te})
    assert {e["template"] for e in tr}.isdisjoint({e["template"] for e in te})
    for e in tr[:300] + te[:300]:
        a, s = e["answers"]["text"][0], e["answers"]["answer_start"][0]
        assert e["context"][s:s + len(a)] == a
        assert e["passage_id"] in ids


def test_bm25_finds_country_passages():
    corpus = qa.countries_corpus()
    bm = qa.BM25([p["text"] for p in corpus])
    top = bm.search("What is the capital of Peru?", k=1)[0][0]
    assert corpus[top]["id"] == "country:Peru"


# --- span post-processing on hand-made logits --------------------------------------------------

def test_best_spans_picks_highest_valid_span():
    tokenizers = pytest.importorskip("tokenizers")  # noqa: F841
    from transformers import AutoTokenizer

    from labkit import assets

    try:
        tok = AutoTokenizer.from_pretrained(str(assets.path("minilm-l6")))
    except assets.AssetError as e:  # pragma: no cover
        pytest.skip(str(e))
    ctx = "Peru is a country. Its capital is Lima."
    ex = {"text": ["Lima"], "answer_start": [ctx.index("Lima")]}
    f = qa.span_features(tok, ["What is the capital of Peru?"], [ctx], answers=[ex])
    s, e = int(f["start_positions"][0]), int(f["end_positions"][0])
    start = np.full((1, f["input_ids"].shape[1]), -5.0)
    end = start.copy()
    start[0, s], end[0, e] = 3.0, 3.0
    start[0, 0], end[0, 0] = 10.0, 10.0      # [CLS] scores high but is not in the context
    out = qa.best_spans(start, end, f, [ctx])
    assert out[0]["answer"] == "Lima" and out[0]["score"] == pytest.approx(6.0)
    # a long context is split into overlapping windows and the answer is still labelled in one
    long_ctx = ("Filler sentence number one. " * 40) + ctx
    ex = {"text": ["Lima"], "answer_start": [long_ctx.index("Lima")]}
    f = qa.span_features(tok, ["What is the capital of Peru?"], [long_ctx], max_length=64, stride=16, answers=[ex])
    assert len(f["input_ids"]) > 1
    labelled = [i for i in range(len(f["input_ids"])) if int(f["start_positions"][i]) > 0]
    assert labelled
    i = labelled[-1]
    offs = f["offset_mapping"][i].tolist()
    assert long_ctx[offs[int(f["start_positions"][i])][0]:offs[int(f["end_positions"][i])][1]] == "Lima"


def test_squad_metrics_equal_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.text.squad")
    pairs = [("the cat sat", ["a cat sat on the mat"]), ("Paris", ["paris", "City of Paris"]),
             ("Lima, Peru", ["Lima"]), ("big big dog", ["big dog"]), ("Théâtre!", ["théâtre"]),
             ("an apple", ["The Apple Inc."]), ("26,023,100", ["26,023,100"]), ("x y z", ["a b"])]
    for i, (p, g) in enumerate(pairs):
        ref = tm.squad([{"prediction_text": p, "id": str(i)}],
                       [{"answers": {"answer_start": [0] * len(g), "text": g}, "id": str(i)}])
        assert qa.exact_match(p, g) * 100 == pytest.approx(float(ref["exact_match"]))
        assert qa.f1_score(p, g) * 100 == pytest.approx(float(ref["f1"]), abs=1e-4)


def test_load_questions_jsonl_reports_line_numbers(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text('{"question": "Capital of Peru?", "answers": ["Lima"]}\n\n'
                    '{"question": "Currency of Japan?", "answers": ["Yen", "Japanese Yen"]}\n', encoding="utf-8")
    assert [q["answers"][0] for q in qa.load_questions_jsonl(good)] == ["Lima", "Yen"]
    cases = {
        '{"question": "x", "answers": ["a"]}\n{"question": "y" "answers": ["b"]}\n': "line 2: not valid JSON",
        '{"question": "x", "answers": "a"}\n': "line 1: \"answers\" must be a list",
        '\n\n{"answers": ["a"]}\n': "line 3: missing key",
        '{"question": "", "answers": ["a"]}\n': "line 1: \"question\" must be a non-empty string",
        '["x", ["a"]]\n': "line 1: expected a JSON object",
        '{"question": "x", "answers": []}\n': "line 1: \"answers\" must be a non-empty list",
    }
    for text, msg in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
            qa.load_questions_jsonl(bad)
    with pytest.raises(FileNotFoundError, match="eval_jsonl"):
        qa.load_questions_jsonl(tmp_path / "missing.jsonl")


def test_every_profile_of_chapter_11_gets_a_validation_set():
    """The gpu profile once trained on the whole training split and left the validation set empty."""
    import json
    import random

    from labkit import book

    b = book.load_book()
    ch = b.chapter("11")
    cells = json.loads((b.root / ch.notebook).read_text(encoding="utf-8"))["cells"]
    defaults: dict = {}
    exec("".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"]), {}, defaults)
    train = qa.build_qa_dataset(test_fraction=defaults["test_fraction"], seed=0)["train"]
    for profile in ("smoke", "cpu", "gpu"):
        p = {**defaults, **ch.params_for(profile)}
        val, pool = qa.hold_out_countries(train, p["n_val_pipeline"], random.Random(0))
        assert len(val) == p["n_val_pipeline"] > 0 and pool, profile
        assert not {q["title"] for q in val} & {q["title"] for q in pool}
    for bad in (0, len(train)):
        with pytest.raises(ValueError, match="n_val_pipeline"):
            qa.hold_out_countries(train, bad, random.Random(0))


def test_own_questions_are_apart_from_the_data_set_and_answerable():
    """data/qa_own_questions.jsonl (chapter 11's eval_jsonl): enough questions to measure, in a reader's own
    words (no template of the data set, train or test), each gold answer written in its country's passage."""
    import re
    from pathlib import Path

    own = qa.load_questions_jsonl(Path(__file__).resolve().parents[1] / "data" / "qa_own_questions.jsonl")
    assert len(own) >= 40 and len({q["question"] for q in own}) == len(own)
    names = sorted({f["name"] for f in qa.country_facts()}, key=len, reverse=True)

    def template(q):
        for n in names:
            q = q.replace(n, "{c}")
        return " ".join(re.sub(r"[^\w{}\s]", " ", q.lower()).split())

    templates = {template(t) for spec in qa.RELATIONS.values() for t in spec["templates"]}
    assert not [q["question"] for q in own if template(q["question"]) in templates]
    passages = {p["title"]: p["text"] for p in qa.countries_corpus(wikipedia=False)}
    for q in own:
        country = next((n for n in names if n in q["question"]), None)
        if country:  # a question that names the people instead of the country has no name to look up
            assert any(a in passages[country] for a in q["answers"]), q


def test_pipeline_rank_penalty_weighs_the_retriever(monkeypatch):
    class Ranked:  # always returns passages 2, 0, 1 in that order
        def search(self, query, k=5):
            return [(2, 0.9), (0, 0.5), (1, 0.1)][:k]

    spans = [{"answer": "top", "score": 1.0}, {"answer": "second", "score": 1.5}, {"answer": "third", "score": 0.2}]
    # QAPipeline reads predict_spans from its own module, so that is where the stub goes
    monkeypatch.setattr(qa.pipeline, "predict_spans", lambda *a, **kw: spans)
    passages = [{"id": f"p{i}", "text": f"passage {i}"} for i in range(3)]
    reader_alone = qa.QAPipeline(Ranked(), passages, reader=None, tokenizer=None, k=3)
    out = reader_alone("Which?")
    assert out["answer"] == "second" and out["evidence"][out["best"]]["id"] == "p0"
    assert [e["span_score"] for e in out["evidence"]] == [1.0, 1.5, 0.2]
    with_prior = qa.QAPipeline(Ranked(), passages, reader=None, tokenizer=None, k=3, rank_penalty=1.0)
    out = with_prior("Which?")  # 1.0 vs 1.5 - 1 vs 0.2 - 2
    assert out["answer"] == "top" and out["evidence"][out["best"]]["id"] == "p2"
    assert abs(sum(e["span_prob"] for e in out["evidence"]) - 1) < 1e-9
    with pytest.raises(ValueError, match="rank_penalty"):
        qa.QAPipeline(Ranked(), passages, reader=None, tokenizer=None, rank_penalty=-1)("Which?")
