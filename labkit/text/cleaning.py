"""Text cleaning: `fullwidth_to_halfwidth`, Unicode `normalize`, `remove_punctuation`, and `clean`,
a typical pipeline (HTML tags, URLs and e-mails out, NFKC, lower-case, punctuation out).
"""
from __future__ import annotations

import re
import unicodedata


_URL = re.compile(r"https?://\S+|www\.\S+")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_HTML = re.compile(r"<[^>]{1,200}>")
_SPACES = re.compile(r"\s+")


def fullwidth_to_halfwidth(text: str) -> str:
    """Map full-width ASCII variants (U+FF01-U+FF5E) and the ideographic space to plain ASCII.

    >>> fullwidth_to_halfwidth("ＧＰＴ－４，１２３！　ok")
    'GPT-4,123! ok'
    """
    if not isinstance(text, str):
        raise TypeError(f"fullwidth_to_halfwidth takes a str, got {type(text).__name__}")
    out = []
    for ch in text:
        code = ord(ch)
        if code == 0x3000:  # ideographic space
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:  # the full-width block is ASCII 0x21-0x7E shifted by 0xFEE0
            code -= 0xFEE0
        out.append(chr(code))
    return "".join(out)


def normalize(text: str, form: str = "NFKC", lower: bool = False) -> str:
    """Unicode normalization (NFKC by default: full-width forms, ligatures, superscripts folded).

    >>> normalize("ＡＩ ﬁnds ①²", lower=True)
    'ai finds 12'
    """
    if form not in ("NFC", "NFD", "NFKC", "NFKD"):
        raise ValueError(f"unknown normalization form {form!r}; use NFC, NFD, NFKC or NFKD")
    text = unicodedata.normalize(form, text)
    return text.lower() if lower else text


def is_punctuation(ch: str, symbols: bool = True) -> bool:
    """True for Unicode punctuation (categories P*) and, if `symbols`, symbols (S*: $, +, ©, ...).

    >>> is_punctuation("，"), is_punctuation("a"), is_punctuation("$", symbols=False)
    (True, False, False)
    """
    cat = unicodedata.category(ch)
    return cat.startswith("P") or (symbols and cat.startswith("S"))


def remove_punctuation(text: str, symbols: bool = True, replace: str = " ") -> str:
    """Replace every punctuation (and symbol) character, English or Chinese, by `replace`.

    >>> remove_punctuation("Hello, world!「你好」", replace="")
    'Hello world你好'
    """
    return "".join(replace if is_punctuation(ch, symbols) else ch for ch in text)


def clean(text: str, lower: bool = True, nfkc: bool = True, punctuation: bool = True,
          urls: bool = True, html: bool = True) -> str:
    """A typical cleaning pipeline: strip HTML tags, URLs and e-mails, NFKC, lower-case,
    drop punctuation, collapse white space.

    >>> clean("<b>Visit</b> https://x.org ,ＮＯＷ！！  I said…")
    'visit now i said'
    """
    if not isinstance(text, str):
        raise TypeError(f"clean takes a str, got {type(text).__name__}")
    if html:
        text = _HTML.sub(" ", text)
    if urls:
        text = _EMAIL.sub(" ", _URL.sub(" ", text))
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    if lower:
        text = text.lower()
    if punctuation:
        text = remove_punctuation(text)
    return _SPACES.sub(" ", text).strip()
