"""labkit.kg: the country graph, graph queries, multi-hop questions, relation extraction, reader files."""
import json

import pytest

from labkit import kg

FACTS = [
    {"name": "Peru", "capital": "Lima", "currency": "Peruvian Sol", "languages": ["Spanish", "Quechua"],
     "borders": ["Chile", "Bolivia"], "subregion": "South America"},
    {"name": "Chile", "capital": "Santiago", "currency": "Chilean Peso", "languages": ["Spanish"],
     "borders": ["Peru", "Bolivia"], "subregion": "South America"},
    {"name": "Bolivia", "capital": "Sucre", "currency": "Boliviano", "languages": ["Spanish"],
     "borders": ["Peru", "Chile"], "subregion": "South America"},
    {"name": "Luxembourg", "capital": "Luxembourg", "currency": "Euro", "languages": ["French"],
     "borders": [], "subregion": "Western Europe"},
]


@pytest.fixture(scope="module")
def g():
    return kg.country_graph(FACTS)


def test_graph_structure(g):
    assert g.number_of_nodes() == 4 + 4 + 4 + 3 + 2  # countries, cities, currencies, languages, regions
    assert kg.objects(g, "Peru", "language") == ["Quechua", "Spanish"]
    assert kg.objects(g, "Luxembourg", "capital") == ["Luxembourg"]  # city and country are distinct nodes
    assert kg.countries_with(g, "language", "spanish") == {"Peru", "Chile", "Bolivia"}
    assert kg.objects(g, "Atlantis", "capital") == []


def test_run_query_intersects_conditions(g):
    q = {"ret": "capital", "where": [["borders", "Chile"], ["currency", "Boliviano"]]}
    assert kg.run_query(g, q) == ["Sucre"]
    assert kg.run_query(g, {"ret": "country", "where": [["borders", "Bolivia"]]}) == ["Chile", "Peru"]
    assert kg.run_query(g, {"ret": "currency", "where": [["capital", "Lima"]]}) == ["Peruvian Sol"]
    assert kg.run_query(g, {"ret": "capital", "where": [["country", "Atlantis"]]}) == []


@pytest.mark.parametrize("bad, message", [
    ({"ret": "capital"}, "keys 'ret' and 'where'"),
    ({"ret": "mayor", "where": [["country", "Peru"]]}, "unknown return relation"),
    ({"ret": "capital", "where": []}, "non-empty list"),
    ({"ret": "capital", "where": [["country"]]}, "pair of strings"),
    ({"ret": "capital", "where": [["size", "big"]]}, "unknown condition relation"),
])
def test_bad_queries(g, bad, message):
    with pytest.raises(kg.QueryError, match=message):
        kg.run_query(g, bad)


def test_parse_and_format_round_trip():
    q = kg.parse_query("capital WHERE borders = Chile AND currency = 'Boliviano'.\nmore text")
    assert q == {"ret": "capital", "where": [["borders", "Chile"], ["currency", "Boliviano"]]}
    assert kg.parse_query(kg.format_query(q)) == q
    for bad in ("the capital is Lima", "capital WHERE borders Chile", ""):
        with pytest.raises(kg.QueryError):
            kg.parse_query(bad)


def test_make_questions_have_unique_answers(g):
    qs = kg.make_questions(g, n_per_template=5, seed=0)
    assert {q["hops"] for q in qs} == {1, 2}
    for q in qs:
        assert kg.run_query(g, q["query"]) == q["answers"]
        assert kg.run_query(g, {"ret": "country", "where": q["query"]["where"]}) == [q["country"]]
    two = [q for q in qs if q["template"] == "capital_border_currency"]
    # borders Chile and uses the Boliviano -> Bolivia (Peru also borders Chile but uses the Sol)
    assert any(q["answers"] == ["Sucre"] for q in two)


def test_cooccurrences_and_patterns(g):
    texts = [("page", "Santiago is the capital of Chile. Peru borders Chile. Lima is far from Chile.")]
    rows = kg.cooccurrences(texts, g, "capital")
    labelled = {(r["country"], r["object"]): r["label"] for r in rows}
    assert labelled[("Chile", "Santiago")] == 1 and labelled[("Chile", "Lima")] == 0
    picked = [r for r in rows if kg.pattern_relation(r, "capital")]
    assert [(r["country"], r["object"]) for r in picked] == [("Chile", "Santiago")]
    borders = kg.cooccurrences(texts, g, "borders")
    assert [(r["country"], r["object"], r["label"]) for r in borders] == [("Peru", "Chile", 1)]  # each pair once


def test_normalize_and_answer_match():
    assert kg.normalize("The Icelandic Króna!") == "icelandic krona"
    assert kg.answer_match(["Sucre", "La Paz"], ["la paz"]) == 1.0
    assert kg.answer_match([], ["Lima"]) == 0.0


def _write(tmp_path, text):
    p = tmp_path / "q.jsonl"
    p.write_text(text, encoding="utf-8")
    return p


def test_read_kgqa_jsonl_good(tmp_path):
    rows = kg.read_kgqa_jsonl(_write(tmp_path, json.dumps({"question": "Capital of Peru?", "answers": ["Lima"]}) + "\n"))
    assert rows == [{"question": "Capital of Peru?", "answers": ["Lima"], "line": 1}]


@pytest.mark.parametrize("content, message", [
    ('{"question": "a?", "answers": ["b"]}\n{"question": \n', "line 2: not valid JSON"),
    ('{"question": "a?"}\n', "line 1: missing field 'answers'"),
    ('{"question": 5, "answers": ["b"]}\n', "line 1: field 'question' must be a non-empty string"),
    ('{"question": "a?", "answers": "b"}\n', "line 1: field 'answers' must be a non-empty list"),
    ('{"question": "a?", "answers": []}\n', "line 1: field 'answers' must be a non-empty list"),
    ('"just a string"\n', "expected a JSON object"),
    ("", "has no JSON lines"),
])
def test_read_kgqa_jsonl_bad(tmp_path, content, message):
    with pytest.raises(kg.KgqaFileError, match=message):
        kg.read_kgqa_jsonl(_write(tmp_path, content))


def test_read_kgqa_jsonl_missing(tmp_path):
    with pytest.raises(kg.KgqaFileError, match="no file"):
        kg.read_kgqa_jsonl(tmp_path / "nope.jsonl")


def test_link_query_repairs_relations(g):
    fixed = kg.link_query(g, {"ret": "capital", "where": [["region", "Chile"], ["currency", "Boliviano"]]})
    assert fixed["where"] == [["borders", "Chile"], ["currency", "Boliviano"]]
    assert kg.run_query(g, fixed) == ["Sucre"]
    assert kg.link_query(g, {"ret": "currency", "where": [["currency", "Peru"]]})["where"] == [["country", "Peru"]]
    unknown = {"ret": "capital", "where": [["country", "Atlantis"]]}
    assert kg.link_query(g, unknown) == unknown
