"""Streaming: `stream` yields the text of a generation as it grows.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .decoding import _check_ids, generate


def stream(model, tokenizer, input_ids: torch.Tensor, skip_special_tokens: bool = True,
           **settings) -> Iterator[str]:
    """Yield the generated text piece by piece while `generate` runs (batch of one prompt).

    The whole continuation is decoded again at every step and only the new suffix is yielded: a
    token can be half a character (UTF-8 bytes split over two tokens, shown as U+FFFD) or change
    how the previous token is decoded, so pieces are held back until they are final.

    >>> for piece in stream(model, tok, ids, max_new_tokens=20): print(piece, end="")   # doctest: +SKIP
    """
    import queue
    import threading

    input_ids = _check_ids(input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError(f"stream takes one prompt (batch of 1), got a batch of {input_ids.shape[0]}")
    pieces: queue.Queue = queue.Queue()
    state = {"ids": [], "shown": 0}
    done = object()

    def on_token(step, nxt):
        state["ids"].append(int(nxt[0]))
        text = tokenizer.decode(state["ids"], skip_special_tokens=skip_special_tokens)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return
        if len(text) > state["shown"]:
            pieces.put(text[state["shown"]:])
            state["shown"] = len(text)

    result: dict = {}

    def run():
        try:
            result["out"] = generate(model, input_ids, tokenizer=tokenizer, on_token=on_token, **settings)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            result["error"] = e
        finally:
            pieces.put(done)

    # The model runs in a thread so the caller receives each piece as soon as it exists (as with
    # transformers' TextIteratorStreamer); torch releases the GIL inside its kernels.
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    while (item := pieces.get()) is not done:
        yield item
    worker.join()
    if "error" in result:
        raise result["error"]
    out = result["out"]
    final = tokenizer.decode(out.new_tokens[0], skip_special_tokens=skip_special_tokens)
    if len(final) > state["shown"]:  # whatever was held back at the end
        yield final[state["shown"]:]
