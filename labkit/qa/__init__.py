"""Question answering: a retrieval corpus, BM25 and dense retrieval, SQuAD metrics, readers, RAG.

The three stages of a QA system (chapter 11): understand the question, retrieve passages, then
extract a span with a fine-tuned span model or generate an answer from the retrieved text.
One module per idea:
- `corpus`: one passage per country written from the bundled facts, plus Wikipedia leads;
- `dataset`: a SQuAD-format data set whose train and test share no country and no template, and
  `hold_out_countries`, the validation set carved out of the training split by whole countries;
- `metrics`: `normalize_answer`, `exact_match`, `f1_score` (the official SQuAD v1.1/v2.0 script),
  `answer_in` and `groundedness` for free-form answers;
- `retrieval`: `BM25`, `DenseRetriever`, `HybridRetriever` (reciprocal-rank fusion), `recall_at_k`, `mrr`;
- `generation`: closed-book and retrieval-augmented answers with a chat model (`rag_answer`);
- `reader`: the extractive span model (`span_features`, `best_spans`, `predict_spans`, `train_reader`);
- `pipeline`: retriever + reader (`QAPipeline`), evaluation on your own questions, a widget;
- `passages`: how a passage is read and cited as evidence (shared by `generation` and `pipeline`).
Everything is re-exported here: `from labkit import qa; qa.BM25(...)`.
"""
from .corpus import country_facts, country_passage, _wiki_clean, wikipedia_passages, countries_corpus
from .dataset import RELATIONS, N_TRAIN_TEMPLATES, build_qa_dataset, hold_out_countries
from .metrics import normalize_answer, exact_match, f1_score, answer_in, groundedness
from .retrieval import tokenize, BM25, DenseRetriever, HybridRetriever, recall_at_k, mrr
from .generation import CLOSED_BOOK_PROMPT, RAG_PROMPT, closed_book_answer, rag_prompt, rag_answer
from .reader import span_features, best_spans, predict_spans, train_reader
from .pipeline import QAPipeline, load_questions_jsonl, evaluate_pipeline, qa_widget


__all__ = [
    "country_facts", "country_passage", "wikipedia_passages", "countries_corpus", "RELATIONS",
    "N_TRAIN_TEMPLATES", "build_qa_dataset", "hold_out_countries", "normalize_answer", "exact_match", "f1_score", "answer_in",
    "groundedness", "tokenize", "BM25", "DenseRetriever", "HybridRetriever", "recall_at_k", "mrr",
    "CLOSED_BOOK_PROMPT", "RAG_PROMPT", "closed_book_answer", "rag_prompt", "rag_answer", "span_features",
    "best_spans", "predict_spans", "train_reader", "QAPipeline", "load_questions_jsonl",
    "evaluate_pipeline", "qa_widget",
]
