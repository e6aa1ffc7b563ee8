"""Machine translation: parallel data, a shared BPE, an encoder-decoder Transformer, decoding, scores.

One idea per module:

- `numbers_dates`: `numbers_dates_pairs` (numbers and dates written out in English, Chinese,
  French, German, Spanish with `num2words`, `babel` and `zh_number`);
- `bible`: `load_bible_pairs` (verse-aligned World English Bible / Reina-Valera 1909 read with
  `pysword`; None, with a plain message, when the SWORD modules are absent);
- `group_split`: `split_by_group` (train/test without shared groups);
- `tokens`: `train_shared_bpe` (one byte-level BPE for both languages, Hugging Face `tokenizers`),
  `encode_pairs`, `batches` (length-bucketed, padded);
- `model`: `Seq2SeqTransformer`, built from chapter 05's `EncoderBlock` / `DecoderBlock` and
  checked against `torch.nn.Transformer` (`load_torch_transformer`);
- `training`: `label_smoothed_cross_entropy` (equal to `F.cross_entropy(label_smoothing=...)`),
  `train_seq2seq` (teacher forcing; works for this model and a Hugging Face encoder-decoder);
- `decoding`: `greedy_decode`, `beam_search` (checked against `transformers`' `generate`),
  `translate`, `cross_attention`;
- `scores`: `corpus_bleu` written out (equal to `sacrebleu`), `sacre_bleu`, `chrf`, `exact_match`;
- `prompting`: `llm_translate`, zero- or few-shot translation with a chat LLM.

Everything is importable from `labkit.translate` itself, as before the split.
"""
from .bible import SWORD_DIR, _osis_text, load_bible_pairs
from .decoding import beam_search, cross_attention, greedy_decode, translate
from .group_split import split_by_group
from .model import Seq2SeqConfig, Seq2SeqTransformer
from .numbers_dates import LANG_NAMES, date_text, number_words, numbers_dates_pairs, zh_number
from .prompting import llm_translate
from .scores import chrf, corpus_bleu, exact_match, sacre_bleu
from .tokens import BOS, EOS, PAD, batches, encode_pairs, train_shared_bpe
from .training import label_smoothed_cross_entropy, train_seq2seq

__all__ = [
    "LANG_NAMES", "zh_number", "number_words", "date_text", "numbers_dates_pairs", "split_by_group",
    "SWORD_DIR", "load_bible_pairs", "train_shared_bpe", "encode_pairs", "batches",
    "Seq2SeqConfig", "Seq2SeqTransformer", "label_smoothed_cross_entropy", "train_seq2seq",
    "greedy_decode", "beam_search", "translate", "cross_attention", "corpus_bleu", "sacre_bleu",
    "chrf", "exact_match", "llm_translate",
]
