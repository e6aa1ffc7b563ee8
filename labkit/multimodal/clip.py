"""CLIP-style contrastive alignment, and the retrieval and zero-shot metrics that measure it."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


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

    >>> from labkit.multimodal.images import SmallCNN
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
