"""Masked language modelling (BERT-style): dynamic masking, `train_mlm`, a character-level Chinese
tokenizer and the small Chinese BERT that chapters 07, 14 and 16 fine-tune. Taught in chapter 06.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .loop import _device_of, fit

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
    """Pretrain a Hugging Face masked LM (e.g. `BertForMaskedLM`) on token-id lists; returns losses.

    `labkit.train.fit` with warm-up then cosine decay to 0 and clipping at 1, on the model's device.

    >>> losses = train_mlm(BertForMaskedLM(config), tok, encoded, steps=100)   # doctest: +SKIP
    """
    if steps < 1 or not encoded:
        raise ValueError("train_mlm needs steps >= 1 and at least one encoded sequence")
    batches = mlm_batches(encoded, tokenizer, batch_size, torch.Generator().manual_seed(seed))
    return fit(model, batches, steps=steps, lr=lr, weight_decay=weight_decay, warmup=warmup, min_lr_ratio=0.0,
               clip=1.0, device=_device_of(model), mixed_precision=False, progress=progress,
               desc="mlm").train_loss


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

    from .. import data

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
