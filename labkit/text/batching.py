"""Batching: `pad_collate`, dynamic (or fixed) padding for a torch `DataLoader`, and
`padding_share`, the share of a batch that is padding.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def pad_collate(features: Sequence[Mapping[str, Any]], pad_id: int = 0, max_length: int | None = None,
                pad_to_multiple_of: int | None = None, padding_side: str = "right") -> dict[str, Any]:
    """Stack tokenized examples into a batch of tensors, padding to the longest in the batch
    (dynamic padding) or to `max_length` (fixed padding).

    `input_ids` is padded with `pad_id`; `attention_mask` (made if missing) and other id lists with
    0; a `label` / `labels` field becomes the tensor `labels`. Equal to
    `transformers.DataCollatorWithPadding` for the same settings.

    >>> b = pad_collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], pad_id=0)
    >>> b["input_ids"].tolist(), b["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    import torch

    if not features:
        raise ValueError("pad_collate got an empty batch")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
    if any("input_ids" not in f for f in features):
        raise KeyError("every example needs 'input_ids' (tokenize the text first)")
    longest = max(len(f["input_ids"]) for f in features)
    if max_length is not None:
        if longest > max_length:
            raise ValueError(f"an example has {longest} tokens, more than max_length={max_length}; "
                             "truncate when tokenizing (truncation=True, max_length=...)")
        longest = max_length
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    keys = [k for k in features[0] if k not in ("label", "labels")]
    if "attention_mask" not in keys:
        keys.append("attention_mask")
    batch: dict[str, Any] = {}
    for k in keys:
        fill = pad_id if k == "input_ids" else 0
        rows = []
        for f in features:
            seq = list(f[k]) if k in f else [1] * len(f["input_ids"])
            pad = [fill] * (longest - len(seq))
            rows.append(seq + pad if padding_side == "right" else pad + seq)
        batch[k] = torch.tensor(rows, dtype=torch.long)
    for lk in ("label", "labels"):
        if lk in features[0]:
            batch["labels"] = torch.tensor([f[lk] for f in features])
    return batch


def padding_share(batch: Mapping[str, Any]) -> float:
    """The share of positions in a padded batch that are padding (attention_mask == 0).

    >>> padding_share({"attention_mask": [[1, 1, 1], [1, 0, 0]]})
    0.3333333333333333
    """
    mask = batch["attention_mask"]
    rows = mask.tolist() if hasattr(mask, "tolist") else mask
    total = sum(len(r) for r in rows)
    return (total - sum(sum(r) for r in rows)) / total if total else 0.0
