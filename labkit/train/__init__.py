"""Training: the book's one loop family, its schedule and weight-decay rule, and the language models
the book trains itself.

- `loop`: `fit` (the one training loop: AdamW over `param_groups`, warm-up + cosine `lr_at`,
  clipping, gradient accumulation, progress bar, `labkit.runtime` device and autocast), `History`,
  `to_device`, `shuffled_batches`. Every loop in `labkit` is a thin user of `fit`.
- `lm`: causal language models on token blocks (`TokenBlocks`, `TrainConfig`, `train_lm`,
  `estimate_loss`, `full_loss`, exact checkpoints).
- `mlm`: masked language models (`mask_tokens`, `train_mlm`, `mlm_accuracy`, `char_tokenizer`,
  `build_zh_char_bert`).

Taught in chapter 06; `from labkit import train` then `train.fit`, `train.train_lm`, ... .
"""
from .loop import History, fit, lr_at, param_groups, shuffled_batches, to_device
from .lm import (TokenBlocks, TrainConfig, estimate_loss, full_loss, load_checkpoint, save_checkpoint,
                 train_lm)
from .mlm import (ZH_CHAR_BERT, build_zh_char_bert, char_tokenizer, mask_tokens, mlm_accuracy, mlm_batches,
                  train_mlm)

__all__ = [
    "History", "fit", "lr_at", "param_groups", "shuffled_batches", "to_device",
    "TokenBlocks", "TrainConfig", "estimate_loss", "full_loss", "load_checkpoint", "save_checkpoint", "train_lm",
    "ZH_CHAR_BERT", "build_zh_char_bert", "char_tokenizer", "mask_tokens", "mlm_accuracy", "mlm_batches",
    "train_mlm",
]
