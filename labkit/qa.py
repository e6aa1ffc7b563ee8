"""Question answering: a retrieval corpus, BM25 and dense retrieval, SQuAD metrics, readers, RAG.

The three stages of a QA system (chapter 11): understand the question, retrieve passages
(`BM25`, `DenseRetriever`), then extract a span (`extract_answer`, a fine-tuned span model) or
generate an answer from the retrieved text (`rag_answer`, SmolLM2 with the passages in its prompt).
`normalize_answer`, `exact_match` and `f1_score` follow the official SQuAD v1.1/v2.0 script.
"""
from __future__ import annotations

import collections
import json
import math
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------
# The corpus: one passage per country written from the bundled facts, plus Wikipedia leads.
# ---------------------------------------------------------------------------------------------

_LANGUAGE_FIX = {"cnr": "Montenegrin", "rs": "Serbian"}  # codes babel's English names lack


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def country_facts() -> list[dict[str, Any]]:
    """The bundled countries, deduplicated, with codes turned into English names (babel).

    >>> f = {c["name"]: c for c in country_facts()}["Iceland"]
    >>> f["capital"], f["currency"], f["languages"]
    ('Reykjavik', 'Icelandic Króna', ['Icelandic'])
    """
    from babel import Locale

    from . import data

    en = Locale("en")
    rows = data.load("countries").to_list()
    seen: set[str] = set()
    by_alpha3 = {r["alpha3"]: r["name"] for r in rows if r["alpha3"]}
    out = []
    for r in rows:
        if r["name"] in seen:  # the package ships Curaçao twice
            continue
        seen.add(r["name"])
        langs = [_LANGUAGE_FIX.get(c) or en.languages.get(c, c) for c in r["languages"]]
        out.append({
            "name": r["name"], "alpha3": r["alpha3"], "capital": r["capital"], "region": r["region"],
            "subregion": r["subregion"], "population": r["population"], "area": r["area"],
            "demonym": r["demonym"], "languages": langs,
            "currency": en.currencies.get(r["currencies"][0], r["currencies"][0]) if r["currencies"] else "",
            "borders": [by_alpha3[b] for b in r["borders"] if b in by_alpha3],
        })
    return sorted(out, key=lambda r: r["name"])


def country_passage(f: dict[str, Any]) -> str:
    """A short encyclopedic paragraph written from one country's facts (missing facts skipped).

    >>> country_passage({"name": "Niue", "capital": "Alofi", "region": "Oceania", "subregion": "Polynesia"})
    'Niue is a country in Polynesia, part of Oceania. Its capital is Alofi.'
    """
    name = f["name"]
    s = [f"{name} is a country in {f['subregion'] or f['region']}, part of {f['region']}."]
    s.append(f"Its capital is {f['capital']}.")
    if f.get("population"):
        s.append(f"It has a population of about {f['population']:,} people.")
    if f.get("area"):
        s.append(f"Its area is {f['area']:,.0f} square kilometres.")
    if f.get("demonym"):
        s.append(f"People from {name} are called {f['demonym']}.")
    if f.get("languages"):
        s.append(f"The official language{'s are' if len(f['languages']) > 1 else ' is'} {_join(f['languages'])}.")
    if f.get("currency"):
        s.append(f"The currency is the {f['currency']}.")
    if f.get("borders"):
        s.append(f"It borders {_join(f['borders'])}.")
    return " ".join(s)


def _wiki_clean(text: str) -> str:
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def wikipedia_passages(paragraphs_per_page: int = 2, max_words: int = 120) -> list[dict[str, str]]:
    """The first paragraphs of the bundled Wikipedia pages, as retrieval distractors.

    >>> p = wikipedia_passages(1); len(p), p[0]["id"]
    (105, 'wiki:Anarchism:0')
    """
    from . import data

    out = []
    for row in data.load("wikipedia"):
        paras = [_wiki_clean(p) for p in row["text"].split("\n\n")]
        paras = [p for p in paras if len(p.split()) >= 20][:paragraphs_per_page]
        for j, p in enumerate(paras):
            out.append({"id": f"wiki:{row['title']}:{j}", "title": row["title"],
                        "text": " ".join(p.split()[:max_words])})
    return out


