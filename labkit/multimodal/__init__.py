"""Images and text together: image encoders, captions, CLIP-style alignment, fusion, captioning.

Everything here is small enough for 8x8 digit images on a CPU (chapter 12). One module per idea:
- `images`: image encoders written from scratch: `SmallCNN` and `TinyViT` (patch embeddings,
  `patchify`), and `ImageTokens`, an image as a sequence of region vectors;
- `captions`: captions built from labels with templates (`TRAIN_TEMPLATES` and `TEST_TEMPLATES`
  are disjoint), a word-level `WordVocab` and a small `TextEncoder`;
- `clip`: two towers, projections to a joint space and a learned logit scale (`CLIP`), trained with
  the symmetric InfoNCE loss `clip_loss` (equal to `transformers`' CLIPModel loss,
  tests/test_multimodal.py); retrieval and zero-shot metrics (`recall_at_k`, `zero_shot_predict`);
- `vqa`: visual question answering with three fusion strategies (`EarlyFusion`, `LateFusion`,
  `CrossAttentionFusion`);
- `captioning`: an image-conditioned caption decoder (`CaptionModel`);
- `hub`: the same measurements with pretrained hub models (gpu profile);
- `training`: the training loop of the chapter (`fit`).
Attention blocks come from `labkit.attention` (chapter 05). Everything is re-exported here:
`from labkit import multimodal as mm; mm.CLIP(...)`.
"""
from .images import digit_images, patchify, shift_augment, PatchEmbedding, SmallCNN, TinyViT, ImageTokens
from .captions import (
    DIGIT_WORDS, TRAIN_TEMPLATES, TEST_TEMPLATES, caption, captions_for, digits_in, WordVocab, TextEncoder,
)
from .clip import clip_loss, CLIP, recall_at_k, mean_average_precision, zero_shot_predict
from .vqa import QUESTION_KINDS, make_questions, BagOfWords, EarlyFusion, LateFusion, CrossAttentionFusion
from .captioning import CaptionModel
from .hub import to_rgb_uint8, hub_zero_shot, hub_captions
from .training import fit


__all__ = [
    "digit_images", "patchify", "shift_augment", "PatchEmbedding", "SmallCNN", "TinyViT",
    "DIGIT_WORDS", "TRAIN_TEMPLATES", "TEST_TEMPLATES", "caption", "captions_for", "digits_in",
    "WordVocab", "TextEncoder", "clip_loss", "CLIP", "recall_at_k", "mean_average_precision", "zero_shot_predict",
    "make_questions", "EarlyFusion", "LateFusion", "ImageTokens", "CrossAttentionFusion", "CaptionModel",
    "to_rgb_uint8", "hub_zero_shot", "hub_captions", "fit",
]
