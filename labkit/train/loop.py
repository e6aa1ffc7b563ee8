"""The book's one training loop (`fit`) and what every loop shares: the weight-decay groups, the
warm-up + cosine schedule, batches moved to the device, shuffled epochs.

A chapter that teaches a loop writes it by hand in the notebook (chapters 04, 06 and 07 do) and
checks it against these; every other loop in `labkit` is a thin user of `fit`. Taught in chapter 06.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def param_groups(model_or_params, weight_decay: float) -> list[dict]:
    """The book's one weight-decay rule: decay matrices and embeddings (>= 2-D) only.

    Decaying a bias, a LayerNorm gain or a learned temperature pulls it towards 0, which changes what
    the layer computes rather than limiting its capacity (GPT-2's and CLIP's training code do the
    same). Frozen parameters are left out.

    >>> groups = param_groups(torch.nn.Linear(3, 2), 0.1)
    >>> [len(g["params"]) for g in groups], [g["weight_decay"] for g in groups]
    ([1, 1], [0.1, 0.0])
    """
    params = model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module) else model_or_params
    params = [p for p in params if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def lr_at(progress: float, lr: float, warmup: float = 0.05, min_lr_ratio: float = 0.1) -> float:
    """Learning rate at `progress` in [0, 1] of training: linear warm-up, then cosine decay.

    The book's one schedule: `warmup=0, min_lr_ratio=0` is plain cosine annealing to zero.

    >>> lr_at(0.0, 1e-3, warmup=0.1), lr_at(0.1, 1e-3, warmup=0.1), round(lr_at(1.0, 1e-3), 6)
    (0.0, 0.001, 0.0001)
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return lr * progress / warmup
    decay = (progress - warmup) / max(1e-12, 1 - warmup)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * decay)))


@dataclass
class History:
    """What `fit` recorded: per step the (mean micro-batch) loss and the learning rate; the
    evaluations an `on_step` hook added; training seconds (hook time excluded) and tokens seen."""
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _mixed_precision(device: torch.device, enabled: bool | None):
    """None: the book's rule (`runtime.autocast`: bf16/fp16 on a GPU, none on the CPU); True: bf16
    autocast on the CPU too, as chapter 06 measures it; False: full precision everywhere."""
    from .. import runtime

    if enabled is False:
        return contextlib.nullcontext()
    if enabled and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return runtime.autocast(str(device))


def to_device(batch: Any, device: str | torch.device) -> Any:
    """Move every tensor of a batch (a tensor, or a dict / list / tuple of them) to `device`.

    >>> to_device({"x": torch.zeros(2), "n": 3}, "cpu")["x"].device.type
    'cpu'
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):  # also a tokenizer's BatchEncoding
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def shuffled_batches(n: int, batch_size: int, epochs: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches for `epochs` passes over `n` examples, a new permutation each pass (the last
    batch of a pass may be smaller): `epochs * ceil(n / batch_size)` batches in all.

    >>> [b.tolist() for b in shuffled_batches(5, 2, 1, torch.Generator().manual_seed(0))]
    [[4, 0], [1, 3], [2]]
    """
    if n < 1 or batch_size < 1 or epochs < 1:
        raise ValueError(f"need n, batch_size and epochs >= 1; got {n}, {batch_size}, {epochs}")
    for _ in range(epochs):
        yield from torch.randperm(n, generator=generator).split(batch_size)


def _model_loss(model, batch):
    return model(**batch).loss  # a Hugging Face model on a dict batch with labels


def fit(model: torch.nn.Module, batches: Iterable,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None, *,
        steps: int | None = None, budget_s: float | None = None, lr: float = 1e-3, weight_decay: float = 0.01,
        warmup: float = 0.05, min_lr_ratio: float = 0.1, clip: float | None = 1.0, grad_accum: int = 1,
        optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
        device: str | torch.device | None = None, mixed_precision: bool | None = None, start_step: int = 0,
        history: History | None = None, progress: bool = True, desc: str = "train",
        on_step: Callable[[int, History], bool | None] | None = None) -> History:
    """Train `model` on `batches` for `steps` updates (or `budget_s` seconds); returns the History.

    Each update draws `grad_accum` batches, computes `loss_fn(model, batch)` (default
    `model(**batch).loss`) on `device` (default `labkit.runtime.device()`; the model and each batch
    are moved there), back-propagates loss / grad_accum, clips the gradient norm at `clip` (None or
    0: off) and steps the optimizer: AdamW over `param_groups(model, weight_decay)` unless
    `optimizer` is given. The learning rate follows `lr_at` over the share of `steps` done, or of
    `budget_s` spent, unless a torch `scheduler` (stepped after each update) owns it.
    `on_step(step, history)` runs after every update (evaluate, log, clamp a parameter); its time
    is not training time, and returning True stops early. `start_step` and `history` resume a run.
    `mixed_precision`: None follows `labkit.runtime.autocast` (bf16/fp16 on a GPU, none on the
    CPU), True adds bf16 on the CPU, False keeps full precision everywhere.

    >>> _ = torch.manual_seed(0); model = torch.nn.Linear(3, 1); x = torch.randn(64, 3); y = x.sum(1, keepdim=True)
    >>> data = ((x[i], y[i]) for i in shuffled_batches(64, 16, 50, torch.Generator().manual_seed(0)))
    >>> h = fit(model, data, lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]), steps=200, lr=0.1,
    ...         weight_decay=0.0, progress=False)
    >>> h.train_loss[-1] < 1e-3 * h.train_loss[0], len(h.lr)
    (True, 200)
    """
    from tqdm.auto import tqdm

    from .. import runtime

    if (steps is None) == (budget_s is None) or (steps is not None and steps < 1) or grad_accum < 1:
        raise ValueError(f"fit needs either steps >= 1 or budget_s, and grad_accum >= 1; got steps={steps}, "
                         f"budget_s={budget_s}, grad_accum={grad_accum}")
    device = torch.device(device or runtime.device())
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    optimizer = optimizer or torch.optim.AdamW(param_groups(params, weight_decay), lr=lr)
    loss_fn, batches, history = loss_fn or _model_loss, iter(batches), history or History()
    step, t_start = start_step, time.perf_counter() - history.seconds  # a resumed run keeps its clock
    bar = tqdm(total=steps, initial=start_step, desc=desc, disable=not progress, leave=False)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    while True:
        elapsed = time.perf_counter() - t_start
        if (elapsed >= budget_s) if steps is None else (step >= steps):
            break
        if scheduler is None:
            rate = lr_at(elapsed / budget_s if steps is None else step / steps, lr, warmup, min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rate
        rate, loss_sum = optimizer.param_groups[0]["lr"], 0.0
        for _ in range(grad_accum):  # k micro-batches of loss / k give the gradient of their mean
            try:
                batch = to_device(next(batches), device)
            except StopIteration:
                raise ValueError(f"batches ran out at step {step}: give steps * grad_accum batches "
                                 "(an endless generator is fine)") from None
            with _mixed_precision(device, mixed_precision):
                loss = loss_fn(model, batch)
            (loss / grad_accum).backward()
            loss_sum += loss.item() / grad_accum
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        step += 1
        history.step.append(step)
        history.train_loss.append(loss_sum)
        history.lr.append(rate)
        history.seconds = time.perf_counter() - t_start
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{rate:.1e}")
        if on_step is not None:
            t_hook = time.perf_counter()
            stop = on_step(step, history)
            t_start += time.perf_counter() - t_hook  # evaluation and logging are not charged to training
            if stop:
                break
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - t_start
    return history
