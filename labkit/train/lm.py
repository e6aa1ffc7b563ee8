"""Language-model training on a laptop CPU: token blocks, a config, exact checkpoints, `train_lm`.

nanoGPT-style: sample random contiguous blocks from a memory-mapped token array and train with
`labkit.train.fit` (AdamW, linear warm-up then cosine decay, gradient accumulation and clipping),
evaluating periodically; checkpoints resume bit for bit. Taught in chapter 06.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .loop import History, _device_of, fit

class TokenBlocks:
    """A 1-D token array (memory-mapped from disk) sampled as random contiguous blocks.

    >>> blocks = TokenBlocks.from_ids(list(range(100)), "/tmp/ids.bin")
    >>> x, y = blocks.batch(4, 8, torch.Generator().manual_seed(0)); bool((y[:, :-1] == x[:, 1:]).all())
    True
    """

    def __init__(self, path: str | Path, dtype=np.uint16):
        self.path = Path(path)
        self.ids = np.memmap(self.path, dtype=dtype, mode="r")

    @classmethod
    def from_ids(cls, ids, path: str | Path) -> "TokenBlocks":
        """Write token ids once to `path` (uint16 if they fit, else uint32) and map them."""
        arr = np.asarray(ids)
        dtype = np.uint16 if arr.max(initial=0) < 2**16 else np.uint32
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        arr.astype(dtype).tofile(path)
        return cls(path, dtype)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator):
        """(x, y) of shape (batch, block): y is x shifted by one token."""
        if len(self.ids) <= block_size + 1:
            raise ValueError(f"{len(self.ids)} tokens cannot fill a block of {block_size} (+1 target)")
        starts = torch.randint(len(self.ids) - block_size - 1, (batch_size,), generator=generator).tolist()
        chunk = np.stack([self.ids[s:s + block_size + 1] for s in starts]).astype(np.int64)
        t = torch.from_numpy(chunk)
        return t[:, :-1], t[:, 1:]

    def sequential(self, block_size: int, max_tokens: int | None = None):
        """Non-overlapping (x, y) blocks covering the array in order: for a full evaluation."""
        n = len(self.ids) - 1 if max_tokens is None else min(max_tokens, len(self.ids) - 1)
        for s in range(0, n - block_size + 1, block_size):
            chunk = torch.from_numpy(self.ids[s:s + block_size + 1].astype(np.int64))
            yield chunk[None, :-1], chunk[None, 1:]



@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint."""
    batch_size: int = 12
    block_size: int = 64
    lr: float = 1e-3  # peak; the optimizer (built by the caller) holds weight decay and betas
    warmup: float = 0.05  # fraction of the run
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    max_steps: int = 1000  # used when budget_s is None
    budget_s: float | None = None  # wall-clock budget: the schedule follows elapsed time instead
    eval_every: int = 200
    eval_batches: int = 20
    seed: int = 0
    autocast_bf16: bool = False



@torch.no_grad()
def estimate_loss(model, blocks: TokenBlocks, cfg: TrainConfig, batches: int | None = None,
                  seed: int = 1234) -> float:
    """Mean loss over `batches` random blocks drawn with a fixed seed (same blocks every call)."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    losses, dev = [], _device_of(model)
    for _ in range(batches or cfg.eval_batches):
        x, y = blocks.batch(cfg.batch_size, cfg.block_size, g)
        losses.append(model(x.to(dev), y.to(dev))[1].item())
    model.train(was_training)
    return float(np.mean(losses))


@torch.no_grad()
def full_loss(model, blocks: TokenBlocks, block_size: int, max_tokens: int | None = None,
              batch_size: int = 64) -> float:
    """Mean next-token loss over every token of `blocks` (non-overlapping windows), in nats."""
    was_training = model.training
    model.eval()
    total, count, xs, ys = 0.0, 0, [], []

    def flush():
        nonlocal total, count
        dev = _device_of(model)
        x, y = torch.cat(xs).to(dev), torch.cat(ys).to(dev)
        total += model(x, y)[1].item() * y.numel()
        count += y.numel()
        xs.clear()
        ys.clear()

    for x, y in blocks.sequential(block_size, max_tokens):
        xs.append(x)
        ys.append(y)
        if len(xs) == batch_size:
            flush()
    if xs:
        flush()
    model.train(was_training)
    return total / max(count, 1)


def save_checkpoint(path: str | Path, model, optimizer, step: int, generator: torch.Generator,
                    cfg: TrainConfig, history: History) -> None:
    """Everything needed to continue bit for bit: weights, optimizer, step, both RNG states."""
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "batch_rng": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "config": asdict(cfg), "history": asdict(history)}, path)


def load_checkpoint(path: str | Path, model, optimizer, generator: torch.Generator):
    """Restore a checkpoint written by `save_checkpoint`; returns (step, History)."""
    ck = torch.load(path, weights_only=False)  # our own file: it holds a config dict and RNG states
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    generator.set_state(ck["batch_rng"])
    torch.set_rng_state(ck["torch_rng"])
    return ck["step"], History(**ck["history"])



def train_lm(model, optimizer, train: TokenBlocks, val: TokenBlocks | None, cfg: TrainConfig,
             generator: torch.Generator | None = None, start_step: int = 0, history: History | None = None,
             stop_at: int | None = None, on_eval: Callable[[int, float], None] | None = None,
             progress: bool = True) -> History:
    """Train a model whose forward is `model(x, y) -> (logits, loss)`; returns the History.

    With `cfg.budget_s` set, training stops when the wall-clock budget is spent and the learning
    rate follows elapsed time (warm-up and cosine over the budget); otherwise it runs
    `cfg.max_steps`. `stop_at` ends early (to save a checkpoint and resume later). Evaluation
    (and `on_eval`) is not charged to the budget. The model is left in training mode.

    >>> blocks = TokenBlocks.from_ids(torch.randint(50, (2000,)).tolist(), "/tmp/ids.bin")  # doctest: +SKIP
    >>> h = train_lm(gpt, gpt.configure_optimizer(lr=3e-3), blocks, None, TrainConfig(max_steps=10))  # doctest: +SKIP
    """
    generator = generator or torch.Generator().manual_seed(cfg.seed)
    history = history or History()
    if stop_at is not None and start_step >= stop_at:
        model.train()
        return history

    def draw():  # batches are drawn on the CPU (a seeded generator); fit moves them
        while True:
            yield train.batch(cfg.batch_size, cfg.block_size, generator)

    def after_step(step: int, h: History) -> bool:
        h.tokens += cfg.batch_size * cfg.block_size * cfg.grad_accum
        if val is not None and cfg.eval_every and step % cfg.eval_every == 0:
            v = estimate_loss(model, val, cfg)
            h.eval_step.append(step)
            h.eval_seconds.append(h.seconds)
            h.val_loss.append(v)
            if on_eval:
                on_eval(step, v)
        return stop_at is not None and step >= stop_at

    fit(model, draw(), lambda m, xy: m(*xy)[1], steps=None if cfg.budget_s else cfg.max_steps,
        budget_s=cfg.budget_s or None, lr=cfg.lr, warmup=cfg.warmup, min_lr_ratio=cfg.min_lr_ratio,
        clip=cfg.grad_clip, grad_accum=cfg.grad_accum, optimizer=optimizer, device=_device_of(model),
        mixed_precision=cfg.autocast_bf16, start_step=start_step, history=history, progress=progress,
        on_step=after_step)
    model.train()  # as train_lm always has: a resumed run carries on in training mode
    return history
