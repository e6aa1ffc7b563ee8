"""Images: digit images as tensors, patches, and the image encoders (CNN, ViT, region tokens)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import EncoderBlock


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
