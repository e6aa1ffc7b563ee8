"""Teaching a chat model a tool-call format: supervised fine-tuning (监督微调) on tool-use transcripts.

Function-calling models are made this way: transcripts in which the assistant writes calls, the program
answers with observations and the assistant finally answers are rendered with the model's chat template,
and the next-token loss is taken on the **assistant's tokens only** (the system prompt, the questions and
the observations are given to the model, not predicted by it). One idea per function:

- `encode_chat`: one conversation -> token ids and labels (-100 outside the assistant turns), through the
  chat template, checked token for token against the template's rendering of the whole conversation;
- `pad_batch`: right padding of (ids, labels) rows into a `model(**batch)` dict;
- `chat_batches`: an endless stream of shuffled batches, for `labkit.train.fit`;
- `assistant_loss`: the mean cross-entropy over the labelled tokens, the vocabulary projection computed
  only where a label follows (`logits_to_keep`): equal to `model(**batch).loss`, several times cheaper on
  a CPU when most tokens are prompt.

Taught in chapter 20, where a LoRA adapter trained this way makes SmolLM2 use its tools.

    >>> b = pad_batch([([5, 6, 7], [-100, 6, 7]), ([8], [8])], pad_id=0)
    >>> b["input_ids"].tolist(), b["labels"].tolist(), b["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[-100, 6, 7], [8, -100, -100]], [[1, 1, 1], [1, 0, 0]])
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

__all__ = ["encode_chat", "pad_batch", "chat_batches", "assistant_loss"]


def encode_chat(tokenizer, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and its labels: the ids on the assistant turns (content and the
    end-of-turn token), -100 elsewhere.

    Each turn is the text the chat template adds for it (rendered with the turns before it, so the
    template's own rules, e.g. a default system prompt, apply); the ids of all turns together must equal
    the tokenization of the whole conversation, or the function fails rather than train on shifted labels.

    >>> ids, labels = encode_chat(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])  # doctest: +SKIP
    >>> tok.decode([i for i, l in zip(ids, labels) if l != -100])                                                  # doctest: +SKIP
    'Hello<|im_end|>'
    """
    if not messages or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages):
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("the conversation has no assistant turn: nothing to learn from")
    end = tokenizer.eos_token_id
    ids: list[int] = []
    labels: list[int] = []
    before = ""
    for k, m in enumerate(messages):
        # The assistant's header ("<|im_start|>assistant\n") is the generation prompt: given, not learned.
        head = tokenizer.apply_chat_template(list(messages[:k]), tokenize=False,
                                             add_generation_prompt=m["role"] == "assistant") if k else ""
        text = tokenizer.apply_chat_template(list(messages[:k + 1]), tokenize=False)
        if not text.startswith(before) or not head.startswith(before) or not text.startswith(head):
            raise ValueError(f"turn {k}: the chat template does not render the conversation as a growing prefix")
        given = tokenizer(head[len(before):], add_special_tokens=False)["input_ids"] if head != before else []
        piece = tokenizer(text[len(head):], add_special_tokens=False)["input_ids"]
        ids += given + piece
        if m["role"] == "assistant":
            # Learn the reply up to its end-of-turn token; what the template writes after it is given.
            stop = piece.index(end) + 1 if end in piece else len(piece)
            labels += [-100] * len(given) + piece[:stop] + [-100] * (len(piece) - stop)
        else:
            labels += [-100] * (len(given) + len(piece))
        before = text
    whole = tokenizer(before, add_special_tokens=False)["input_ids"]
    if whole != ids:
        raise ValueError("the turns' token ids differ from the whole conversation's: a token spans a turn boundary")
    return ids, labels


def pad_batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (ids, labels) rows: input_ids (pad_id), labels (-100), attention_mask (0 on padding)."""
    if not rows:
        raise ValueError("pad_batch needs at least one row")
    n = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, (row, lab) in enumerate(rows):
        if len(row) != len(lab):
            raise ValueError(f"row {i}: {len(row)} ids but {len(lab)} labels")
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, :len(lab)] = torch.tensor(lab)
        mask[i, :len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def chat_batches(tokenizer, conversations: Sequence[Sequence[dict[str, str]]], batch_size: int,
                 seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Endless padded batches of the encoded conversations, in a new random order on every pass.

    >>> batches = chat_batches(tok, transcripts, batch_size=4, seed=0)   # doctest: +SKIP
    >>> h = labkit.train.fit(model, batches, assistant_loss, steps=20)  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = [encode_chat(tokenizer, c) for c in conversations]
    if not rows:
        raise ValueError("no conversations to train on")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(rows), generator=g).split(batch_size):
            yield pad_batch([rows[i] for i in idx.tolist()], pad)


def assistant_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens (the same number as `model(**batch).loss`),
    projecting onto the vocabulary only at the positions whose next token has a label.

    >>> loss = assistant_loss(model, pad_batch([encode_chat(tok, conversation)], tok.eos_token_id))  # doctest: +SKIP
    """
    labels = batch["labels"]
    keep = (labels[:, 1:] != -100).any(0).nonzero().squeeze(1)  # position t predicts token t + 1
    if keep.numel() == 0:
        raise ValueError("the batch has no labelled token")
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels[:, keep + 1].flatten(),
                                             ignore_index=-100)
