"""Language-model training on a laptop CPU: token blocks, schedules, a loop, exact checkpoints.

The loop is deliberately small (nanoGPT-style) so a reader can follow every line: sample random
contiguous blocks from a memory-mapped token array, AdamW, linear warm-up then cosine decay,
gradient accumulation and clipping, periodic evaluation, and checkpoints that resume exactly.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch


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


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _mixed_precision(device: torch.device, enabled: bool):
    """bf16 autocast when asked: on the CPU as chapter 06 teaches it, on a GPU as `runtime` decides."""
    import contextlib

    from . import runtime

    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return runtime.autocast(str(device))


def lr_at(progress: float, lr: float, warmup: float = 0.05, min_lr_ratio: float = 0.1) -> float:
    """Learning rate at `progress` in [0, 1] of training: linear warm-up, then cosine decay.

    >>> lr_at(0.0, 1e-3, warmup=0.1), lr_at(0.1, 1e-3, warmup=0.1), round(lr_at(1.0, 1e-3), 6)
    (0.0, 0.001, 0.0001)
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return lr * progress / warmup
    decay = (progress - warmup) / max(1e-12, 1 - warmup)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * decay)))


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


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0


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
    `cfg.max_steps`. `stop_at` ends early (to save a checkpoint and resume later).
    """
    from tqdm.auto import tqdm

    generator = generator or torch.Generator().manual_seed(cfg.seed)
    history = history or History()
    model.train()
    step, t_start = start_step, time.perf_counter() - history.seconds
    total = None if cfg.budget_s else cfg.max_steps
    bar = tqdm(total=total, initial=start_step, disable=not progress, desc="train", leave=False)
    dev = _device_of(model)  # batches are drawn on the CPU (a seeded generator), then moved
    while True:
        elapsed = time.perf_counter() - t_start
        done = elapsed >= cfg.budget_s if cfg.budget_s else step >= cfg.max_steps
        if done or (stop_at is not None and step >= stop_at):
            break
        progress_frac = elapsed / cfg.budget_s if cfg.budget_s else step / cfg.max_steps
        lr = lr_at(progress_frac, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for _ in range(cfg.grad_accum):
            x, y = train.batch(cfg.batch_size, cfg.block_size, generator)
            with _mixed_precision(dev, cfg.autocast_bf16):
                _, loss = model(x.to(dev), y.to(dev))
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.item() / cfg.grad_accum
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.step.append(step)
        history.train_loss.append(loss_sum)
        history.lr.append(lr)
        history.tokens += cfg.batch_size * cfg.block_size * cfg.grad_accum
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.1e}")
        if val is not None and cfg.eval_every and step % cfg.eval_every == 0:
            t_eval = time.perf_counter()
            v = estimate_loss(model, val, cfg)
            t_start += time.perf_counter() - t_eval  # evaluation is not charged to the budget
            history.eval_step.append(step)
            history.eval_seconds.append(time.perf_counter() - t_start)
            history.val_loss.append(v)
            if on_eval:
                on_eval(step, v)
    bar.close()
    history.seconds = time.perf_counter() - t_start
    return history


# --- masked language modelling (BERT-style) ----------------------------------------------------

def mask_tokens(input_ids: torch.Tensor, mask_id: int, vocab_size: int, special_mask: torch.Tensor,
                generator: torch.Generator, mlm_prob: float = 0.15):
    """BERT's dynamic masking: choose 15% of the (non-special) tokens as targets; of those, 80%
    become [MASK], 10% a random token, 10% stay. Returns (inputs, labels) with labels -100 elsewhere.

    >>> ids = torch.arange(5, 105).view(4, 25); special = torch.zeros_like(ids, dtype=torch.bool)
    >>> x, y = mask_tokens(ids, 4, 200, special, torch.Generator().manual_seed(0)); int((y != -100).sum()) > 0
    True
    """
    labels = input_ids.clone()
    prob = torch.full(labels.shape, mlm_prob)
    prob.masked_fill_(special_mask, 0.0)
    chosen = torch.bernoulli(prob, generator=generator).bool()
    labels[~chosen] = -100
    inputs = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(labels.shape, 0.8), generator=generator).bool() & chosen
    inputs[to_mask] = mask_id
    # Half of the remaining 20% (10% overall) get a random token; the rest keep the original.
    to_random = torch.bernoulli(torch.full(labels.shape, 0.5), generator=generator).bool() & chosen & ~to_mask
    inputs[to_random] = torch.randint(vocab_size, labels.shape, generator=generator)[to_random]
    return inputs, labels


def _masked_batch(rows: list[list[int]], tokenizer, generator: torch.Generator, mlm_prob: float):
    """Pad rows to the longest (dynamic padding), then mask them: a model-ready dict."""
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    inputs, labels = mask_tokens(ids, tokenizer.mask_token_id, len(tokenizer), special, generator, mlm_prob)
    return {"input_ids": inputs, "attention_mask": (ids != pad).long(), "labels": labels}


def mlm_batches(encoded: list[list[int]], tokenizer, batch_size: int, generator: torch.Generator,
                mlm_prob: float = 0.15):
    """Endless random batches of dynamically masked, dynamically padded sequences."""
    while True:
        rows = [encoded[i] for i in torch.randint(len(encoded), (batch_size,), generator=generator).tolist()]
        yield _masked_batch(rows, tokenizer, generator, mlm_prob)


def train_mlm(model, tokenizer, encoded: list[list[int]], steps: int, batch_size: int = 32,
              lr: float = 1e-3, weight_decay: float = 0.01, warmup: float = 0.06, seed: int = 0,
              progress: bool = True) -> list[float]:
    """Pretrain a Hugging Face masked LM (e.g. `BertForMaskedLM`) on token-id lists; returns losses."""
    from tqdm.auto import tqdm

    if steps < 1 or not encoded:
        raise ValueError("train_mlm needs steps >= 1 and at least one encoded sequence")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    batches = mlm_batches(encoded, tokenizer, batch_size, g)
    losses = []
    model.train()
    for step in tqdm(range(steps), desc="mlm", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = lr_at(step / steps, lr, warmup, 0.0)
        loss = model(**{k: v.to(_device_of(model)) for k, v in next(batches).items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def mlm_accuracy(model, tokenizer, encoded: list[list[int]], batch_size: int = 64, seed: int = 123,
                 mlm_prob: float = 0.15) -> float:
    """Share of masked positions whose original token is the model's top prediction (fixed masks)."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    correct = total = 0
    for i in range(0, len(encoded), batch_size):
        batch = _masked_batch(encoded[i:i + batch_size], tokenizer, g, mlm_prob)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        m = labels != -100
        correct += (logits.argmax(-1)[m] == labels[m]).sum().item()
        total += m.sum().item()
    return correct / max(total, 1)


