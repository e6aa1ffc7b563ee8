"""The full pipeline (retriever + reader) and evaluation on the reader's own questions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .metrics import exact_match, f1_score
from .passages import _evidence, _passage_text
from .reader import predict_spans


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
        evidence = [{**_evidence(self.passages, i, rs), "span": sp["answer"], "span_score": float(sp["score"]),
                     "span_prob": float(p)} for (i, rs), sp, p in zip(hits, spans, probs)]
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
