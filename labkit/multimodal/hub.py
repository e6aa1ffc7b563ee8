"""Hub models (gpu profile): the same measurements with pretrained CLIP and a pretrained captioner."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .clip import zero_shot_predict


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
