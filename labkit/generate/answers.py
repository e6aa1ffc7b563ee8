"""Greedy answers of a chat model, through its chat template: the book's one chat helper.

`chat` answers one conversation (optionally with a confidence score, the mean token probability);
`generate_batch` answers many prompts or conversations at once (left padding), greedy or sampled,
with a reply prefix, stop strings and per-batch logits processors.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch


def chat(model, tokenizer, messages: list[dict[str, str]] | str, max_new_tokens: int = 64,
         do_sample: bool = False, confidence: bool = False, **generate_kwargs) -> str | tuple[str, float]:
    """Answer a conversation with a chat model through its chat template (greedy by default).

    With `confidence=True` the answer comes as (text, mean probability of its tokens), a
    confidence score (chapter 11 abstains below a threshold).

    >>> chat(model, tok, "What is the capital of France?")          # doctest: +SKIP
    'The capital of France is Paris.'
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat template; use an instruct model such as "
                         "'smollm2-135m-instruct', or build the prompt text yourself")
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(next(model.parameters()).device)
    if not do_sample:
        # Greedy decoding: drop the sampling settings a generation config may carry, to avoid warnings.
        generate_kwargs.update(temperature=None, top_p=None, top_k=None)
    if confidence:
        generate_kwargs.update(output_scores=True, return_dict_in_generate=True)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **generate_kwargs)
    new = (out.sequences if confidence else out)[0, inputs["input_ids"].shape[1]:]
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    if not confidence:
        return text
    logps = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, new)]
    return text, math.exp(sum(logps) / len(logps)) if logps else 0.0


def generate_batch(model, tokenizer, prompts: Sequence[str | list[dict[str, str]]], max_new_tokens: int = 24,
                   batch_size: int = 16, system: str | None = None, progress: bool = True, *, prefix: str = "",
                   stop: Sequence[str] | None = None, return_ids: bool = False,
                   before_batch: Callable[[int, int], dict[str, Any]] | None = None,
                   **generate_kwargs) -> list[str] | list[list[int]]:
    """Answers of a chat model to many prompts, a batch at a time (left padding): the book's one batch helper.

    A prompt is one user message (after an optional `system` message) or a whole conversation (a list
    of {"role", "content"} dicts), through the chat template, as `chat` does for one conversation;
    batching makes the CPU do one forward pass per new token for many answers. Greedy unless
    `do_sample=True` is passed on to `model.generate` with the rest of `generate_kwargs`
    (`temperature`, `top_k`, `min_new_tokens`, `logits_processor`, ...).

    - `prefix` starts every reply (e.g. '{"' so the model writes JSON); it is part of the returned text.
    - `stop`: strings that end a reply; the text is cut after the first one.
    - `return_ids`: the new token ids of each reply, cut at the first end-of-sequence token, not text.
    - `before_batch(start, width)` is called just before each batch is generated, with the index of its
      first prompt and the padded prompt length (new tokens start at that column); it returns extra
      `generate` arguments for that batch (e.g. logits processors) and may seed the random generator.

    Chapter 15 scores held-out instructions with it; chapter 07 goes through the evaluation harness
    (`labkit.harness.generate_answers`), which calls it; chapters 17, 19 and 21 pass conversations,
    prefixes, stop strings and samplers.

    >>> generate_batch(model, tok, ["What is the capital of France?"])   # doctest: +SKIP
    ['The capital of France is Paris.']
    """
    from tqdm.auto import tqdm

    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt in [...]")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat template; use 'smollm2-135m-instruct'")
    if not generate_kwargs.get("do_sample"):
        # Greedy decoding: drop the sampling settings a generation config may carry, to avoid warnings.
        generate_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if stop:
        generate_kwargs.update(stop_strings=list(stop), tokenizer=tokenizer)
    head = [{"role": "system", "content": system}] if system else []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list = []
    try:
        for s in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress, leave=False):
            texts = [tokenizer.apply_chat_template(head + ([{"role": "user", "content": p}] if isinstance(p, str)
                                                           else list(p)),
                                                   add_generation_prompt=True, tokenize=False) + prefix
                     for p in prompts[s:s + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(next(model.parameters()).device)
            width = enc["input_ids"].shape[1]
            extra = before_batch(s, width) if before_batch else {}
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                     **{**generate_kwargs, **extra})
            for row in out[:, width:].tolist():
                if return_ids:
                    answers.append(row[:row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row)
                    continue
                text = prefix + tokenizer.decode(row, skip_special_tokens=True)
                cuts = [text.find(t, len(prefix)) + len(t) for t in stop or () if t in text[len(prefix):]]
                answers.append((text[:min(cuts)] if cuts else text).strip())
    finally:
        tokenizer.padding_side = side
    return answers
