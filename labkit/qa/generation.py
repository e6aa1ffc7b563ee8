"""Generation: closed-book and retrieval-augmented answers with a chat model (greedy)."""
from __future__ import annotations

from typing import Any, Sequence

from ..generate import chat
from .metrics import groundedness
from .passages import _evidence, _passage_text


CLOSED_BOOK_PROMPT = "Answer the question in a few words.\nQuestion: {question}"
RAG_PROMPT = ("Answer the question in a few words, using only the passages below.\n\n{passages}\n\n"
              "Question: {question}")


def closed_book_answer(model, tokenizer, question: str, max_new_tokens: int = 24) -> str:
    """The chat model's answer from its own weights only (no passages), greedy.

    >>> model, tok = labkit.assets.load_model("smollm2-135m-instruct")          # doctest: +SKIP
    >>> closed_book_answer(model, tok, "What is the capital of France?")        # doctest: +SKIP
    'Paris'
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    return chat(model, tokenizer, CLOSED_BOOK_PROMPT.format(question=question.strip()), max_new_tokens)


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
    evidence = [_evidence(passages, i, s) for i, s in hits]
    answer, conf = chat(model, tokenizer, rag_prompt(question, [e["text"] for e in evidence]), max_new_tokens,
                        confidence=True)
    return {"answer": answer, "evidence": evidence, "score": conf,
            "grounded": groundedness(answer, [e["text"] for e in evidence])}