def char_tokenizer(texts, min_count: int = 2, max_length: int = 128):
    """A character-level BERT tokenizer for Chinese (NFKC-normalised, one token per character).

    >>> tok = char_tokenizer(["我爱北京", "北京很大"], min_count=1); tok("北京")["input_ids"][1:3] == tok.convert_tokens_to_ids(["北", "京"])
    True
    """
    from collections import Counter
    import unicodedata

    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    counts = Counter(ch for t in texts for ch in unicodedata.normalize("NFKC", t) if not ch.isspace())
    chars = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex("."), behavior="isolated")])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


ZH_CHAR_BERT = dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=512,
                    max_position_embeddings=128)


def build_zh_char_bert(out: str | Path, steps: int = 1000, batch_size: int = 32, lr: float = 1e-3,
                       max_chars: int = 62, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Pretrain a small character-level Chinese BERT (MLM) on the People's Daily text and save it.

    The last 5% of the sentences are held out to measure MLM accuracy. Chapter 06 teaches this
    recipe; chapters 07 and 14 fine-tune the result (`labkit.assets.path("zh-char-bert")`).
    """
    from transformers import BertConfig, BertForMaskedLM

    from . import data

    torch.manual_seed(seed)
    texts = [t for t in data.load("peoples-daily")["text"] if len(t) >= 4]
    n_val = len(texts) // 20
    train_texts, val_texts = texts[:-n_val], texts[-n_val:]
    tok = char_tokenizer(train_texts)
    enc = tok([t[:max_chars] for t in train_texts], truncation=True)["input_ids"]
    val_enc = tok([t[:max_chars] for t in val_texts], truncation=True)["input_ids"]
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **ZH_CHAR_BERT))
    losses = train_mlm(model, tok, enc, steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    acc = mlm_accuracy(model, tok, val_enc)
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    stats = {"steps": steps, "final_loss": float(np.mean(losses[-50:])), "val_mlm_accuracy": acc,
             "vocab_size": len(tok), "train_sentences": len(enc)}
    (out / "labkit_stats.json").write_text(__import__("json").dumps(stats, indent=1))
    return stats
