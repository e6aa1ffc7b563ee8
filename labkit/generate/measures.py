"""Measures of generated text: `distinct_n`, `repetition_rate` (over `words`) and
`continuation_nats`, the nats of a continuation under the raw model.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import torch

from .decoding import _check_ids


_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the units of `distinct_n` and `repetition_rate`.

    >>> words("The sea, the SEA!")
    ['the', 'sea', ',', 'the', 'sea', '!']
    """
    return _WORD.findall(text.lower())


def _ngrams(units: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams / all n-grams, over all texts together.

    1.0 means no n-gram occurs twice anywhere; low values mean the texts repeat themselves or each other.

    >>> distinct_n(["a b a b", "a b c"], n=2)   # a-b, b-a, a-b, a-b, b-c: 3 distinct of 5
    0.6
    """
    if isinstance(texts, str):
        raise TypeError("distinct_n takes a list of texts; wrap a single text in [...]")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for t in texts for g in _ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_rate(texts: Iterable[str], n: int = 2) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text, averaged over texts.

    This is 1 - distinct-n computed inside each text: 0 means no text repeats itself.

    >>> round(repetition_rate(["a b a b", "a b c"], n=2), 4)   # (1 - 2/3 + 0) / 2
    0.1667
    """
    if isinstance(texts, str):
        raise TypeError("repetition_rate takes a list of texts; wrap a single text in [...]")
    rates = []
    for t in texts:
        grams = _ngrams(words(t), n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else float("nan")


@torch.inference_mode()
def continuation_nats(model, prompt_ids: torch.Tensor, new_tokens: Sequence[int]) -> tuple[float, int]:
    """Total nats of `new_tokens` under the model given the prompt (the raw model, no processors).

    exp(nats / n) is the perplexity of the continuation: how surprised the model itself is by what
    a decoder made it say.

    >>> nats, n = continuation_nats(model, ids, out.new_tokens[0])   # doctest: +SKIP
    >>> labkit.evaluate.perplexity(nats, n)                          # doctest: +SKIP
    """
    prompt_ids = _check_ids(prompt_ids)
    if prompt_ids.shape[0] != 1:
        raise ValueError("continuation_nats scores one prompt at a time")
    new = torch.as_tensor(list(new_tokens), dtype=torch.long, device=prompt_ids.device)[None]
    if new.shape[1] == 0:
        return 0.0, 0
    full = torch.cat([prompt_ids, new], dim=1)
    logits = model(input_ids=full).logits[0, prompt_ids.shape[1] - 1:-1].float()
    lp = torch.log_softmax(logits, dim=-1).gather(1, new[0][:, None]).squeeze(1)
    return float(-lp.sum()), new.shape[1]
