"""Translation by prompting a chat LLM: zero- or few-shot, the shots given as earlier turns.
"""
from __future__ import annotations

from collections.abc import Sequence

from .numbers_dates import LANG_NAMES


def llm_translate(model, tokenizer, text: str, src_lang: str = "en", tgt_lang: str = "fr",
                  shots: Sequence[tuple[str, str]] = (), max_new_tokens: int = 48) -> str:
    """Ask a chat model for a translation; `shots` are (source, target) examples given as earlier turns.

    Zero-shot with no shots, few-shot with some. The first line of the answer is kept.

    >>> llm_translate(model, tok, "twenty-one", "en", "fr", shots=[("two", "deux")])   # doctest: +SKIP
    'vingt et un'
    """
    from ..generate import chat

    for lang in (src_lang, tgt_lang):
        if lang not in LANG_NAMES:
            raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANG_NAMES)}")
    ask = (f"Translate this {LANG_NAMES[src_lang]} text into {LANG_NAMES[tgt_lang]}. "
           "Answer with the translation only.\n{}")
    messages: list[dict[str, str]] = []
    for s, t in shots:
        messages += [{"role": "user", "content": ask.format(s)}, {"role": "assistant", "content": t}]
    messages.append({"role": "user", "content": ask.format(text)})
    answer = chat(model, tokenizer, messages, max_new_tokens=max_new_tokens)
    lines = [line for line in answer.splitlines() if line.strip()]
    return lines[0].strip().strip('"“”') if lines else ""
