"""Chinese word segmentation: `max_match` (forward, backward, bidirectional) with a dictionary, and
`segmentation_prf`, the word-level precision / recall / F1 of the SIGHAN bakeoffs.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def max_match(text: str, dictionary: Iterable[str] | Mapping[str, Any], max_len: int | None = None,
              direction: str = "forward") -> list[str]:
    """Maximum-matching word segmentation (最大匹配法) with a dictionary.

    Forward: from the left, take the longest dictionary word that starts here (a single character
    if none does). Backward: the same from the right. Bidirectional: run both and keep the one with
    fewer words, then fewer single characters, then the backward one (usually more accurate for
    Chinese).

    >>> max_match("研究生命起源", {"研究", "研究生", "生命", "起源"})
    ['研究生', '命', '起源']
    >>> max_match("研究生命起源", {"研究", "研究生", "生命", "起源"}, direction="bidirectional")
    ['研究', '生命', '起源']
    """
    if direction not in ("forward", "backward", "bidirectional"):
        raise ValueError(f"direction must be 'forward', 'backward' or 'bidirectional', not {direction!r}")
    words = dictionary if isinstance(dictionary, (set, frozenset, dict)) else frozenset(dictionary)
    if max_len is None:
        max_len = max((len(w) for w in words), default=1)
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if direction == "bidirectional":
        fw = max_match(text, words, max_len, "forward")
        bw = max_match(text, words, max_len, "backward")

        def cost(seg: list[str]) -> tuple[int, int]:
            return len(seg), sum(len(w) == 1 for w in seg)

        return fw if cost(fw) < cost(bw) else bw
    out: list[str] = []
    if direction == "forward":
        i, n = 0, len(text)
        while i < n:
            for k in range(min(max_len, n - i), 0, -1):
                if k == 1 or text[i:i + k] in words:
                    out.append(text[i:i + k])
                    i += k
                    break
        return out
    j = len(text)
    while j > 0:
        for k in range(min(max_len, j), 0, -1):
            if k == 1 or text[j - k:j] in words:
                out.append(text[j - k:j])
                j -= k
                break
    return out[::-1]


def word_spans(words: Sequence[str]) -> set[tuple[int, int]]:
    """The (start, end) character offsets of each word: the unit of segmentation scoring.

    >>> sorted(word_spans(["研究", "生命", "起源"]))
    [(0, 2), (2, 4), (4, 6)]
    """
    spans, pos = set(), 0
    for w in words:
        spans.add((pos, pos + len(w)))
        pos += len(w)
    return spans


def segmentation_prf(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Word-level precision, recall and F1 of a segmentation, summed over all sentences.

    A predicted word is correct when a gold word has exactly the same start and end.

    >>> segmentation_prf([["研究", "生命", "起源"]], [["研究生", "命", "起源"]])
    {'precision': 0.3333333333333333, 'recall': 0.3333333333333333, 'f1': 0.3333333333333333}
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but predicted has {len(predicted)}")
    tp = n_gold = n_pred = 0
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if isinstance(g, str) or isinstance(p, str):
            raise TypeError("gold and predicted are lists of sentences, each a list of words")
        if "".join(g) != "".join(p):
            raise ValueError(f"sentence {i}: the words of gold and predicted do not spell the same "
                             f"text ({''.join(g)[:30]!r} vs {''.join(p)[:30]!r})")
        gs, ps = word_spans(g), word_spans(p)
        tp += len(gs & ps)
        n_gold += len(gs)
        n_pred += len(ps)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
