"""Few-shot sentiment with a sentence encoder (chapter 14): SetFit's recipe (Tunstall et al. 2022).

SetFit fine-tunes a sentence encoder *contrastively* on pairs of labelled sentences (same label: the
cosine of their embeddings should be 1; different labels: 0), then fits a logistic regression on the
tuned embeddings. Pairs multiply a small data set: n sentences give n(n+1)/2 of them.

- `contrastive_pairs`: SetFit's pair sampler (all pairs with replacement, shuffled, same-label and
  different-label pairs balanced and interleaved);
- `cosine_pair_loss`: sentence-transformers' `CosineSimilarityLoss` (mean squared error of the cosine);
- `mean_pool`: the encoder's sentence embedding with gradients (the pooling of all-MiniLM-L6-v2);
- `contrastive_finetune`: the training loop, with the top `train_layers` layers trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def contrastive_pairs(labels: Sequence[int], n_pairs: int, seed: int = 0) -> np.ndarray:
    """SetFit's pairs: rows (i, j, same) with `same` = 1.0 when labels[i] == labels[j], else 0.0.

    Every pair i <= j (a sentence with itself included, as SetFit does) is listed once, shuffled, then
    split into same-label and different-label pairs; `n_pairs // 2` of each are taken in shuffled order
    (cycling when a kind has fewer) and interleaved same, different, same, ...
    >>> contrastive_pairs([0, 0, 1, 1], n_pairs=6, seed=0).tolist()
    [[2.0, 3.0, 1.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0], [1.0, 3.0, 0.0], [3.0, 3.0, 1.0], [0.0, 3.0, 0.0]]
    """
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) < 2:
        raise ValueError("contrastive_pairs needs a 1-d sequence of at least 2 labels")
    if len(np.unique(y)) < 2:
        raise ValueError("contrastive_pairs needs at least two different labels (else no negative pairs)")
    if n_pairs < 2:
        raise ValueError(f"n_pairs must be at least 2, got {n_pairs}")
    ij = np.stack(np.triu_indices(len(y)), axis=1)  # i <= j: with replacement
    ij = ij[np.random.RandomState(seed).permutation(len(ij))]
    same = y[ij[:, 0]] == y[ij[:, 1]]
    pos, neg = ij[same], ij[~same]
    k = n_pairs // 2
    pos, neg = pos[np.arange(k) % len(pos)], neg[np.arange(k) % len(neg)]
    out = np.empty((2 * k, 3))
    out[0::2, :2], out[0::2, 2] = pos, 1.0
    out[1::2, :2], out[1::2, 2] = neg, 0.0
    return out


def cosine_pair_loss(a, b, target):
    """Mean of (cos(a_k, b_k) - target_k)^2 over the pairs: the loss of SetFit's body.

    >>> import torch
    >>> round(cosine_pair_loss(torch.tensor([[1., 0.]]), torch.tensor([[0., 1.]]), torch.tensor([1.])).item(), 4)
    1.0
    """
    import torch

    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return ((cos - target.to(cos.dtype)) ** 2).mean()


def mean_pool(model, tokenizer, texts: Sequence[str], max_length: int = 64):
    """Sentence embeddings (not normalised) by mean pooling over the tokens, with gradients.

    `labkit.models.encode_sentences` is the same pooling without gradients, normalised.
    >>> emb = mean_pool(enc, tok, ["a fine film", "a dull one"])     # doctest: +SKIP
    >>> emb.shape, emb.requires_grad                                 # doctest: +SKIP
    (torch.Size([2, 384]), True)
    """
    if isinstance(texts, str):
        raise TypeError("mean_pool takes a list of strings; wrap a single text in [...]")
    device = next(model.parameters()).device
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@dataclass
class ContrastiveConfig:
    """The knobs of `contrastive_finetune`."""
    pairs: int = 640         # pairs seen in training, half same-label, half different-label
    batch_size: int = 16     # pairs per step
    lr: float = 2e-5         # peak learning rate (SetFit's default for the body)
    warmup: float = 0.1      # fraction of the steps spent warming up, then cosine decay
    train_layers: int = 0    # top transformer layers trained, the rest frozen; 0 = all
    max_length: int = 64     # tokens per sentence
    seed: int = 0


@dataclass
class ContrastiveHistory:
    step_loss: list[float] = field(default_factory=list)
    trained_parameters: int = 0
    seconds: float = 0.0


def freeze_below(model, train_layers: int) -> int:
    """Freeze every parameter except those of the top `train_layers` encoder layers (0: train all).

    Returns the number of trainable parameters. A frozen lower part costs no backward pass, and with
    few sentences it also keeps the general-purpose features of pretraining.
    >>> freeze_below(enc, 2)          # doctest: +SKIP
    3551232
    """
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if train_layers < 0:
        raise ValueError(f"train_layers must be >= 0, got {train_layers}")
    if train_layers and layers is None:
        raise ValueError("freeze_below knows BERT-like encoders (model.encoder.layer); use train_layers=0")
    keep = set()
    if train_layers:
        for layer in list(layers)[-train_layers:]:
            keep |= {id(p) for p in layer.parameters()}
    for p in model.parameters():
        p.requires_grad = not train_layers or id(p) in keep
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def contrastive_finetune(model, tokenizer, texts: Sequence[str], labels: Sequence[int],
                         cfg: ContrastiveConfig | None = None, progress: bool = True) -> ContrastiveHistory:
    """SetFit's first stage: tune a sentence encoder in place on `contrastive_pairs` of the texts.

    AdamW, linear warm-up then cosine decay, dropout on: `labkit.train.fit`, the book's one loop.
    >>> hist = contrastive_finetune(enc, tok, texts, labels, ContrastiveConfig(pairs=64))   # doctest: +SKIP
    """
    import torch

    from ..train import fit

    cfg = cfg or ContrastiveConfig()
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; wrap a single text in [...]")
    texts, labels = list(texts), [int(v) for v in labels]
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if cfg.batch_size < 1 or cfg.lr <= 0 or not 0 <= cfg.warmup < 1:
        raise ValueError(f"need batch_size >= 1, lr > 0 and warmup in [0, 1); got {cfg}")
    pairs = contrastive_pairs(labels, cfg.pairs, cfg.seed)
    hist = ContrastiveHistory(trained_parameters=freeze_below(model, cfg.train_layers))
    torch.manual_seed(cfg.seed)  # dropout masks
    steps = math.ceil(len(pairs) / cfg.batch_size)

    def pair_loss(model, chunk):
        i, j = chunk[:, 0].astype(int), chunk[:, 1].astype(int)
        # One forward pass over both sides of the pairs: the batch shares padding and kernels.
        emb = mean_pool(model, tokenizer, [texts[k] for k in i] + [texts[k] for k in j], cfg.max_length)
        return cosine_pair_loss(emb[:len(i)], emb[len(i):], torch.tensor(chunk[:, 2], device=emb.device))

    # SetFit's optimiser: AdamW with torch's default weight decay on every trained parameter.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    fitted = fit(model, (pairs[k * cfg.batch_size:(k + 1) * cfg.batch_size] for k in range(steps)), pair_loss,
                 steps=steps, lr=cfg.lr, warmup=cfg.warmup, min_lr_ratio=0.0, clip=None, optimizer=opt,
                 mixed_precision=False,  # full precision: chapter 14 checks the loss against sentence-transformers
                 progress=progress, desc="contrastive")
    for p in model.parameters():
        p.requires_grad = True
    hist.step_loss, hist.seconds = fitted.train_loss, fitted.seconds
    return hist
