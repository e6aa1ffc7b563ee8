"""Text preprocessing and tokenization, written out so a reader can follow every step.

One idea per module:

- `cleaning`: `fullwidth_to_halfwidth`, `normalize`, `remove_punctuation`, `clean`;
- `stopwords`: stop-word lists (`english_stopwords`, `chinese_stopwords`), `remove_stopwords`;
- `lemmas`: a small morphy-style `lemmatize`;
- `segmentation`: Chinese word segmentation, `max_match` (forward, backward, bidirectional) with a
  dictionary, and `segmentation_prf`, the word-level precision / recall / F1 of the SIGHAN bakeoffs;
- `bpe`: byte-pair encoding, `train_bpe` (the same merges as Hugging Face `tokenizers`'
  `BpeTrainer` with a `ByteLevel` pre-tokenizer), `ByteBPE.encode` / `ByteBPE.decode`;
- `augmentation`: EDA-style augmentation, `synonym_replace`, `random_insert`, `random_swap`,
  `random_delete`, `eda`, and `cedict_synonyms`;
- `batching`: `pad_collate`, dynamic (or fixed) padding for a torch `DataLoader`.

Everything is importable from `labkit.text` itself, as before the split.
"""
from .augmentation import cedict_synonyms, eda, random_delete, random_insert, random_swap, synonym_replace
from .batching import pad_collate, padding_share
from .bpe import (BYTE_TO_CHAR, CHAR_TO_BYTE, GPT2_PATTERN, ByteBPE, byte_level_pretokenize, bytes_to_unicode,
                  train_bpe)
from .cleaning import clean, fullwidth_to_halfwidth, is_punctuation, normalize, remove_punctuation
from .lemmas import IRREGULAR_LEMMAS, lemmatize
from .segmentation import max_match, segmentation_prf, word_spans
from .stopwords import chinese_stopwords, english_stopwords, remove_stopwords

__all__ = [
    "fullwidth_to_halfwidth", "normalize", "is_punctuation", "remove_punctuation", "clean",
    "english_stopwords", "chinese_stopwords", "remove_stopwords", "IRREGULAR_LEMMAS", "lemmatize",
    "max_match", "word_spans", "segmentation_prf",
    "bytes_to_unicode", "BYTE_TO_CHAR", "CHAR_TO_BYTE", "GPT2_PATTERN", "byte_level_pretokenize", "ByteBPE",
    "train_bpe", "synonym_replace", "random_insert", "random_swap", "random_delete", "eda", "cedict_synonyms",
    "pad_collate", "padding_share",
]
