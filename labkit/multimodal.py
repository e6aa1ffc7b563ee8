"""Images and text together: image encoders, captions, CLIP-style alignment, fusion, captioning.

Everything here is small enough for 8x8 digit images on a CPU:
- image encoders written from scratch: `SmallCNN` and `TinyViT` (patch embeddings, `patchify`);
- captions built from labels with templates (`TRAIN_TEMPLATES` and `TEST_TEMPLATES` are disjoint),
  a word-level `WordVocab` and a small `TextEncoder`;
- `CLIP`: two towers, projections to a joint space and a learned logit scale, trained with the
  symmetric InfoNCE loss `clip_loss` (equal to `transformers`' CLIPModel loss, tests/test_multimodal.py);
- retrieval and zero-shot metrics (`recall_at_k`, `zero_shot_predict`);
- visual question answering with three fusion strategies (`EarlyFusion`, `LateFusion`,
  `CrossAttentionFusion`) and an image-conditioned caption decoder (`CaptionModel`).
Attention blocks come from `labkit.attention` (chapter 05).
"""
from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import DecoderBlock, EncoderBlock, padding_mask

__all__ = [
    "digit_images", "patchify", "shift_augment", "PatchEmbedding", "SmallCNN", "TinyViT",
    "DIGIT_WORDS", "TRAIN_TEMPLATES", "TEST_TEMPLATES", "caption", "captions_for", "digits_in",
    "WordVocab", "TextEncoder", "clip_loss", "CLIP", "recall_at_k", "mean_average_precision", "zero_shot_predict",
    "make_questions", "EarlyFusion", "LateFusion", "ImageTokens", "CrossAttentionFusion", "CaptionModel",
    "to_rgb_uint8", "hub_zero_shot", "hub_captions", "fit",
]


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def digit_images(split) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of `labkit.data.load("digits")` as (images (N, 1, 8, 8) in [0, 1], labels (N,)).

    >>> x, y = digit_images(labkit.data.load("digits")["test"])      # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    (torch.Size([360, 1, 8, 8]), torch.Size([360]))
    """
    if "image" not in split.column_names or "label" not in split.column_names:
        raise ValueError(f"expected a split with 'image' and 'label' columns; got {split.column_names}")
    x = torch.tensor(list(split["image"]), dtype=torch.float32).unsqueeze(1) / 16.0  # pixels are 0..16
    return x, torch.tensor(list(split["label"]), dtype=torch.long)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut (B, C, H, W) images into non-overlapping p x p patches: (B, H/p * W/p, C * p * p).

    Patches are in row-major order and each is flattened channel first, the layout of
    `F.unfold(images, patch, stride=patch).transpose(1, 2)` (and of a Conv2d kernel).

    >>> patchify(torch.arange(16.).view(1, 1, 4, 4), 2)[0, 0].tolist()
    [0.0, 1.0, 4.0, 5.0]
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (batch, channels, height, width); got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"patch size {patch} must divide the image size {h}x{w}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    # (b, rows, cols, c, p, p): one row per patch, the pixels of each patch flattened channel first
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def shift_augment(images: torch.Tensor, max_shift: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by up to `max_shift` pixels in x and y (zero fill): cheap augmentation.

    Small translations keep the digit's identity, so a model that sees them learns not to rely on
    exact pixel positions; on 1,437 training images that is worth a point or two of accuracy.

    >>> shift_augment(torch.ones(2, 1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(b, images.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(b, images.shape[1], h, w)
    return out.gather(3, cols)


class PatchEmbedding(nn.Module):
    """A ViT's first layer: one linear map applied to every flattened p x p patch.

    Mathematically this is a Conv2d with kernel = stride = p (`to_conv` builds it; the test checks
    that both give the same numbers).

    >>> PatchEmbedding(2, 1, 16)(torch.randn(3, 1, 8, 8)).shape
    torch.Size([3, 16, 16])
    """

    def __init__(self, patch: int, channels: int, dim: int):
        super().__init__()
        self.patch, self.channels = patch, channels
        self.proj = nn.Linear(channels * patch * patch, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} image channel(s); got {images.shape[1]}")
        return self.proj(patchify(images, self.patch))

    def to_conv(self) -> nn.Conv2d:
        """The same map as a Conv2d (kernel = stride = patch), sharing copies of the weights."""
        conv = nn.Conv2d(self.channels, self.proj.out_features, self.patch, stride=self.patch)
        with torch.no_grad():
            conv.weight.copy_(self.proj.weight.view(-1, self.channels, self.patch, self.patch))
            conv.bias.copy_(self.proj.bias)
        return conv


class SmallCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool, then a dense layer: the image encoder of this chapter.

    `embed(x)` is the (B, dim) image vector, `feature_map(x)` the pooled grid as tokens
    (B, (H/2)(W/2), 2*width), `forward(x)` the class logits.

    >>> SmallCNN()(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, channels: int = 1, image_size: int = 8, width: int = 32, dim: int = 128,
                 n_classes: int = 10, dropout: float = 0.1):
        super().__init__()
        if image_size % 2:
            raise ValueError(f"image_size must be even (one 2x2 pooling); got {image_size}")
        self.dim = dim
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                nn.Linear(2 * width * (image_size // 2) ** 2, dim), nn.ReLU())
        self.head = nn.Linear(dim, n_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(2).transpose(1, 2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class TinyViT(nn.Module):
    """A Vision Transformer: patch embeddings + [CLS] + learned positions + pre-LN encoder blocks.

    `tokens(x)` returns all (B, 1 + n_patches, dim) outputs, `embed(x)` the [CLS] vector,
    `forward(x)` the class logits.

    >>> TinyViT(patch=2)(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, image_size: int = 8, patch: int = 2, channels: int = 1, dim: int = 64, depth: int = 2,
                 heads: int = 4, mlp_ratio: int = 2, n_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"patch size {patch} must divide image_size {image_size}")
        self.dim, self.n_patches = dim, (image_size // patch) ** 2
        self.patch_embed = PatchEmbedding(patch, channels, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        # Attention is blind to order: the position of each patch has to be added to its vector.
        self.pos = nn.Parameter(torch.randn(1, self.n_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_ratio * dim, dropout, activation="gelu",
                                                 norm_first=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_embed(x)
        h = torch.cat([self.cls.expand(len(p), -1, -1), p], 1) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


# ----------------------------------------------------------------------------------------------
# Captions and a word-level vocabulary
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# CLIP-style contrastive alignment
# ----------------------------------------------------------------------------------------------

def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: pair i is (image i, text i); every other item in the batch is a negative.

    Embeddings are L2-normalised here; `logit_scale` is log(1/temperature), as in CLIP, so the
    logits are exp(logit_scale) * cos(image_i, text_j). The loss is the mean of the image->text and
    text->image cross-entropies with targets 0..B-1 (the diagonal).

    >>> e = torch.eye(4); round(clip_loss(e, e, math.log(100.0)).item(), 6)
    0.0
    """
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image and text embeddings must have the same shape (pairs); got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    scale = logit_scale.exp() if isinstance(logit_scale, torch.Tensor) else math.exp(logit_scale)
    logits = scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T  # (images, texts)
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class CLIP(nn.Module):
    """Two towers, a linear projection each into a shared space, and a learned logit scale.

    `text_encoder` maps whatever `encode_text` receives (a tensor, or a tuple such as (ids, mask))
    to (B, text_dim); pass `nn.Identity()` to train on frozen, precomputed text features (e.g.
    MiniLM sentence embeddings). The logit scale starts at log(1/0.07) and is clamped at log(100),
    as in CLIP, so the temperature cannot collapse to 0.

    >>> m = CLIP(SmallCNN(dim=32), 32, nn.Identity(), 384, embed_dim=16)
    >>> m(torch.randn(4, 1, 8, 8), torch.randn(4, 384)).shape
    torch.Size([])
    """

    def __init__(self, image_encoder: nn.Module, image_dim: int, text_encoder: nn.Module, text_dim: int,
                 embed_dim: int = 64, init_temperature: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if not 0 < init_temperature < 1:
            raise ValueError(f"init_temperature must be in (0, 1); got {init_temperature}")
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_proj = nn.Linear(image_dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))
        self.max_log_scale = math.log(max_scale)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        enc = self.image_encoder
        feats = enc.embed(images) if hasattr(enc, "embed") else enc(images)
        return F.normalize(self.image_proj(feats), dim=-1)

    def encode_text(self, text) -> torch.Tensor:
        feats = self.text_encoder(*text) if isinstance(text, (tuple, list)) else self.text_encoder(text)
        return F.normalize(self.text_proj(feats), dim=-1)

    def clamp_(self) -> None:
        """Call after each optimiser step: keeps exp(logit_scale) <= max_scale."""
        with torch.no_grad():
            self.logit_scale.clamp_(0, self.max_log_scale)

    def forward(self, images: torch.Tensor, text) -> torch.Tensor:
        return clip_loss(self.encode_image(images), self.encode_text(text), self.logit_scale)


def recall_at_k(sim: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor,
                ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Recall@k for retrieval where an item of the same label counts as a match.

    `sim` is (queries, gallery). A query is a hit at k when at least one of its k most similar
    gallery items has its label.

    >>> recall_at_k(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([0, 1]), torch.tensor([0, 1]), ks=(1, 2))
    {1: 0.5, 2: 1.0}
    """
    if sim.shape != (len(query_labels), len(gallery_labels)):
        raise ValueError(f"sim must be (queries, gallery) = ({len(query_labels)}, {len(gallery_labels)}); "
                         f"got {tuple(sim.shape)}")
    if max(ks) > sim.shape[1]:
        raise ValueError(f"k={max(ks)} is larger than the gallery ({sim.shape[1]} items)")
    top = sim.topk(max(ks), dim=1).indices  # (queries, k_max)
    match = gallery_labels[top] == query_labels[:, None]
    return {k: match[:, :k].any(1).float().mean().item() for k in ks}


def mean_average_precision(sim: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> float:
    """Mean over queries of the average precision of the full ranking (same label = relevant).

    Recall@k asks whether one match is near the top; average precision asks whether *all* matches
    come before the non-matches: AP = mean, over the relevant items, of precision at their rank.

    >>> round(mean_average_precision(torch.tensor([[0.9, 0.5, 0.1]]), torch.tensor([0]), torch.tensor([0, 1, 0])), 4)
    0.8333
    """
    if sim.shape != (len(query_labels), len(gallery_labels)):
        raise ValueError(f"sim must be (queries, gallery) = ({len(query_labels)}, {len(gallery_labels)}); "
                         f"got {tuple(sim.shape)}")
    order = sim.argsort(dim=1, descending=True)
    rel = (gallery_labels[order] == query_labels[:, None]).float()  # (queries, gallery), in ranked order
    precision = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1)
    ap = (precision * rel).sum(1) / rel.sum(1).clamp_min(1.0)
    return ap.mean().item()


def zero_shot_predict(image_emb: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
    """Class of each image = the class prompt with the highest cosine similarity.

    `class_emb` is (classes, dim) or (templates, classes, dim); with templates, the normalised
    prompt embeddings of each class are averaged (prompt ensembling, as in CLIP).

    >>> zero_shot_predict(torch.tensor([[0.0, 1.0]]), torch.eye(2)).tolist()
    [1]
    """
    if class_emb.dim() == 3:
        class_emb = F.normalize(class_emb, dim=-1).mean(0)
    return (F.normalize(image_emb, dim=-1) @ F.normalize(class_emb, dim=-1).T).argmax(1)


# ----------------------------------------------------------------------------------------------
# Visual question answering: questions about a digit, and three ways to fuse image and question
# ----------------------------------------------------------------------------------------------

QUESTION_KINDS = ("even", "odd", "larger", "smaller", "is")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_questions(labels: Sequence[int], per_image: int, generator: torch.Generator | None = None):
    """Yes/no questions about digits: (image index, question, answer 1 = yes, kind) lists.

    Kinds: "is this digit even/odd ?", "is it larger/smaller than N ?", "is it a WORD ?". For
    "is it a WORD" the asked digit is the true one half of the time, otherwise almost every answer
    would be "no".

    >>> idx, q, a, kind = make_questions([7], 1, torch.Generator().manual_seed(0)); len(q)
    1
    """
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1; got {per_image}")
    g = generator or torch.Generator().manual_seed(0)

    def r(n: int) -> int:
        return int(torch.randint(n, (1,), generator=g))

    idx, questions, answers, kinds = [], [], [], []
    for i, y in enumerate(int(v) for v in labels):
        for _ in range(per_image):
            kind = QUESTION_KINDS[r(len(QUESTION_KINDS))]
            if kind in ("even", "odd"):
                q, a = f"is this digit {kind} ?", (y % 2 == 0) == (kind == "even")
            elif kind in ("larger", "smaller"):
                k = r(10)
                q, a = f"is it {kind} than {k} ?", y > k if kind == "larger" else y < k
            else:
                k = y if r(2) else (y + 1 + r(9)) % 10
                q, a = f"is it {_article(DIGIT_WORDS[k])} {DIGIT_WORDS[k]} ?", k == y
            idx.append(i)
            questions.append(q)
            answers.append(int(a))
            kinds.append(kind)
    return idx, questions, answers, kinds


class BagOfWords(nn.Module):
    """Question encoder for late fusion: mean of word embeddings, then a dense layer."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(torch.float32)
        return self.fc((self.emb(ids) * m).sum(1) / m.sum(1).clamp_min(1.0))


class EarlyFusion(nn.Module):
    """Early fusion: concatenate raw pixels and one-hot question words, then one MLP sees both.

    >>> EarlyFusion(20, 6)(torch.rand(2, 1, 8, 8), torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6)).shape
    torch.Size([2, 2])
    """

    def __init__(self, vocab_size: int, max_len: int, n_pixels: int = 64, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.mlp = nn.Sequential(nn.Linear(n_pixels + max_len * vocab_size, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"questions of {ids.shape[1]} tokens exceed max_len={self.max_len}")
        words = F.one_hot(ids, self.vocab_size).float() * mask.unsqueeze(-1)
        words = F.pad(words, (0, 0, 0, self.max_len - ids.shape[1]))  # fixed width for the MLP
        return self.mlp(torch.cat([images.flatten(1), words.flatten(1)], 1))


class LateFusion(nn.Module):
    """Late fusion: an image encoder and a question encoder run separately and meet at the end.

    `mode="scores"` adds two separate yes/no predictions (no interaction between the modalities);
    `mode="product"` multiplies the two embeddings element-wise before a small head (a bilinear
    interaction), which is what a question like "is it larger than 5?" needs.

    >>> LateFusion(20)(torch.rand(2, 1, 8, 8), torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6)).shape
    torch.Size([2, 2])
    """

    def __init__(self, vocab_size: int, dim: int = 64, mode: str = "product", cnn_width: int = 16):
        super().__init__()
        if mode not in ("scores", "product"):
            raise ValueError(f"mode must be 'scores' or 'product'; got {mode!r}")
        self.mode = mode
        self.image = SmallCNN(width=cnn_width, dim=dim)
        self.question = BagOfWords(vocab_size, dim)
        if mode == "scores":
            self.image_head, self.question_head = nn.Linear(dim, 2), nn.Linear(dim, 2)
        else:
            self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v, q = self.image.embed(images), self.question(ids, mask)
        if self.mode == "scores":
            return self.image_head(v) + self.question_head(q)
        return self.head(v * q)


class ImageTokens(nn.Module):
    """An image as a sequence of region vectors, for cross-attention: (B, 1, H, W) -> (B, regions, dim).

    `kind="patches"`: linearly embedded p x p pixel patches, as in a ViT. `kind="cnn"`: the 4x4
    feature map of a `SmallCNN` trunk, each cell seeing a window of pixels around it (the grid
    features of early VQA and captioning models). Learned position vectors are added, then
    `depth` pre-LN encoder blocks let the regions exchange information.

    >>> ImageTokens(32, "patches", patch=2)(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 16, 32])
    """

    def __init__(self, dim: int, kind: str = "cnn", patch: int = 2, cnn_width: int = 16, image_size: int = 8,
                 depth: int = 0, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if kind not in ("cnn", "patches"):
            raise ValueError(f"image tokens must be 'cnn' or 'patches'; got {kind!r}")
        self.kind = kind
        if kind == "cnn":
            cnn = SmallCNN(width=cnn_width, image_size=image_size)
            self.trunk = cnn.conv  # only the convolutional part: no dense layer, no classifier
            self.proj = nn.Linear(2 * cnn_width, dim)
            n = (image_size // 2) ** 2
        else:
            self.patch_embed = PatchEmbedding(patch, 1, dim)
            n = (image_size // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, 2 * dim, dropout, "gelu", norm_first=True)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn":
            h = self.proj(self.trunk(images).flatten(2).transpose(1, 2))
        else:
            h = self.patch_embed(images)
        h = h + self.pos
        for block in self.blocks:
            h = block(h)
        return self.norm(h)


class CrossAttentionFusion(nn.Module):
    """Cross-attention fusion: question tokens attend to image region tokens (decoder blocks, no causal mask).

    Each question word looks for the image regions it needs (`ImageTokens`); after `depth`
    blocks the question tokens are mean-pooled into the answer. `forward(..., need_weights=True)`
    also returns the last block's cross-attention weights (B, heads, question length, regions).

    >>> CrossAttentionFusion(20)(torch.rand(2, 1, 8, 8), torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6)).shape
    torch.Size([2, 2])
    """

    def __init__(self, vocab_size: int, dim: int = 64, heads: int = 4, depth: int = 2, max_len: int = 16,
                 image_tokens: str = "cnn", patch: int = 2, image_depth: int = 0, dropout: float = 0.0):
        super().__init__()
        self.image = ImageTokens(dim, image_tokens, patch=patch, depth=image_depth, heads=heads, dropout=dropout)
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.tok_pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads, 2 * dim, dropout, "gelu", norm_first=True)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, need_weights: bool = False):
        regions = self.image(images)
        h = self.tok(ids) + self.tok_pos[:ids.shape[1]]
        w = None
        for block in self.blocks:
            out = block(h, regions, self_mask=padding_mask(mask), is_causal=False, need_weights=need_weights)
            h, w = (out[0], out[1]["cross"]) if need_weights else (out, None)
        m = mask.unsqueeze(-1).to(torch.float32)
        logits = self.head((self.norm(h) * m).sum(1) / m.sum(1).clamp_min(1.0))
        return (logits, w) if need_weights else logits


# ----------------------------------------------------------------------------------------------
# Captioning: an image-conditioned text decoder
# ----------------------------------------------------------------------------------------------

class CaptionModel(nn.Module):
    """Image region tokens + a Transformer decoder whose cross-attention reads them.

    Trained with teacher forcing (`forward(images, ids)` gives next-token logits at every
    position); `generate` decodes greedily, one token at a time, until <eos>.

    >>> m = CaptionModel(12, dim=16, heads=2); m(torch.rand(2, 1, 8, 8), torch.ones(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 12])
    """

    def __init__(self, vocab_size: int, dim: int = 64, heads: int = 4, depth: int = 2, max_len: int = 12,
                 image_tokens: str = "patches", patch: int = 2, image_depth: int = 1, dropout: float = 0.0):
        super().__init__()
        self.max_len = max_len
        self.image = ImageTokens(dim, image_tokens, patch=patch, depth=image_depth, heads=heads, dropout=dropout)
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.decoder = nn.ModuleList(DecoderBlock(dim, heads, 2 * dim, dropout, "gelu", norm_first=True)
                                     for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size)

    def decode(self, ids: torch.Tensor, memory: torch.Tensor, need_weights: bool = False):
        """Next-token logits (B, L, V) for token ids (B, L) given image tokens `memory`."""
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_len={self.max_len}")
        h = self.tok(ids) + self.pos[:ids.shape[1]]
        w = None
        for block in self.decoder:
            out = block(h, memory, is_causal=True, need_weights=need_weights)
            h, w = (out[0], out[1]["cross"]) if need_weights else (out, None)
        logits = self.lm_head(self.norm(h))
        return (logits, w) if need_weights else logits

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.decode(ids, self.image(images))

    @torch.no_grad()
    def generate(self, images: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int | None = None) -> torch.Tensor:
        """Greedy decoding: (B, 1 + generated) ids starting with <bos>; finished rows pad with <eos>."""
        n = min(max_new_tokens or self.max_len - 1, self.max_len - 1)
        memory = self.image(images)  # the image is encoded once; only the text grows
        ids = torch.full((len(images), 1), bos_id, dtype=torch.long, device=images.device)
        done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for _ in range(n):
            nxt = self.decode(ids, memory)[:, -1].argmax(-1)
            nxt = nxt.masked_fill(done, eos_id)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == eos_id
            if done.all():
                break
        return ids


# ----------------------------------------------------------------------------------------------
# Hub models (gpu profile): the same measurements with pretrained CLIP and a pretrained captioner
# ----------------------------------------------------------------------------------------------

def to_rgb_uint8(images: torch.Tensor) -> list:
    """(N, 1, H, W) images in [0, 1] -> list of (H, W, 3) uint8 arrays, the input image processors expect.

    >>> to_rgb_uint8(torch.ones(1, 1, 8, 8))[0].shape
    (8, 8, 3)
    """
    import numpy as np

    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey images (N, 1, H, W) in [0, 1]; got shape {tuple(images.shape)}")
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()
    return [np.repeat(a[..., None], 3, axis=-1) for a in arr]


def _pooled(out) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected feature;
    # earlier versions returned the tensor itself.
    return out.pooler_output if hasattr(out, "pooler_output") else out


@torch.no_grad()
def hub_zero_shot(model, processor, images: torch.Tensor, prompts: Sequence[Sequence[str]],
                  batch_size: int = 64) -> torch.Tensor:
    """Zero-shot classes from a `transformers` CLIPModel: `prompts[t][c]` is template t for class c.

    The normalised text embeddings of each class are averaged over templates (prompt ensembling);
    each image gets the class of the closest average. Images are (N, 1, H, W) in [0, 1].

    >>> clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch32")     # doctest: +SKIP
    >>> hub_zero_shot(clip, AutoProcessor.from_pretrained("openai/clip-vit-base-patch32"), x, [["a 0", "a 1"]])  # doctest: +SKIP
    """
    if not prompts or len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts must be a non-empty list of templates, each a list with one text per class")
    device = next(model.parameters()).device
    n_t, n_c = len(prompts), len(prompts[0])
    text = processor(text=[p for t in prompts for p in t], return_tensors="pt", padding=True).to(device)
    t_emb = F.normalize(_pooled(model.get_text_features(**text)), dim=-1).view(n_t, n_c, -1)
    rgb = to_rgb_uint8(images)
    preds = []
    for i in range(0, len(rgb), batch_size):
        pix = processor(images=rgb[i:i + batch_size], return_tensors="pt")["pixel_values"].to(device)
        preds.append(zero_shot_predict(_pooled(model.get_image_features(pixel_values=pix)), t_emb).cpu())
    return torch.cat(preds)


@torch.no_grad()
def hub_captions(model, image_processor, tokenizer, images: torch.Tensor, max_new_tokens: int = 16,
                 batch_size: int = 32) -> list[str]:
    """Greedy captions from a `transformers` VisionEncoderDecoderModel for (N, 1, H, W) images in [0, 1].

    >>> hub_captions(VisionEncoderDecoderModel.from_pretrained(hub_id), ip, tok, x[:4])   # doctest: +SKIP
    """
    device = next(model.parameters()).device
    rgb, out = to_rgb_uint8(images), []
    for i in range(0, len(rgb), batch_size):
        pix = image_processor(images=rgb[i:i + batch_size], return_tensors="pt")["pixel_values"].to(device)
        ids = model.generate(pixel_values=pix, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
        out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


# ----------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------

def fit(model: nn.Module, loss_fn: Callable[..., torch.Tensor], data: Sequence[torch.Tensor], epochs: int,
        batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 0.01, seed: int = 0,
        after_step: Callable[[], None] | None = None, desc: str | None = None) -> list[float]:
    """Train `model` with AdamW and a cosine learning-rate schedule; returns the mean loss per epoch.

    `data` are tensors with the same first dimension, shuffled together each epoch;
    `loss_fn(model, *batch)` returns the scalar loss; `after_step` runs after each update (e.g.
    `clip.clamp_`).

    >>> m = nn.Linear(2, 1); x, y = torch.randn(64, 2), torch.randn(64, 1)
    >>> len(fit(m, lambda m, a, b: F.mse_loss(m(a), b), [x, y], epochs=3))
    3
    """
    from tqdm.auto import tqdm

    n = len(data[0])
    if any(len(t) != n for t in data):
        raise ValueError(f"all tensors in data need the same length; got {[len(t) for t in data]}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    # Decay matrices only: shrinking biases, LayerNorm gains or CLIP's logit scale towards 0 is
    # not regularisation, it fights the model (the convention of CLIP and GPT-2 training code).
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=desc is None, leave=False):
        perm, total = torch.randperm(n, generator=g), 0.0
        for i in range(0, n, batch_size):
            batch = [t[perm[i:i + batch_size]] for t in data]
            loss = loss_fn(model, *batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
            total += loss.item() * len(batch[0])
        history.append(total / n)
    model.eval()
    return history
