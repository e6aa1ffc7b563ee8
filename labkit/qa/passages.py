"""A passage is a dict with "text" (and optionally "id", "title") or a plain string; how answers cite one."""
from __future__ import annotations

from typing import Any, Sequence


def _passage_text(p: Any) -> str:
    return p["text"] if isinstance(p, dict) else str(p)


def _evidence(passages: Sequence[Any], i: int, retrieval_score: float) -> dict[str, Any]:
    """How an answer cites retrieved passage `i`: its index, id, title, text and retrieval score.

    `rag_answer` and `QAPipeline` both return a list of these (the pipeline adds its span).

    >>> _evidence([{"id": "country:Peru", "title": "Peru", "text": "Its capital is Lima."}], 0, 2.5)
    {'index': 0, 'id': 'country:Peru', 'title': 'Peru', 'text': 'Its capital is Lima.', 'retrieval_score': 2.5}
    >>> _evidence(["Its capital is Lima."], 0, 2.5)["id"]
    '0'
    """
    p = passages[i]
    return {"index": i, "id": p.get("id", str(i)) if isinstance(p, dict) else str(i),
            "title": p.get("title", "") if isinstance(p, dict) else "",
            "text": _passage_text(p), "retrieval_score": retrieval_score}
