"""Extractive reader: a span model (start/end logits) over question + context, with stride."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def span_features(tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int = 192,
                  stride: int = 64, answers: Sequence[dict] | None = None) -> dict[str, Any]:
    """Tokenise (question, context) pairs into windows of `max_length` tokens that overlap by `stride`.

    A context longer than one window is cut into several features (`overflow_to_sample_mapping`
    says which example each came from). With `answers` (SQuAD dicts), each feature gets
    start/end token positions, or 0/0 (the [CLS] token) when the answer is not inside the window.

    >>> f = span_features(tok, ["Capital?"], ["Its capital is Lima."])      # doctest: +SKIP
    >>> f["input_ids"].shape                                                # doctest: +SKIP
    torch.Size([1, 12])
    """
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    if stride >= max_length // 2:
        raise ValueError(f"stride ({stride}) must be well below max_length ({max_length}): it is the overlap")
    enc = tokenizer([q.strip() for q in questions], list(contexts), truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="longest", return_tensors="pt")
    enc["sequence_ids"] = [enc.sequence_ids(i) for i in range(len(enc["input_ids"]))]
    if answers is not None:
        starts, ends = [], []
        for i, offsets in enumerate(enc["offset_mapping"].tolist()):
            ans = answers[enc["overflow_to_sample_mapping"][i]]
            a0 = ans["answer_start"][0]
            a1 = a0 + len(ans["text"][0])
            seq = enc["sequence_ids"][i]
            ctx = [j for j, s in enumerate(seq) if s == 1]
            if offsets[ctx[0]][0] > a0 or offsets[ctx[-1]][1] < a1:
                starts.append(0), ends.append(0)  # answer not (wholly) in this window
                continue
            s = next(j for j in ctx if offsets[j][1] > a0)
            e = next(j for j in reversed(ctx) if offsets[j][0] < a1)
            starts.append(s), ends.append(e)
        import torch

        enc["start_positions"] = torch.tensor(starts)
        enc["end_positions"] = torch.tensor(ends)
    return enc


def best_spans(start_logits, end_logits, features: dict[str, Any], contexts: Sequence[str],
               max_answer_tokens: int = 30, n_best: int = 20) -> list[dict[str, Any]]:
    """Post-process logits into one answer per example: the best (start <= end) span inside the context.

    Score = start logit + end logit, compared across all windows of an example; spans that cross
    the question or padding, run backwards, or exceed `max_answer_tokens` are skipped.
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    best: dict[int, dict[str, Any]] = {}
    offsets_all = features["offset_mapping"].tolist()
    for i in range(len(start_logits)):
        ex = int(features["overflow_to_sample_mapping"][i])
        seq, offsets = features["sequence_ids"][i], offsets_all[i]
        s_idx = np.argsort(start_logits[i])[::-1][:n_best]
        e_idx = np.argsort(end_logits[i])[::-1][:n_best]
        for s in s_idx:
            if seq[s] != 1:
                continue
            for e in e_idx:
                if seq[e] != 1 or e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = start_logits[i, s] + end_logits[i, e]
                if ex not in best or score > best[ex]["score"]:
                    c0, c1 = offsets[s][0], offsets[e][1]
                    best[ex] = {"answer": contexts[ex][c0:c1], "score": float(score), "start": c0, "end": c1}
    return [best.get(j, {"answer": "", "score": float("-inf"), "start": 0, "end": 0}) for j in range(len(contexts))]


def predict_spans(model, tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int = 192,
                  stride: int = 64, batch_size: int = 32, max_answer_tokens: int = 30,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Best answer span of each (question, context) pair with a question-answering model.

    >>> predict_spans(reader, tok, ["What is the capital of Peru?"], [peru_passage])[0]["answer"]  # doctest: +SKIP
    'Lima'
    """
    import torch

    if isinstance(questions, str) or isinstance(contexts, str):
        raise TypeError("predict_spans takes lists of questions and contexts")
    feats = span_features(tokenizer, questions, contexts, max_length, stride)
    device = next(model.parameters()).device
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats]
    starts, ends = [], []
    rng = range(0, len(feats["input_ids"]), batch_size)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc="reading", leave=False)
    model.eval()
    with torch.inference_mode():
        for i in rng:
            out = model(**{k: feats[k][i:i + batch_size].to(device) for k in keys})
            starts.append(out.start_logits.float().cpu()), ends.append(out.end_logits.float().cpu())
    return best_spans(torch.cat(starts).numpy(), torch.cat(ends).numpy(), feats, contexts, max_answer_tokens)


def train_reader(model, tokenizer, examples: Sequence[dict[str, Any]], epochs: int = 2, batch_size: int = 16,
                 lr: float = 1e-4, max_length: int = 192, stride: int = 64, warmup: float = 0.1,
                 seed: int = 0, head_lr_mult: float = 10.0, progress: bool = True) -> list[float]:
    """Fine-tune a span model on SQuAD-format examples (AdamW, linear warm-up and decay); returns losses.

    The loop is `labkit.train.fit` on the model's device; the span head's learning rate is
    `head_lr_mult` times the body's. The loss is the mean of the start and end cross-entropies, the
    same as the Hugging Face `...ForQuestionAnswering` heads compute from start_positions/end_positions.

    >>> reader, tok = labkit.assets.load_model("minilm-l6", task="question-answering")   # doctest: +SKIP
    >>> losses = train_reader(reader, tok, build_qa_dataset()["train"][:200], epochs=1)   # doctest: +SKIP
    """
    import torch

    from ..train import fit, shuffled_batches

    if not examples:
        raise ValueError("train_reader needs at least one example")
    feats = span_features(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples],
                          max_length, stride, answers=[e["answers"] for e in examples])
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
            if k in feats]
    n = len(feats["input_ids"])
    steps = epochs * math.ceil(n / batch_size)
    # The span head starts from random weights: a larger step size lets it catch up with the
    # pretrained encoder within the few hundred steps a CPU budget allows.
    head = [p for n, p in model.named_parameters() if n.startswith("qa_outputs")]
    body = [p for n, p in model.named_parameters() if not n.startswith("qa_outputs")]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": lr * head_lr_mult}],
                            weight_decay=0.01)
    # Kept as calibrated (chapter 11's targets rest on it): decay on every parameter, and a linear
    # warm-up and decay on two learning rates rather than labkit.train.lr_at's cosine; fit steps
    # this scheduler after every update. Moving to param_groups + lr_at means re-calibrating.
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm))))
    device = next(model.parameters()).device

    def batches():
        for idx in shuffled_batches(n, batch_size, epochs, torch.Generator().manual_seed(seed)):
            batch = {k: feats[k][idx] for k in keys}
            # Trim the padding shared by the whole batch: shorter sequences, faster steps.
            width = int(batch["attention_mask"].sum(1).max())
            yield {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}

    return fit(model, batches(), steps=steps, clip=1.0, optimizer=opt, scheduler=sched, device=device,
               mixed_precision=False, progress=progress, desc="fine-tuning reader").train_loss
