"""Tokens for translation: one byte-level BPE for both languages (Hugging Face `tokenizers`),
pairs encoded with `<s>` / `</s>`, and length-bucketed padded batches for teacher forcing.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence

import torch


PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_shared_bpe(texts: Iterable[str], vocab_size: int, extra_special: Sequence[str] = ()):
    """A byte-level BPE (`tokenizers`) trained on source and target text together.

    Ids 0, 1, 2 are `<pad>`, `<s>`, `</s>`; `extra_special` (e.g. language tags `<2fr>`) follow and
    are never split. A shared vocabulary lets numbers, names and cognates keep one id on both sides.

    >>> tok = train_shared_bpe(["one two", "un deux"], 300)
    >>> tok.decode(tok.encode("un two").ids)
    'un two'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(texts, str):
        raise TypeError("train_shared_bpe takes an iterable of texts; wrap a single text in [...]")
    special = [PAD, BOS, EOS, *extra_special]
    if vocab_size < 256 + len(special):
        raise ValueError(f"vocab_size must be at least 256 bytes + {len(special)} special tokens; got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def encode_pairs(tokenizer, pairs: Sequence[dict], max_len: int = 128) -> list[tuple[list[int], list[int]]]:
    """(source ids + `</s>`, `<s>` + target ids + `</s>`) for each pair, cut to `max_len` tokens.

    >>> tok = train_shared_bpe(["a b"], 262); encode_pairs(tok, [{"src": "a", "tgt": "b"}])[0][1][0]
    1
    """
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    if bos is None or eos is None:
        raise ValueError("the tokenizer has no <s> / </s>; train it with train_shared_bpe")
    srcs = tokenizer.encode_batch([p["src"] for p in pairs])
    tgts = tokenizer.encode_batch([p["tgt"] for p in pairs])
    return [(s.ids[:max_len - 1] + [eos], [bos] + t.ids[:max_len - 2] + [eos]) for s, t in zip(srcs, tgts)]


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    n = max(len(r) for r in rows)
    return torch.tensor([list(r) + [pad_id] * (n - len(r)) for r in rows], dtype=torch.long)


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, shuffle: bool = True,
            generator: random.Random | None = None, pad_id: int = 0,
            device: str | torch.device | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Padded batches (src, src_mask, tgt_in, labels) for teacher forcing, one pass over the data.

    The tensors go to `device` (the CPU when None). `tgt_in` is the target without its last token,
    `labels` without its first (`<s>`): position i
    sees the gold tokens before i and is trained to predict token i. Padding labels are -100.
    Pairs of similar length are batched together (less padding, faster).

    >>> s, m, ti, y = next(batches([([5, 2], [1, 7, 2])], 1)); ti.tolist(), y.tolist()
    ([[1, 7]], [[7, 2]])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = list(range(len(encoded)))
    rng = generator or random.Random(0)
    if shuffle:
        rng.shuffle(order)
    chunk = batch_size * 50
    groups = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
        groups += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(groups)
    for g in groups:
        src = _pad([encoded[i][0] for i in g], pad_id)
        tgt = _pad([encoded[i][1] for i in g], pad_id)
        labels = tgt[:, 1:].masked_fill(tgt[:, 1:] == pad_id, -100)
        dev = device or "cpu"
        yield src.to(dev), (src != pad_id).long().to(dev), tgt[:, :-1].to(dev), labels.to(dev)
