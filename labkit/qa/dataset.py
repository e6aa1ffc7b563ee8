"""A SQuAD-format data set with disjoint question templates and countries for train and test."""
from __future__ import annotations

import collections
import random
from typing import Any, Sequence

from .corpus import country_facts, country_passage


# Each relation: how to read the answer from the facts, and question templates. Train uses the
# first templates, test the others, so a test question is never phrased as a training one.
RELATIONS: dict[str, dict[str, Any]] = {
    "capital": {"answer": lambda f: f["capital"], "templates": [
        "What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital city of {c}.",
        "What city serves as the capital of {c}?", "Where is the capital of {c}?",
        "{c} has which city as its capital?"]},
    "population": {"answer": lambda f: f"{f['population']:,}" if f["population"] else "", "templates": [
        "What is the population of {c}?", "How many people live in {c}?", "How many inhabitants does {c} have?",
        "How large is the population of {c}?", "About how many people does {c} have?",
        "What number of people live in {c}?"]},
    "area": {"answer": lambda f: f"{f['area']:,.0f}" if f["area"] else "", "templates": [
        "What is the area of {c}?", "How many square kilometres does {c} cover?", "How big is {c} in area?",
        "What is the size of {c} in square kilometres?", "How much land area does {c} have?",
        "What area does {c} occupy?"]},
    "currency": {"answer": lambda f: f["currency"], "templates": [
        "What is the currency of {c}?", "Which currency is used in {c}?", "What money do people use in {c}?",
        "What currency does {c} use?", "What is the official currency in {c}?",
        "Which money is used in {c}?"]},
    "demonym": {"answer": lambda f: f["demonym"], "templates": [
        "What are people from {c} called?", "What is the demonym of {c}?", "What do you call a person from {c}?",
        "How are the people of {c} called?", "What is a citizen of {c} called?",
        "What word describes someone from {c}?"]},
    "language": {"answer": lambda f: f["languages"][0] if len(f["languages"]) == 1 else "", "templates": [
        "What is the official language of {c}?", "Which language is spoken in {c}?", "What language do people speak in {c}?",
        "What language is official in {c}?", "Which language do they speak in {c}?",
        "What is the main language of {c}?"]},
    "region": {"answer": lambda f: f["subregion"], "templates": [
        "In which region is {c}?", "Where is {c} located?", "Which part of the world is {c} in?",
        "In what region does {c} lie?", "What region is {c} part of?",
        "Where in the world is {c}?"]},
}
N_TRAIN_TEMPLATES = 3


def build_qa_dataset(test_fraction: float = 0.3, seed: int = 0,
                     relations: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """SQuAD-format QA examples from the country passages; train and test share no country and no template.

    Each example: id, title, context, question, answers={'text': [...], 'answer_start': [...]},
    relation, template (its index), passage_id (the corpus id that holds the answer).

    >>> ds = build_qa_dataset(); sorted(ds)
    ['test', 'train']
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    relations = list(relations or RELATIONS)
    unknown = [r for r in relations if r not in RELATIONS]
    if unknown:
        raise ValueError(f"unknown relations {unknown}; valid ones: {', '.join(RELATIONS)}")
    facts = country_facts()
    names = [f["name"] for f in facts]
    rng = random.Random(seed)
    rng.shuffle(names)
    test_names = set(names[:round(len(names) * test_fraction)])
    out: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for f in facts:
        split = "test" if f["name"] in test_names else "train"
        context = country_passage(f)
        for rel in relations:
            ans = RELATIONS[rel]["answer"](f)
            if not ans:
                continue
            # The answer is the first occurrence after the country's name (e.g. a capital that
            # shares the country's name, like Singapore, must point at the capital sentence).
            anchor = {"capital": "Its capital is ", "population": "about ", "area": "area is ",
                      "currency": "currency is the ", "demonym": "are called ", "language": "is ",
                      "region": "country in "}[rel]
            start = context.find(anchor + ans)
            if start < 0:
                continue
            start += len(anchor)
            templates = RELATIONS[rel]["templates"]
            chosen = range(N_TRAIN_TEMPLATES) if split == "train" else range(N_TRAIN_TEMPLATES, len(templates))
            for t in chosen:
                out[split].append({
                    "id": f"{f['alpha3'] or f['name']}-{rel}-{t}", "title": f["name"], "context": context,
                    "question": templates[t].format(c=f["name"]),
                    "answers": {"text": [ans], "answer_start": [start]},
                    "relation": rel, "template": t, "passage_id": f"country:{f['name']}"})
    return out


def hold_out_countries(rows: Sequence[dict[str, Any]], n: int,
                       rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Carve a validation set of `n` questions out of `rows` by whole countries, before anything trains.

    Countries are shuffled with `rng` and set aside until they hold `n` questions; the rest of the
    countries are returned as the training pool, so validation and training share no country. Raises
    a ValueError when `n` < 1 or when `rows` cannot give `n` questions and still leave a training country
    (a silently empty validation set would make every choice fall back to its default). Taught in chapter 11.

    >>> rows = [{"title": c, "question": f"{c} {i}"} for c in "ABCD" for i in range(3)]
    >>> val, pool = hold_out_countries(rows, 4, random.Random(0))
    >>> len(val), len(pool), {q["title"] for q in val} & {q["title"] for q in pool}
    (4, 6, set())
    """
    if n < 1:
        raise ValueError(f"n_val_pipeline={n}: the pipeline's choices need at least 1 validation question")
    by_country: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for q in rows:
        by_country[q["title"]].append(q)
    countries = sorted(by_country)
    rng.shuffle(countries)
    val: list[dict[str, Any]] = []
    pool: list[dict[str, Any]] = []
    for c in countries:
        (val if len(val) < n else pool).extend(by_country[c])
    if len(val) < n or not pool:
        raise ValueError(f"n_val_pipeline={n}: the training split ({len(rows)} questions, {len(countries)} countries) "
                         "cannot give that many validation questions and still leave training countries; "
                         "lower n_val_pipeline")
    return val[:n], pool
