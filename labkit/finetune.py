"""Fine-tuning a pretrained encoder for classification, and parameter-efficient variants (LoRA).

The recipe is the one chapter 07 teaches: AdamW (no weight decay on biases and LayerNorm), a
linear warm-up then cosine decay (`labkit.train.lr_at`), gradient clipping, and early stopping
on a validation split that restores the best weights; the loop is `labkit.train.fit`.
`add_lora` wraps a model with `peft`.
Chapters 08 and 14 reuse these functions.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch


class FinetuneError(ValueError):
    """Bad input to a fine-tuning function; the message says what was wrong and what to do."""


def load_classifier(name_or_path: str, num_labels: int = 2, build_settings: dict | None = None):
    """A sequence classifier (new, randomly initialised head) and its tokenizer.

    `name_or_path` is a bundled asset ("minilm-l6"), a built model ("zh-char-bert", with its recipe
    settings in `build_settings`, e.g. `{"steps": 20}`), a local
    folder, or a hub id (gpu profile); `labkit.assets` resolves it so offline errors are clear.

    >>> model, tok = load_classifier("minilm-l6", num_labels=2)      # doctest: +SKIP
    >>> model.config.num_labels  # doctest: +SKIP
    2
    """
    from . import builds

    if not isinstance(num_labels, int) or num_labels < 2:
        raise FinetuneError(f"num_labels must be an integer >= 2, got {num_labels!r}")
    if not isinstance(name_or_path, str) or not name_or_path:
        raise FinetuneError("load_classifier needs a model name, folder or hub id as a string")
    import transformers as tf

    where = builds.resolve(name_or_path, **(build_settings or {}))
    tok = tf.AutoTokenizer.from_pretrained(where)
    bars = tf.utils.logging.is_progress_bar_enabled()
    verbosity = tf.utils.logging.get_verbosity()
    tf.utils.logging.disable_progress_bar()
    # "Some weights were newly initialized" is expected here (the head is new): silence it.
    tf.utils.logging.set_verbosity_error()
    try:
        # A folder that already holds a head of another size gets a fresh head of the right size.
        model = tf.AutoModelForSequenceClassification.from_pretrained(where, num_labels=num_labels,
                                                                      ignore_mismatched_sizes=True)
    finally:
        tf.utils.logging.set_verbosity(verbosity)
        if bars:
            tf.utils.logging.enable_progress_bar()
    if tok.pad_token is None:  # decoder-only checkpoints (GPT-2, llama) have no pad token
        tok.pad_token = tok.eos_token
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


@dataclass
class FinetuneConfig:
    """The knobs of `train_classifier` (defaults suit a small BERT on a CPU)."""
    epochs: int = 5
    lr: float = 5e-5            # peak learning rate
    batch_size: int = 16
    warmup: float = 0.1         # fraction of all steps spent warming up linearly
    weight_decay: float = 0.01  # AdamW decoupled decay, not applied to biases / LayerNorm
    max_grad_norm: float = 1.0  # gradient clipping; 0 means off
    patience: int = 0           # epochs without validation improvement before stopping; 0 means off
    max_length: int = 128       # tokens per text (longer ones are truncated)
    seed: int = 0


@dataclass
class FinetuneHistory:
    """What happened during `train_classifier`: per-step loss and lr, per-epoch validation."""
    step_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_texts_labels(texts, labels, what: str) -> tuple[list[str], list[int]]:
    if isinstance(texts, str):
        raise FinetuneError(f"{what}_texts must be a list of strings, not one string; wrap it in [...]")
    texts = list(texts)
    labels = [int(v) for v in labels]
    if len(texts) != len(labels):
        raise FinetuneError(f"{what}: {len(texts)} texts but {len(labels)} labels; they must match one to one")
    if not texts:
        raise FinetuneError(f"{what}: no examples given")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise FinetuneError(f"{what}: every text must be a string; found {type(bad[0]).__name__}")
    return texts, labels


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batch(tokenizer, texts: list[str], labels: list[int] | None, idx: Sequence[int], max_length: int, device):
    enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt").to(device)
    if labels is not None:
        enc["labels"] = torch.tensor([labels[j] for j in idx], device=device)
    return enc


def _batches(tokenizer, texts: list[str], labels: list[int] | None, order: Sequence[int], batch_size: int,
             max_length: int, device):
    for i in range(0, len(order), batch_size):
        yield _batch(tokenizer, texts, labels, order[i:i + batch_size], max_length, device)


@torch.no_grad()
def _evaluate(model, tokenizer, texts, labels, batch_size: int, max_length: int) -> tuple[float, float]:
    was = model.training
    model.eval()
    total, correct = 0.0, 0
    for enc in _batches(tokenizer, texts, labels, list(range(len(texts))), batch_size, max_length, _device(model)):
        out = model(**enc)
        total += out.loss.item() * len(enc["labels"])
        correct += (out.logits.argmax(-1) == enc["labels"]).sum().item()
    model.train(was)
    return total / len(texts), correct / len(texts)


def train_classifier(model, tokenizer, train_texts, train_labels, cfg: FinetuneConfig | None = None,
                     val_texts=None, val_labels=None, progress: bool = True) -> FinetuneHistory:
    """Fine-tune a sequence classifier in place; returns a `FinetuneHistory`.

    Only parameters with requires_grad are trained (so a LoRA or prompt-tuning model trains its
    adapter only). With a validation split and `cfg.patience > 0`, training stops after `patience`
    epochs without a better validation loss and the best weights are put back.

    >>> hist = train_classifier(model, tok, ["good", "bad"], [1, 0], FinetuneConfig(epochs=1))  # doctest: +SKIP
    >>> len(hist.train_loss)  # doctest: +SKIP
    1
    """
    from .train import fit, shuffled_batches

    cfg = cfg or FinetuneConfig()
    if not isinstance(cfg, FinetuneConfig):
        raise FinetuneError(f"cfg must be a FinetuneConfig, got {type(cfg).__name__}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.max_length < 2:
        raise FinetuneError(f"need epochs >= 1, batch_size >= 1, lr > 0, max_length >= 2; got {cfg}")
    if not 0 <= cfg.warmup < 1:
        raise FinetuneError(f"warmup is a fraction of the run in [0, 1), got {cfg.warmup}")
    texts, labels = _check_texts_labels(train_texts, train_labels, "train")
    n_labels = getattr(model.config, "num_labels", None)
    if n_labels and (min(labels) < 0 or max(labels) >= n_labels):
        raise FinetuneError(f"labels must be 0..{n_labels - 1} for this model; found {sorted(set(labels))}")
    has_val = val_texts is not None
    if has_val:
        if val_labels is None:
            raise FinetuneError("val_texts given without val_labels")
        vtexts, vlabels = _check_texts_labels(val_texts, val_labels, "validation")
    elif cfg.patience:
        raise FinetuneError("early stopping (patience > 0) needs val_texts and val_labels")
    if not any(p.requires_grad for p in model.parameters()):
        raise FinetuneError("the model has no trainable parameters (all requires_grad=False)")

    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout masks
    steps_per_epoch = math.ceil(len(texts) / cfg.batch_size)
    hist = FinetuneHistory()
    best = {"loss": math.inf, "state": None, "bad_epochs": 0}
    t0 = time.perf_counter()

    def end_of_epoch(step: int, h) -> bool:
        """Per-epoch bookkeeping after fit's update: mean loss, validation, early stopping."""
        if step % steps_per_epoch:
            return False
        epoch = step // steps_per_epoch
        hist.epoch.append(epoch)
        hist.train_loss.append(float(np.mean(h.train_loss[-steps_per_epoch:])))
        if not has_val:
            return False
        vl, va = _evaluate(model, tokenizer, vtexts, vlabels, 64, cfg.max_length)
        hist.val_loss.append(vl)
        hist.val_accuracy.append(va)
        if vl < best["loss"] - 1e-6:
            best.update(loss=vl, bad_epochs=0)
            hist.best_epoch = epoch
            if cfg.patience:
                # Keep a copy of the trainable weights only (small for adapters).
                best["state"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return False
        best["bad_epochs"] += 1
        hist.stopped_early = bool(cfg.patience) and best["bad_epochs"] >= cfg.patience and epoch < cfg.epochs
        return hist.stopped_early

    batches = (_batch(tokenizer, texts, labels, idx.tolist(), cfg.max_length, _device(model))
               for idx in shuffled_batches(len(texts), cfg.batch_size, cfg.epochs, g))
    run = fit(model, batches, steps=steps_per_epoch * cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
              warmup=cfg.warmup, min_lr_ratio=0.0, clip=cfg.max_grad_norm, device=_device(model),
              mixed_precision=False, progress=progress, desc="fine-tune", on_step=end_of_epoch)
    hist.step_loss, hist.lr = run.train_loss, run.lr
    if best["state"] is not None:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in best["state"]:
                    p.copy_(best["state"][n])
    hist.seconds = time.perf_counter() - t0
    return hist


@torch.no_grad()
def predict_proba(model, tokenizer, texts, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Class probabilities, shape (n, num_labels), in the order of `texts`.

    >>> predict_proba(model, tok, ["great film", "dull"]).shape      # doctest: +SKIP
    (2, 2)
    """
    if isinstance(texts, str):
        raise FinetuneError("predict_proba takes a list of strings; wrap a single text in [...]")
    texts = list(texts)
    if batch_size < 1:
        raise FinetuneError(f"batch_size must be >= 1, got {batch_size}")
    was = model.training
    model.eval()
    out = []
    for enc in _batches(tokenizer, texts, None, list(range(len(texts))), batch_size, max_length, _device(model)):
        out.append(torch.softmax(model(**enc).logits.float(), -1).cpu().numpy())
    model.train(was)
    n_labels = getattr(model.config, "num_labels", 2)
    return np.concatenate(out) if out else np.zeros((0, n_labels), dtype=np.float32)


def _default_targets(model) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for pair in (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("c_attn",)):
        if set(pair) <= names:
            return list(pair)
    raise FinetuneError(f"cannot guess LoRA target modules; pass target_modules from: {sorted(names)}")


def add_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | None = None):
    """Wrap `model` with LoRA adapters (peft); the base weights are frozen, the head stays trainable.

    >>> lm = add_lora(model, r=8, target_modules=["query", "value"])   # doctest: +SKIP
    >>> lm.print_trainable_parameters()  # doctest: +SKIP
    """
    from peft import LoraConfig, TaskType, get_peft_model

    if r < 1:
        raise FinetuneError(f"LoRA rank r must be >= 1, got {r}")
    if not 0 <= dropout < 1:
        raise FinetuneError(f"dropout must be in [0, 1), got {dropout}")
    targets = list(target_modules) if target_modules else _default_targets(model)
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in targets if t not in linear]
    if missing:
        raise FinetuneError(f"target modules {missing} are not Linear layers of this model; "
                            f"choose from {sorted(linear)}")
    task = (TaskType.SEQ_CLS if "SequenceClassification" in type(model).__name__ else
            TaskType.CAUSAL_LM if "CausalLM" in type(model).__name__ else None)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task)
    return get_peft_model(model, config)


def trainable_fraction(model) -> float:
    """Share (0..1) of the parameters that are trained.

    >>> trainable_fraction(torch.nn.Linear(3, 2))
    1.0
    """
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)


def accuracy_f1(y_true, y_pred) -> tuple[float, float]:
    """(accuracy, macro-F1) of integer label lists.

    >>> accuracy_f1([0, 1, 1], [0, 1, 0])
    (0.6666666666666666, 0.6666666666666666)
    """
    from sklearn.metrics import accuracy_score, f1_score

    return float(accuracy_score(y_true, y_pred)), float(f1_score(y_true, y_pred, average="macro"))


