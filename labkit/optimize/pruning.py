"""Pruning: zero the smallest weights (unstructured) or remove whole FFN neurons (structured)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import OptimizeError
from .linears import _prunable


def prune_magnitude_(model: nn.Module, sparsity: float, scope: str = "global",
                     skip: Sequence[str] = ("classifier", "pooler")) -> float:
    """Zero the smallest-magnitude weights of every Linear in place; returns the sparsity reached.

    `scope="local"`: the same fraction in every layer (what `torch.nn.utils.prune.l1_unstructured`
    does); `"global"`: one threshold over all layers, so layers with many small weights lose more.

    >>> m = torch.nn.Sequential(torch.nn.Linear(10, 10)); prune_magnitude_(m, 0.5, skip=())
    0.5
    """
    if not 0 <= sparsity < 1:
        raise OptimizeError(f"sparsity is a fraction in [0, 1), got {sparsity}")
    if scope not in ("global", "local"):
        raise OptimizeError(f"scope must be 'global' or 'local', got {scope!r}")
    layers = _prunable(model, skip)
    if not layers:
        raise OptimizeError("no nn.Linear layer to prune (check `skip`)")
    with torch.no_grad():
        if scope == "global":
            allw = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
            k = int(round(sparsity * allw.numel()))
            if k:
                # kthvalue: exactly k weights lie at or below the threshold (ties aside)
                thr = allw.kthvalue(k).values
                for _, m in layers:
                    m.weight.mul_((m.weight.abs() > thr).to(m.weight.dtype))
        else:
            for _, m in layers:
                k = int(round(sparsity * m.weight.numel()))
                if k:
                    idx = m.weight.abs().flatten().topk(k, largest=False).indices
                    m.weight.view(-1)[idx] = 0
    return weight_sparsity(model, skip)


def weight_sparsity(model: nn.Module, skip: Sequence[str] = ("classifier", "pooler")) -> float:
    """Fraction of exactly-zero weights over the Linear layers (not embeddings, not biases).

    >>> weight_sparsity(torch.nn.Linear(4, 4, bias=False).requires_grad_(False).zero_() if False else torch.nn.Linear(2, 2))
    0.0
    """
    layers = _prunable(model, skip)
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / max(total, 1)


def _bert_layers(model: nn.Module):
    enc = getattr(getattr(model, "bert", model), "encoder", None)
    if enc is None or not hasattr(enc, "layer"):
        raise OptimizeError("prune_ffn_ works on BERT-style models (model.bert.encoder.layer[i] with "
                            "intermediate.dense and output.dense); this model has none")
    return enc.layer


def prune_ffn_(model: nn.Module, keep: float) -> int:
    """Structured pruning: remove the least important feed-forward neurons of every BERT layer.

    A neuron j of the FFN is row j of `intermediate.dense` and column j of `output.dense`; its
    importance is the product of their norms (a neuron that reads little or writes little matters
    little). The layers are rebuilt smaller, so the matrix products really shrink (unlike zeros).
    Returns the number of parameters removed.

    >>> removed = prune_ffn_(bert_classifier, keep=0.5)        # doctest: +SKIP
    """
    if not 0 < keep <= 1:
        raise OptimizeError(f"keep is the fraction of FFN neurons kept, in (0, 1]; got {keep}")
    before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for layer in _bert_layers(model):
            up, down = layer.intermediate.dense, layer.output.dense
            score = up.weight.norm(dim=1) * down.weight.norm(dim=0)
            n_keep = max(1, int(round(keep * up.out_features)))
            idx = score.topk(n_keep).indices.sort().values
            new_up = nn.Linear(up.in_features, n_keep, bias=up.bias is not None)
            new_up.weight.copy_(up.weight[idx])
            if up.bias is not None:
                new_up.bias.copy_(up.bias[idx])
            new_down = nn.Linear(n_keep, down.out_features, bias=down.bias is not None)
            new_down.weight.copy_(down.weight[:, idx])
            if down.bias is not None:
                new_down.bias.copy_(down.bias)
            layer.intermediate.dense, layer.output.dense = new_up, new_down
    if hasattr(model, "config"):
        model.config.intermediate_size = n_keep
    return before - sum(p.numel() for p in model.parameters())
