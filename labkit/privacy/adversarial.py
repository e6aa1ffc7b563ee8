"""Attacks on a deployed classifier with adversarial text: `greedy_char_attack` with the edits it
was built against (`char_edits`) and edits of other kinds held out from the defence's design
(`heldout_char_edits`); the defence `normalize_text`, written against the first kind.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable

import numpy as np


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def normalize_text(text: str, drop_spaces: bool = True) -> str:
    """Undo cheap evasions: NFKC (full-width -> ASCII, compatibility forms), invisible characters, spaces.

    >>> normalize_text("ｂａｄ\u200b 书")
    'bad书'
    """
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    return re.sub(r"\s+", "", text) if drop_spaces else text


def char_edits(text: str) -> list[str]:
    """Every single-edit variant: an invisible character or a space after a position, full-width ASCII.

    >>> len(char_edits("ab!"))  # 2 positions x 2 insertions + 3 full-width swaps
    7
    """
    out = []
    for i in range(1, len(text)):
        out.append(text[:i] + "\u200b" + text[i:])
        out.append(text[:i] + " " + text[i:])
    for i, c in enumerate(text):
        if "!" <= c <= "~":  # ASCII -> its full-width twin (U+FF01..U+FF5E), which looks the same
            out.append(text[:i] + chr(ord(c) + 0xFEE0) + text[i + 1:])
    return out


_HELDOUT_INSERTS = ("\u200e", "\u00b7")  # a left-to-right mark (invisible) and a middle dot


def heldout_char_edits(text: str) -> list[str]:
    """Edits of kinds `normalize_text` was not written for: a left-to-right mark (invisible, but not on
    its list) or a middle dot after a position. Insertions only, so the text still reads the same.

    >>> heldout_char_edits("ab")
    ['a\u200eb', 'a·b']
    """
    return [text[:i] + c + text[i:] for i in range(1, len(text)) for c in _HELDOUT_INSERTS]


def greedy_char_attack(predict_proba: Callable[[list[str]], np.ndarray], text: str, label: int,
                       max_edits: int = 5, edits: Callable[[str], list[str]] = char_edits) -> tuple[str, bool, int]:
    """Black-box greedy attack: apply, one at a time, the edit that most lowers p(true label).

    Returns (adversarial text, whether the prediction flipped, number of edits used).
    >>> # adv, flipped, n = greedy_char_attack(model_proba, "质量很好", 1, max_edits=3)
    """
    if max_edits < 1:
        raise ValueError(f"max_edits must be >= 1; got {max_edits}")
    cur = text
    for n in range(1, max_edits + 1):
        cands = edits(cur)
        if not cands:
            break
        p = predict_proba(cands)[:, label]
        cur = cands[int(p.argmin())]
        if p.min() < 0.5:
            return cur, True, n
    return cur, False, max_edits