def countries_corpus(wikipedia: bool = True, paragraphs_per_page: int = 2) -> list[dict[str, str]]:
    """The chapter's retrieval corpus: one passage per country (id 'country:<name>') + Wikipedia.

    >>> corpus = countries_corpus(); corpus[0]["id"], corpus[0]["title"]
    ('country:Afghanistan', 'Afghanistan')
    """
    corpus = [{"id": f"country:{f['name']}", "title": f["name"], "text": country_passage(f)}
              for f in country_facts()]
    if wikipedia:
        corpus += wikipedia_passages(paragraphs_per_page)
    return corpus


# ---------------------------------------------------------------------------------------------
# A SQuAD-format data set with disjoint question templates and countries for train and test.
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# SQuAD metrics (the official script's definitions).
# ---------------------------------------------------------------------------------------------

def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the, and extra whitespace (SQuAD).

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    """
    if not isinstance(s, str):
        raise TypeError(f"normalize_answer expects a string, got {type(s).__name__}")
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("at least one gold answer is needed (SQuAD scores against the best one)")
    return golds


def exact_match(pred: str, golds: str | Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    >>> exact_match("the Paris", ["Paris", "City of Paris"])
    1.0
    """
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(g) for g in _golds(golds)))


def _f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:  # SQuAD v2: both empty counts as a match
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def f1_score(pred: str, golds: str | Iterable[str]) -> float:
    """Token-overlap F1 between prediction and the best-matching gold answer (SQuAD).

    >>> round(f1_score("the cat sat", ["a cat sat on the mat"]), 4)
    0.6667
    """
    return max(_f1(pred, g) for g in _golds(golds))


def answer_in(pred: str, golds: str | Iterable[str]) -> float:
    """1.0 if some normalised gold answer occurs inside the normalised (free-form) prediction.

    Generated answers are sentences ("The capital of Peru is Lima."), so exact match is too strict
    for them; this is the lenient accuracy used for generative and closed-book answers.

    >>> answer_in("The capital of Peru is Lima.", ["Lima"])
    1.0
    """
    p = f" {normalize_answer(pred)} "
    return float(any(f" {normalize_answer(g)} " in p for g in _golds(golds) if normalize_answer(g)))


_STOP = set("a an the of in is are was were and or to for on at by with it its this that from as be "
            "which what who whom where when how about".split())


def groundedness(answer: str, evidence: str | Sequence[str]) -> float:
    """Share of the answer's content words (stop words dropped) that occur in the evidence text.

    1.0 means every content word of the answer can be found in the retrieved passages; a low value
    flags words the model brought from elsewhere (memory or invention).

    >>> groundedness("Lima, in Peru", "Peru is a country. Its capital is Lima.")
    1.0
    """
    ev = evidence if isinstance(evidence, str) else " ".join(evidence)
    ev_words = set(normalize_answer(ev).split())
    words = [w for w in normalize_answer(answer).split() if w not in _STOP]
    if not words:
        return 0.0
    return sum(w in ev_words for w in words) / len(words)


# ---------------------------------------------------------------------------------------------
# Retrieval.
# ---------------------------------------------------------------------------------------------

