"""A small morphy-style `lemmatize`: irregular forms, then suffix rules checked against a lexicon.
"""
from __future__ import annotations

from collections.abc import Iterable


# A few irregular English forms; regular ones are handled by the suffix rules below.
IRREGULAR_LEMMAS: dict[str, str] = {
    "am": "be", "is": "be", "are": "be", "was": "be", "were": "be", "been": "be", "being": "be",
    "has": "have", "had": "have", "having": "have", "does": "do", "did": "do", "done": "do",
    "went": "go", "gone": "go", "goes": "go", "made": "make", "said": "say", "saw": "see", "seen": "see",
    "took": "take", "taken": "take", "came": "come", "knew": "know", "known": "know", "gave": "give",
    "given": "give", "found": "find", "thought": "think", "told": "tell", "became": "become",
    "left": "leave", "felt": "feel", "brought": "bring", "began": "begin", "begun": "begin",
    "kept": "keep", "held": "hold", "wrote": "write", "written": "write", "stood": "stand",
    "heard": "hear", "meant": "mean", "met": "meet", "paid": "pay", "spoke": "speak", "spoken": "speak",
    "led": "lead", "grew": "grow", "grown": "grow", "lost": "lose", "fell": "fall", "fallen": "fall",
    "sent": "send", "built": "build", "ran": "run", "bought": "buy", "won": "win", "taught": "teach",
    "fought": "fight", "sold": "sell", "chose": "choose", "chosen": "choose", "ate": "eat",
    "eaten": "eat", "broke": "break", "broken": "break", "drew": "draw", "drawn": "draw",
    "rose": "rise", "risen": "rise", "drove": "drive", "driven": "drive", "wore": "wear", "worn": "wear",
    "better": "good", "best": "good", "worse": "bad", "worst": "bad", "children": "child", "men": "man",
    "women": "woman", "people": "person", "mice": "mouse", "feet": "foot", "teeth": "tooth",
    "geese": "goose", "lives": "life", "wives": "wife", "knives": "knife", "leaves": "leaf",
}
# (suffix, replacement) rules tried in order, as in WordNet's morphy: strip the inflection and
# accept the first candidate that is a known word.
_SUFFIX_RULES: tuple[tuple[str, str], ...] = (
    ("ies", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("zes", "z"),
    ("ves", "f"), ("ses", "s"), ("es", "e"), ("s", ""),
    ("ied", "y"), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
    ("ier", "y"), ("iest", "y"), ("er", ""), ("est", ""), ("er", "e"), ("est", "e"),
)


def lemmatize(word: str, lexicon: Iterable[str] | None = None) -> str:
    """A small morphy-style lemmatiser: irregular table, then suffix rules checked against a lexicon.

    WordNet's lemmatiser does the same with WordNet's word list, which needs a download; here any
    set of known words (e.g. a corpus vocabulary) plays that part. Without a lexicon only the
    irregular table and the safe plural rules are applied.

    >>> lemmatize("studies", {"study"}), lemmatize("running", {"run"}), lemmatize("mice")
    ('study', 'run', 'mouse')
    """
    w = word.lower()
    if w in IRREGULAR_LEMMAS:
        return IRREGULAR_LEMMAS[w]
    if lexicon is None:
        for suf, rep in (("ies", "y"), ("sses", "ss"), ("s", "")):
            if w.endswith(suf) and len(w) > len(suf) + 2 and not w.endswith("ss"):
                return w[: -len(suf)] + rep
        return w
    lex = lexicon if isinstance(lexicon, (set, frozenset, dict)) else frozenset(lexicon)
    for suf, rep in _SUFFIX_RULES:
        if w.endswith(suf) and len(w) > len(suf) + 1:
            stem = w[: -len(suf)]
            cand = stem + rep
            if cand in lex:
                return cand
            # doubled final consonant: running -> run, stopped -> stop, bigger -> big
            if rep == "" and len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls" \
                    and stem[:-1] in lex:
                return stem[:-1]
    return w
