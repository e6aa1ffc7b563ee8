"""Captions and a word-level vocabulary, and a small text encoder trained from scratch."""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

from ..attention import EncoderBlock, padding_mask


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Training and evaluation use different phrasings, so zero-shot and retrieval scores measure
# whether the model understands the digit, not whether it memorised a sentence.
TRAIN_TEMPLATES = (
    "a handwritten digit {word}",
    "the number {num}",
    "a picture of the digit {word}",
    "{num} drawn by hand",
    "the handwritten number {word}",
    "digit {num}",
)
TEST_TEMPLATES = (
    "an image of the number {word}",
    "{word} written by hand",
    "a scan of the digit {num}",
    "this is {word}",
)


def caption(label: int, template: str) -> str:
    """Fill a template with the digit's word ({word}) and numeral ({num}).

    >>> caption(7, "the number {num}"), caption(7, "a handwritten digit {word}")
    ('the number 7', 'a handwritten digit seven')
    """
    if not 0 <= int(label) <= 9:
        raise ValueError(f"label must be a digit 0-9; got {label}")
    return template.format(word=DIGIT_WORDS[int(label)], num=str(int(label)))


def captions_for(labels: Sequence[int], templates: Sequence[str], generator: torch.Generator | None = None) -> list[str]:
    """One caption per label, each with a template drawn at random from `templates`.

    >>> captions_for([3, 3], ["digit {num}"])
    ['digit 3', 'digit 3']
    """
    if not templates:
        raise ValueError("templates is empty; pass e.g. TRAIN_TEMPLATES")
    picks = torch.randint(len(templates), (len(labels),), generator=generator).tolist()
    return [caption(int(y), templates[t]) for y, t in zip(labels, picks)]


def digits_in(text: str) -> list[int]:
    """The digits a text mentions, as words or numerals, in order.

    >>> digits_in("the number 7"), digits_in("a handwritten digit seven"), digits_in("a cat")
    ([7], [7], [])
    """
    out = []
    for tok in re.findall(r"[a-z]+|\d", text.lower()):
        if tok.isdigit():
            out.append(int(tok))
        elif tok in DIGIT_WORDS:
            out.append(DIGIT_WORDS.index(tok))
    return out


class WordVocab:
    """A word-level vocabulary built from texts: lower-cased words and punctuation, plus specials.

    Words never seen when the vocabulary was built become <unk>, which is exactly what happens to a
    from-scratch text encoder that meets a new phrasing.

    >>> v = WordVocab(["the number 7"]); ids, mask = v.encode(["the number 7", "a number"], bos=True)
    >>> v.decode(ids[1])
    '<unk> number'
    """

    PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"

    def __init__(self, texts: Sequence[str]):
        if isinstance(texts, str):
            raise TypeError("WordVocab takes a list of texts; wrap a single text in [...]")
        words = sorted({w for t in texts for w in self.split(t)})
        self.itos = [self.PAD, self.UNK, self.BOS, self.EOS] + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"\w+|[^\w\s]", text.lower())

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, texts: Sequence[str], max_len: int | None = None, bos: bool = False,
               eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (N, L), mask (N, L) of 1 = token, 0 = padding), padded on the right."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap a single text in [...]")
        seqs = [[self.bos_id] * bos + [self.stoi.get(w, self.unk_id) for w in self.split(t)] + [self.eos_id] * eos
                for t in texts]
        n = max_len or max(map(len, seqs))
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            s = s[:n]
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        return ids, (ids != self.pad_id).long()

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Words up to the first <eos>, without <bos> and padding."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(self.itos[i])
        return " ".join(out)


class TextEncoder(nn.Module):
    """A small Transformer text encoder trained from scratch: (ids, mask) -> (B, dim), mean-pooled.

    >>> TextEncoder(20, dim=16, heads=2)(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5)).shape
    torch.Size([2, 16])
    """

    def __init__(self, vocab_size: int, dim: int = 64, depth: int = 1, heads: int = 4, max_len: int = 16,
                 dropout: float = 0.0):
        super().__init__()
        self.dim, self.max_len = dim, max_len
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, 2 * dim, dropout, activation="gelu", norm_first=True)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"texts of {ids.shape[1]} tokens are longer than max_len={self.max_len}")
        h = self.tok(ids) + self.pos[:ids.shape[1]]
        for block in self.blocks:
            h = block(h, mask=padding_mask(mask))
        return self.norm(h)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(torch.float32)
        return (self.tokens(ids, mask) * m).sum(1) / m.sum(1).clamp_min(1.0)