def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens for BM25 (letters and digits; accents kept).

    >>> tokenize("What is the capital of Côte d'Ivoire?")
    ['what', 'is', 'the', 'capital', 'of', 'côte', 'd', 'ivoire']
    """
    return re.findall(r"\w+", text.lower())


class BM25:
    """Okapi BM25 with Lucene's non-negative idf, written out (equals `bm25s` method='lucene').

    score(q, d) = sum over query terms t of idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

    >>> bm = BM25(["the cat sat", "a dog barked", "cats and dogs"])
    >>> bm.search("dog", k=1)[0][0]
    1
    """

    def __init__(self, docs: Sequence[str], k1: float = 1.5, b: float = 0.75,
                 tokenizer: Callable[[str], list[str]] = tokenize):
        if isinstance(docs, str) or not len(docs):
            raise ValueError("BM25 needs a non-empty list of document strings")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.tokenizer = k1, b, tokenizer
        self.doc_tokens = [tokenizer(d) for d in docs]
        self.doc_len = np.array([len(t) for t in self.doc_tokens], dtype=np.float64)
        self.avgdl = float(self.doc_len.mean()) or 1.0
        self.n_docs = len(docs)
        # Inverted index: term -> (doc ids, term frequencies); scoring touches only matching docs.
        index: dict[str, dict[int, int]] = collections.defaultdict(dict)
        for i, toks in enumerate(self.doc_tokens):
            for t, c in collections.Counter(toks).items():
                index[t][i] = c
        self.index = {t: (np.fromiter(d.keys(), int), np.fromiter(d.values(), float)) for t, d in index.items()}
        self.idf = {t: math.log(1 + (self.n_docs - len(ids) + 0.5) / (len(ids) + 0.5))
                    for t, (ids, _) in self.index.items()}

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query` (a repeated query word counts once per occurrence)."""
        out = np.zeros(self.n_docs)
        norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)
        for t in self.tokenizer(query):
            if t not in self.index:
                continue
            ids, tf = self.index[t]
            out[ids] += self.idf[t] * tf * (self.k1 + 1) / (tf + norm[ids])
        return out

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        """The k best (document index, score) pairs, best first."""
        return _top_k(self.scores(query), k)


def _top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.lexsort((idx, -scores[idx]))]  # by score, ties by index: deterministic
    return [(int(i), float(scores[i])) for i in idx]


class DenseRetriever:
    """Dense retrieval: cosine similarity of MiniLM sentence embeddings (mean pooling, normalised).

    >>> dr = DenseRetriever(["Paris is in France.", "Lima is in Peru."])     # doctest: +SKIP
    >>> dr.search("Where is Lima?", k=1)[0][0]                                # doctest: +SKIP
    1
    """

    def __init__(self, docs: Sequence[str], model=None, tokenizer=None, batch_size: int = 64,
                 max_length: int = 256):
        from . import assets, models

        if isinstance(docs, str) or not len(docs):
            raise ValueError("DenseRetriever needs a non-empty list of document strings")
        if model is None or tokenizer is None:
            model, tokenizer = assets.load_model("minilm-l6", task="encoder")
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.embeddings = models.encode_sentences(list(docs), model, tokenizer, batch_size=batch_size,
                                                  max_length=max_length).numpy()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from . import models

        return models.encode_sentences(list(texts), self.model, self.tokenizer, max_length=self.max_length).numpy()

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of `query` with every document."""
        return self.embeddings @ self.encode([query])[0]

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        """The k most similar (document index, cosine) pairs, best first."""
        return _top_k(self.scores(query), k)


class HybridRetriever:
    """Reciprocal-rank fusion of several retrievers: score = sum 1 / (c + rank).

    >>> hy = HybridRetriever([BM25(["a b", "b c"]), BM25(["a b", "b c"])]); hy.search("c", k=1)[0][0]
    1
    """

    def __init__(self, retrievers: Sequence[Any], c: float = 60.0, depth: int = 50):
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers, self.c, self.depth = list(retrievers), c, depth

    def search(self, query: str, k: int = 5) -> list[tuple[int, float]]:
        fused: dict[int, float] = collections.defaultdict(float)
        for r in self.retrievers:
            for rank, (i, _) in enumerate(r.search(query, k=self.depth)):
                fused[i] += 1.0 / (self.c + rank + 1)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:k]


def recall_at_k(ranked: Sequence[Sequence[int]], gold: Sequence[int], k: int) -> float:
    """Share of questions whose gold passage is among the first k retrieved.

    >>> recall_at_k([[3, 1], [0, 2]], [1, 5], k=2)
    0.5
    """
    if len(ranked) != len(gold):
        raise ValueError(f"{len(ranked)} rankings but {len(gold)} gold ids")
    return float(np.mean([g in list(r)[:k] for r, g in zip(ranked, gold)]))


def mrr(ranked: Sequence[Sequence[int]], gold: Sequence[int]) -> float:
    """Mean reciprocal rank of the gold passage (0 when it is not retrieved at all).

    >>> mrr([[3, 1], [0, 2]], [1, 0])
    0.75
    """
    if len(ranked) != len(gold):
        raise ValueError(f"{len(ranked)} rankings but {len(gold)} gold ids")
    return float(np.mean([1.0 / (list(r).index(g) + 1) if g in list(r) else 0.0 for r, g in zip(ranked, gold)]))


# ---------------------------------------------------------------------------------------------
# Generation: closed-book and retrieval-augmented answers with a chat model (greedy).
# ---------------------------------------------------------------------------------------------

CLOSED_BOOK_PROMPT = "Answer the question in a few words.\nQuestion: {question}"
RAG_PROMPT = ("Answer the question in a few words, using only the passages below.\n\n{passages}\n\n"
              "Question: {question}")


def _generate(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[str, float]:
    """Greedy answer to one user message and its mean token probability (a confidence score)."""
    import torch

    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat template; use 'smollm2-135m-instruct'")
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(next(model.parameters()).device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                             top_p=None, top_k=None, output_scores=True, return_dict_in_generate=True,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new = out.sequences[0, inputs["input_ids"].shape[1]:]
    logps = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, new)]
    conf = math.exp(sum(logps) / len(logps)) if logps else 0.0
    return tokenizer.decode(new, skip_special_tokens=True).strip(), conf


def closed_book_answer(model, tokenizer, question: str, max_new_tokens: int = 24) -> str:
    """The chat model's answer from its own weights only (no passages), greedy.

    >>> model, tok = labkit.assets.load_model("smollm2-135m-instruct")          # doctest: +SKIP
    >>> closed_book_answer(model, tok, "What is the capital of France?")        # doctest: +SKIP
    'Paris'
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    return _generate(model, tokenizer, CLOSED_BOOK_PROMPT.format(question=question.strip()), max_new_tokens)[0]


