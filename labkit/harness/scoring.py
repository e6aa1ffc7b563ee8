"""Scoring a language model on a task: log-likelihood of choices, and generated answers.

Multiple choice by log-likelihood (对数似然): the model reads the context and each choice, and the
choice whose tokens it finds most probable wins. The sum of token log-probabilities favours short
choices (fewer tokens, fewer chances to lose probability), so two normalisations are common: per
token (divide by the number of tokens) and per character (divide by the number of characters:
lm-evaluation-harness's `acc_norm`). Context and choice are split into tokens the way lm-eval does
it: the whole string is tokenized, and the choice's tokens are those after the context's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

NORMS = ("sum", "token", "char")


def encode_pair(encode: Callable[[str], list[int]], context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation as lm-eval splits them (trailing spaces move to the continuation).

    >>> enc = lambda s: [ord(c) for c in s]
    >>> encode_pair(enc, "ab ", "c")
    ([97, 98], [32, 99])
    """
    if not context:
        raise ValueError("the context is empty; put at least one token (e.g. a BOS text) before the continuation")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole, ctx = encode(context + continuation), encode(context)
    return ctx, whole[len(ctx):]


def _logits(model, x, keep: int = 0, **kwargs):
    """Logits of the last `keep` positions (all when 0) and how many positions they cover.

    A Hugging Face model computes only those (`logits_to_keep`), which skips the vocabulary projection
    of the context positions; the book's GPT, whose forward takes no such argument, returns all.
    """
    if keep:
        try:
            return model(input_ids=x, logits_to_keep=keep, **kwargs).logits, keep
        except TypeError:
            pass
    out = model(x, **kwargs)
    # A Hugging Face model returns an object with .logits; the book's GPT returns (logits, loss).
    return (out.logits if hasattr(out, "logits") else out[0]), x.shape[1]


def loglikelihoods(model, encode: Callable[[str], list[int]], requests: Sequence[tuple[str, str]],
                   batch_size: int = 32, max_length: int | None = None, progress: bool = True) -> list[tuple[float, int]]:
    """(sum of log-probabilities, number of tokens) of each continuation given its context.

    Sequences are sorted by length and right-padded: with causal attention a token never sees
    the padding after it, so no attention mask is needed and any causal LM called as `model(ids)`
    works (a Hugging Face model or the book's GPT). `max_length` cuts the context from the left.

    >>> loglikelihoods(model, tok.encode, [("The capital of France is", " Paris")])  # doctest: +SKIP
    [(-1.23, 1)]
    """
    import torch
    from tqdm.auto import tqdm

    pairs = [encode_pair(encode, c, x) for c, x in requests]
    for (c, x), (_, cont) in zip(pairs, requests):
        if not x:
            raise ValueError(f"continuation {cont!r} gives no tokens after its context")
    seqs = [(c + x)[-(max_length + 1):] if max_length else c + x for c, x in pairs]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    device = next(model.parameters()).device
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    batches = range(0, len(order), batch_size)
    with torch.inference_mode():
        for s in tqdm(batches, desc="log-likelihood", disable=not progress, leave=False):
            idx = order[s:s + batch_size]
            width = max(len(seqs[i]) for i in idx) - 1
            x = torch.zeros(len(idx), width, dtype=torch.long)
            for r, i in enumerate(idx):
                ids = seqs[i][:-1]
                x[r, :len(ids)] = torch.tensor(ids)
            # Row j predicts token j + 1: the continuation's n tokens (the last n of the sequence) are
            # predicted by rows len - 1 - n .. len - 2; no row before the earliest of these is needed.
            first = min(len(seqs[i]) - 1 - len(pairs[i][1]) for i in idx)
            logits, kept = _logits(model, x.to(device), keep=width - first)
            offset = width - kept
            for r, i in enumerate(idx):
                n, full = len(pairs[i][1]), seqs[i]
                rows = torch.arange(len(full) - 1 - n, len(full) - 1, device=logits.device) - offset
                tgt = torch.tensor(full[len(full) - n:], device=logits.device)
                logp = torch.log_softmax(logits[r, rows].float(), dim=-1)  # only the rows scored
                out[i] = (float(logp[torch.arange(n, device=logits.device), tgt].sum()), n)
    return out


@dataclass
class MCResult:
    """Log-likelihoods of every choice of every item, and what each normalisation predicts."""

    ids: list[str]
    loglik: list[np.ndarray]  # per item: sum of log-probabilities of each choice
    n_tokens: list[np.ndarray]
    n_chars: list[np.ndarray]
    gold: np.ndarray

    def scores(self, norm: str = "sum") -> list[np.ndarray]:
        """Per item, each choice's score under `norm`: 'sum', 'token' (per token) or 'char' (per character)."""
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        div = {"sum": [np.ones_like(a) for a in self.loglik], "token": self.n_tokens, "char": self.n_chars}[norm]
        return [a / d for a, d in zip(self.loglik, div)]

    def predictions(self, norm: str = "sum") -> np.ndarray:
        return np.array([int(np.argmax(s)) for s in self.scores(norm)])

    def correct(self, norm: str = "sum") -> np.ndarray:
        """1.0 where the prediction under `norm` is the gold choice, else 0.0 (one value per item)."""
        return (self.predictions(norm) == self.gold).astype(float)

    def accuracy(self, norm: str = "sum") -> float:
        return float(self.correct(norm).mean())

    def probs(self, norm: str = "sum") -> list[np.ndarray]:
        """Softmax over an item's choice scores: the model's probability for each choice (for calibration)."""
        out = []
        for s in self.scores(norm):
            e = np.exp(s - s.max())
            out.append(e / e.sum())
        return out

    def confidence(self, norm: str = "sum") -> np.ndarray:
        """Probability of the predicted choice, per item."""
        return np.array([p.max() for p in self.probs(norm)])


