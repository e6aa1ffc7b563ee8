"""Translation scores: `corpus_bleu` written out (equal to `sacrebleu`), `sacre_bleu`, `chrf`,
`exact_match`.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence


def _tokenizer(tokenize: str) -> Callable[[str], str]:
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize).tokenizer


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a",
                max_order: int = 4) -> float:
    """Corpus BLEU (0-100) written out: BP * exp(mean_n log p_n), as sacrebleu computes it.

    p_n = clipped n-gram matches / hypothesis n-grams, summed over the corpus; BP = exp(1 - r/c)
    when the c hypothesis tokens are fewer than the r reference tokens. A zero p_n is replaced by
    1 / (2^k * total_n) for the k-th such order (sacrebleu's default 'exp' smoothing).

    >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
    """
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    tok = _tokenizer(tokenize)
    correct, total = [0] * max_order, [0] * max_order
    sys_len = ref_len = 0
    for h, r in zip(hypotheses, references):
        hw, rw = tok(h.strip()).split(), tok(r.strip()).split()
        sys_len, ref_len = sys_len + len(hw), ref_len + len(rw)
        for n in range(1, max_order + 1):
            hc = Counter(tuple(hw[i:i + n]) for i in range(len(hw) - n + 1))
            rc = Counter(tuple(rw[i:i + n]) for i in range(len(rw) - n + 1))
            correct[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())  # clipped by the reference count
            total[n - 1] += max(len(hw) - n + 1, 0)
    if not any(correct):
        return 0.0
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    log_p, smooth = 0.0, 1.0
    for c, t in zip(correct, total):
        if t == 0:
            return 0.0
        if c == 0:
            smooth *= 2
            p = 1 / (smooth * t)
        else:
            p = c / t
        log_p += math.log(p)
    return 100 * bp * math.exp(log_p / max_order)


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """sacrebleu's corpus BLEU (one reference per sentence); use tokenize='zh' for Chinese.

    >>> round(sacre_bleu(["a b c d"], ["a b c d"]), 6)
    100.0
    """
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's chrF (character n-gram F-score, 0-100): credit for partly right words.

    >>> chrf(["vingt et un"], ["vingt et un"])
    100.0
    """
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of outputs equal to the reference (white space normalised).

    >>> exact_match(["vingt et un", "deux"], ["vingt  et un", "trois"])
    0.5
    """
    hypotheses, references = list(hypotheses), list(references)  # also accepts pandas Series
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references (> 0); got {len(hypotheses)} and {len(references)}")
    norm = lambda s: " ".join(s.split())  # noqa: E731
    return sum(norm(h) == norm(r) for h, r in zip(hypotheses, references)) / len(references)