def _passage_text(p: Any) -> str:
    return p["text"] if isinstance(p, dict) else str(p)


def rag_prompt(question: str, passages: Sequence[Any]) -> str:
    """The retrieval-augmented prompt: numbered passages, then the question.

    >>> print(rag_prompt("Capital of Peru?", ["Its capital is Lima."]).splitlines()[2])
    Passage 1: Its capital is Lima.
    """
    block = "\n\n".join(f"Passage {i + 1}: {_passage_text(p)}" for i, p in enumerate(passages))
    return RAG_PROMPT.format(passages=block, question=question.strip())


def rag_answer(model, tokenizer, question: str, retriever, passages: Sequence[Any], k: int = 3,
               max_new_tokens: int = 24) -> dict[str, Any]:
    """Retrieve k passages, put them in the prompt, answer greedily.

    Returns dict(answer=str, evidence=[{index, id, title, text, retrieval_score}, ...],
    score=mean token probability of the answer, grounded=groundedness(answer, evidence)).

    >>> out = rag_answer(model, tok, "What is the capital of Peru?", bm25, corpus)   # doctest: +SKIP
    >>> out["answer"], out["evidence"][0]["id"]                                       # doctest: +SKIP
    ('The capital of Peru is Lima.', 'country:Peru')
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    hits = retriever.search(question, k=k)
    evidence = []
    for i, s in hits:
        p = passages[i]
        evidence.append({"index": i, "id": p.get("id", str(i)) if isinstance(p, dict) else str(i),
                         "title": p.get("title", "") if isinstance(p, dict) else "",
                         "text": _passage_text(p), "retrieval_score": s})
    answer, conf = _generate(model, tokenizer, rag_prompt(question, [e["text"] for e in evidence]), max_new_tokens)
    return {"answer": answer, "evidence": evidence, "score": conf,
            "grounded": groundedness(answer, [e["text"] for e in evidence])}


# ---------------------------------------------------------------------------------------------
# Extractive reader: a span model (start/end logits) over question + context, with stride.
# ---------------------------------------------------------------------------------------------

def span_features(tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int = 192,
                  stride: int = 64, answers: Sequence[dict] | None = None) -> dict[str, Any]:
    """Tokenise (question, context) pairs into windows of `max_length` tokens that overlap by `stride`.

    A context longer than one window is cut into several features (`overflow_to_sample_mapping`
    says which example each came from). With `answers` (SQuAD dicts), each feature gets
    start/end token positions, or 0/0 (the [CLS] token) when the answer is not inside the window.

    >>> f = span_features(tok, ["Capital?"], ["Its capital is Lima."])      # doctest: +SKIP
    >>> f["input_ids"].shape                                                # doctest: +SKIP
    torch.Size([1, 12])
    """
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    if stride >= max_length // 2:
        raise ValueError(f"stride ({stride}) must be well below max_length ({max_length}): it is the overlap")
    enc = tokenizer([q.strip() for q in questions], list(contexts), truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="longest", return_tensors="pt")
    enc["sequence_ids"] = [enc.sequence_ids(i) for i in range(len(enc["input_ids"]))]
    if answers is not None:
        starts, ends = [], []
        for i, offsets in enumerate(enc["offset_mapping"].tolist()):
            ans = answers[enc["overflow_to_sample_mapping"][i]]
            a0 = ans["answer_start"][0]
            a1 = a0 + len(ans["text"][0])
            seq = enc["sequence_ids"][i]
            ctx = [j for j, s in enumerate(seq) if s == 1]
            if offsets[ctx[0]][0] > a0 or offsets[ctx[-1]][1] < a1:
                starts.append(0), ends.append(0)  # answer not (wholly) in this window
                continue
            s = next(j for j in ctx if offsets[j][1] > a0)
            e = next(j for j in reversed(ctx) if offsets[j][0] < a1)
            starts.append(s), ends.append(e)
        import torch

        enc["start_positions"] = torch.tensor(starts)
        enc["end_positions"] = torch.tensor(ends)
    return enc


def best_spans(start_logits, end_logits, features: dict[str, Any], contexts: Sequence[str],
               max_answer_tokens: int = 30, n_best: int = 20) -> list[dict[str, Any]]:
    """Post-process logits into one answer per example: the best (start <= end) span inside the context.

    Score = start logit + end logit, compared across all windows of an example; spans that cross
    the question or padding, run backwards, or exceed `max_answer_tokens` are skipped.
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    best: dict[int, dict[str, Any]] = {}
    offsets_all = features["offset_mapping"].tolist()
    for i in range(len(start_logits)):
        ex = int(features["overflow_to_sample_mapping"][i])
        seq, offsets = features["sequence_ids"][i], offsets_all[i]
        s_idx = np.argsort(start_logits[i])[::-1][:n_best]
        e_idx = np.argsort(end_logits[i])[::-1][:n_best]
        for s in s_idx:
            if seq[s] != 1:
                continue
            for e in e_idx:
                if seq[e] != 1 or e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = start_logits[i, s] + end_logits[i, e]
                if ex not in best or score > best[ex]["score"]:
                    c0, c1 = offsets[s][0], offsets[e][1]
                    best[ex] = {"answer": contexts[ex][c0:c1], "score": float(score), "start": c0, "end": c1}
    return [best.get(j, {"answer": "", "score": float("-inf"), "start": 0, "end": 0}) for j in range(len(contexts))]