def score_mc(model, encode: Callable[[str], list[int]], prompts: Sequence, batch_size: int = 32,
             max_length: int | None = None, progress: bool = True) -> MCResult:
    """Score multiple-choice prompts (`tasks.Prompt`): each choice is the continuation " " + choice.

    >>> r = score_mc(model, tok.encode, load_task("arithmetic").prompts("test"))   # doctest: +SKIP
    >>> r.accuracy("sum"), r.accuracy("char")                                         # doctest: +SKIP
    """
    if not prompts:
        raise ValueError("no prompts to score")
    reqs = [(p.context, " " + c) for p in prompts for c in p.choices]
    ll = loglikelihoods(model, encode, reqs, batch_size=batch_size, max_length=max_length, progress=progress)
    res = MCResult([], [], [], [], np.array([p.gold for p in prompts]))
    k = 0
    for p in prompts:
        got = ll[k:k + len(p.choices)]
        k += len(p.choices)
        res.ids.append(p.id)
        res.loglik.append(np.array([g[0] for g in got]))
        res.n_tokens.append(np.array([g[1] for g in got], dtype=float))
        res.n_chars.append(np.array([len(c) for c in p.choices], dtype=float))  # as lm-eval's acc_norm
    return res


def score_answers(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Per answer: SQuAD exact match, SQuAD token F1 (`labkit.qa`), and `contains` (a gold answer inside).

    >>> {k: v.tolist() for k, v in score_answers(["Paris", "It is Paris."], [["Paris"], ["Paris"]]).items()}
    {'em': [1.0, 0.0], 'f1': [1.0, 0.5], 'contains': [1.0, 1.0]}
    """
    from .. import qa

    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
    return {"em": np.array([qa.exact_match(p, a) for p, a in zip(predictions, answers)]),
            "f1": np.array([qa.f1_score(p, a) for p, a in zip(predictions, answers)]),
            "contains": np.array([qa.answer_in(p, a) for p, a in zip(predictions, answers)])}


def next_token_logprobs(model, tokenizer, texts: Sequence[str], options: Sequence[str], batch_size: int = 16,
                        progress: bool = True) -> np.ndarray:
    """Log-probability of each option's first token as the next token after each text: (texts, options).

    One forward pass per text (not one per option): what a judge needs to answer "Yes"/"No" or "A"/"B".
    Left padding with an attention mask and explicit positions (so a padded text sees the same
    positions as alone), and only the last position's logits are computed.

    >>> next_token_logprobs(model, tok, [chat_text], ["Yes", "No"])   # doctest: +SKIP
    array([[-0.4, -1.2]])
    """
    import torch
    from tqdm.auto import tqdm

    opt_ids = []
    for o in options:
        ids = tokenizer.encode(o, add_special_tokens=False)
        if not ids:
            raise ValueError(f"option {o!r} has no tokens")
        opt_ids.append(ids[0])
    if len(set(opt_ids)) < len(opt_ids):
        raise ValueError(f"options {list(options)} share their first token; choose options that differ at once")
    seqs = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(model.parameters()).device
    out = np.zeros((len(seqs), len(opt_ids)))
    with torch.inference_mode():
        for s in tqdm(range(0, len(seqs), batch_size), desc="next token", disable=not progress, leave=False):
            chunk = seqs[s:s + batch_size]
            width = max(map(len, chunk))
            x = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for r, ids in enumerate(chunk):
                x[r, width - len(ids):], mask[r, width - len(ids):] = torch.tensor(ids), 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits, _ = _logits(model, x.to(device), keep=1, attention_mask=mask.to(device), position_ids=pos.to(device))
            out[s:s + len(chunk)] = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, opt_ids].cpu().numpy()
    return out


def generate_answers(model, tokenizer, questions: Sequence[str], system: str | None = None, max_new_tokens: int = 16,
                     batch_size: int = 16, progress: bool = True) -> list[str]:
    """Greedy chat answers (`labkit.generate.generate_batch`), cut at the first line.

    >>> generate_answers(model, tok, ["What is the capital of Peru?"], system="Answer with the answer only.")  # doctest: +SKIP
    ['Lima']
    """
    from .. import generate

    outs = generate.generate_batch(model, tokenizer, list(questions), max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, system=system, progress=progress)
    return [o.strip().split("\n")[0].strip() for o in outs]