def predict_spans(model, tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int = 192,
                  stride: int = 64, batch_size: int = 32, max_answer_tokens: int = 30,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Best answer span of each (question, context) pair with a question-answering model.

    >>> predict_spans(reader, tok, ["What is the capital of Peru?"], [peru_passage])[0]["answer"]  # doctest: +SKIP
    'Lima'
    """
    import torch

    if isinstance(questions, str) or isinstance(contexts, str):
        raise TypeError("predict_spans takes lists of questions and contexts")
    feats = span_features(tokenizer, questions, contexts, max_length, stride)
    device = next(model.parameters()).device
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats]
    starts, ends = [], []
    rng = range(0, len(feats["input_ids"]), batch_size)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc="reading", leave=False)
    model.eval()
    with torch.inference_mode():
        for i in rng:
            out = model(**{k: feats[k][i:i + batch_size].to(device) for k in keys})
            starts.append(out.start_logits.float().cpu()), ends.append(out.end_logits.float().cpu())
    return best_spans(torch.cat(starts).numpy(), torch.cat(ends).numpy(), feats, contexts, max_answer_tokens)


def train_reader(model, tokenizer, examples: Sequence[dict[str, Any]], epochs: int = 2, batch_size: int = 16,
                 lr: float = 1e-4, max_length: int = 192, stride: int = 64, warmup: float = 0.1,
                 seed: int = 0, head_lr_mult: float = 10.0, progress: bool = True) -> list[float]:
    """Fine-tune a span model on SQuAD-format examples (AdamW, linear warm-up and decay); returns losses.

    The loss is the mean of the start and end cross-entropies, the same as the Hugging Face
    `...ForQuestionAnswering` heads compute from start_positions/end_positions.

    >>> reader, tok = labkit.assets.load_model("minilm-l6", task="question-answering")   # doctest: +SKIP
    >>> losses = train_reader(reader, tok, build_qa_dataset()["train"][:200], epochs=1)   # doctest: +SKIP
    """
    import torch

    if not examples:
        raise ValueError("train_reader needs at least one example")
    feats = span_features(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples],
                          max_length, stride, answers=[e["answers"] for e in examples])
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
            if k in feats]
    n = len(feats["input_ids"])
    steps = epochs * math.ceil(n / batch_size)
    # The span head starts from random weights: a larger step size lets it catch up with the
    # pretrained encoder within the few hundred steps a CPU budget allows.
    head = [p for n, p in model.named_parameters() if n.startswith("qa_outputs")]
    body = [p for n, p in model.named_parameters() if not n.startswith("qa_outputs")]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": lr * head_lr_mult}],
                            weight_decay=0.01)
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm))))
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="fine-tuning reader", leave=False)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            batch = {k: feats[k][idx].to(device) for k in keys}
            # Trim the padding shared by the whole batch: shorter sequences, faster steps.
            width = int(batch["attention_mask"].sum(1).max())
            batch = {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return losses


# ---------------------------------------------------------------------------------------------
# The full pipeline and evaluation on the reader's own questions.
# ---------------------------------------------------------------------------------------------

@dataclass
class QAPipeline:
    """Question in; answer, evidence and score out: retrieve k passages, read a span from each.

    The answer is the best-scoring span over the k passages: its start + end logits, minus
    `rank_penalty` for each place its passage is below the first retrieved one (0: the reader alone
    decides; large: only the top passage counts). A reader trained on gold passages only has never
    learnt to tell a look-alike passage from the right one, so the retriever's ranking is evidence
    too; choose `rank_penalty` on held-out questions (chapter 11 does). `score` is the winner's
    softmax probability among the k candidates, so it reads as a confidence.

    >>> qa_fn = QAPipeline(retriever, corpus, reader, reader_tok)          # doctest: +SKIP
    >>> qa_fn("What is the capital of Peru?")["answer"]                    # doctest: +SKIP
    'Lima'
    """

    retriever: Any
    passages: Sequence[Any]
    reader: Any
    tokenizer: Any
    k: int = 3
    max_length: int = 192
    stride: int = 64
    rank_penalty: float = 0.0

    def __call__(self, question: str) -> dict[str, Any]:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        if not self.rank_penalty >= 0:
            raise ValueError(f"rank_penalty must be >= 0, got {self.rank_penalty}")
        hits = self.retriever.search(question, k=self.k)
        texts = [_passage_text(self.passages[i]) for i, _ in hits]
        spans = predict_spans(self.reader, self.tokenizer, [question] * len(texts), texts,
                              self.max_length, self.stride)
        logits = np.array([s["score"] for s in spans]) - self.rank_penalty * np.arange(len(spans))
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(logits))
        evidence = []
        for (i, rs), sp, p in zip(hits, spans, probs):
            src = self.passages[i]
            evidence.append({"index": i, "id": src.get("id", str(i)) if isinstance(src, dict) else str(i),
                             "title": src.get("title", "") if isinstance(src, dict) else "",
                             "text": _passage_text(src), "retrieval_score": rs, "span": sp["answer"],
                             "span_score": float(sp["score"]), "span_prob": float(p)})
        return {"answer": spans[best]["answer"], "score": float(probs[best]), "evidence": evidence,
                "best": best}


def load_questions_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read `{"question": str, "answers": [str, ...]}` per line; a bad line raises with its number.

    Blank lines are skipped. Extra keys are kept.

    >>> load_questions_jsonl("my_questions.jsonl")[0]["answers"]          # doctest: +SKIP
    ['Lima']
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"eval_jsonl: no file {str(p)!r}; give the path of a file with one "
                                '{"question": ..., "answers": [...]} object per line')
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{p.name}, line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno}): {line[:80]!r}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object like "
                             f'{{"question": "...", "answers": ["..."]}}, got {type(obj).__name__}')
        missing = [k for k in ("question", "answers") if k not in obj]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}; each line needs "
                             f'"question" (a string) and "answers" (a list of strings)')
        q, a = obj["question"], obj["answers"]
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"{where}: \"question\" must be a non-empty string, got {q!r}")
        if isinstance(a, str):
            raise ValueError(f"{where}: \"answers\" must be a list of strings: write [{a!r}], not {a!r}")
        if not isinstance(a, list) or not a or not all(isinstance(x, str) and x.strip() for x in a):
            raise ValueError(f"{where}: \"answers\" must be a non-empty list of non-empty strings, got {a!r}")
        out.append(obj)
    if not out:
        raise ValueError(f"{p.name}: no questions found (the file is empty)")
    return out


def evaluate_pipeline(pipeline: Callable[[str], dict[str, Any]], questions: Sequence[dict[str, Any]],
                      progress: bool = False) -> dict[str, Any]:
    """Run the pipeline over {"question", "answers"} items: accuracy (normalised EM), F1, per-item rows.

    >>> evaluate_pipeline(qa_fn, [{"question": "Capital of Peru?", "answers": ["Lima"]}])["accuracy"]  # doctest: +SKIP
    1.0
    """
    rows = []
    it = questions
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(questions, desc="questions", leave=False)
    for q in it:
        out = pipeline(q["question"])
        rows.append({"question": q["question"], "answers": q["answers"], "prediction": out["answer"],
                     "score": out["score"], "source": out["evidence"][out.get("best", 0)]["id"],
                     "em": exact_match(out["answer"], q["answers"]), "f1": f1_score(out["answer"], q["answers"])})
    return {"accuracy": float(np.mean([r["em"] for r in rows])), "f1": float(np.mean([r["f1"] for r in rows])),
            "rows": rows}


def qa_widget(pipeline: Callable[[str], dict[str, Any]], question: str = "What is the capital of Peru?"):
    """A small front: a question box, an Ask button, and the answer with its evidence (ipywidgets).

    Without ipywidgets it returns None; call the pipeline directly instead.

    >>> qa_widget(QAPipeline(retriever, corpus, reader, tok))            # doctest: +SKIP
    """
    try:
        import ipywidgets as w
    except ImportError:
        return None
    box = w.Text(value=question, description="Question", layout=w.Layout(width="70%"))
    button = w.Button(description="Ask", button_style="primary")
    out = w.Output()

    def ask(_=None):
        out.clear_output()
        with out:
            r = pipeline(box.value)
            print(f"answer: {r['answer']!r}   (confidence {r['score']:.2f})")
            for e in r["evidence"]:
                print(f"- {e['id']}  span {e.get('span', '')!r}  p={e.get('span_prob', 0):.2f}: {e['text'][:120]}...")

    button.on_click(ask)
    return w.VBox([w.HBox([box, button]), out])
