"""Sentiment analysis (情感分析): baselines, few-shot learning, metrics, calibration, intensity and time.

Chapter 14 writes each idea out in the notebook and then uses these versions:
- `baselines`: `vader_compound` (lexicon, English), `tfidf_classifier` (TF-IDF + logistic regression,
  words for English, jieba words and/or character n-grams for Chinese), `zero_shot_scores` (a chat
  model asked for "positive"/"negative", scored by the two answer tokens' log-probabilities), and
  `load_eval_csv`, which reads the reader's own `text,label` file and says exactly what is wrong;
- `fewshot`: SetFit's recipe, contrastive sentence pairs (`contrastive_pairs`, `cosine_pair_loss`,
  `contrastive_finetune`) before a logistic regression on the tuned embeddings;
- `metrics`: `binary_report` (accuracy, macro-F1, confusion matrix), `reliability` and
  `expected_calibration_error`, `spearman`, `confident_joint` (label noise), `best_model`;
- `stream`: `review_stream` (a dated stream with known changes), `rolling_mean`, `change_points`
  (binary segmentation of the mean).
Everything is re-exported here: `from labkit import sentiment as S; S.binary_report(...)`.
"""
from ..data import EvalFileError
from .baselines import (FEATURES, LANGUAGES, ZERO_SHOT_PROMPT, Predictor, _check_texts, _jieba_cached,
                        clip_middle, jieba_words, load_eval_csv, tfidf_classifier, vader_compound,
                        vader_lexicon, zero_shot_scores)
from .fewshot import (ContrastiveConfig, ContrastiveHistory, contrastive_finetune, contrastive_pairs,
                      cosine_pair_loss, freeze_below, mean_pool)
from .metrics import (BinaryReport, _binary, _ranks, best_model, binary_report, confident_joint,
                      expected_calibration_error, reliability, spearman)
from .stream import change_points, review_stream, rolling_mean

__all__ = [
    "EvalFileError", "FEATURES", "LANGUAGES", "ZERO_SHOT_PROMPT", "Predictor", "clip_middle", "jieba_words",
    "load_eval_csv", "tfidf_classifier", "vader_compound", "vader_lexicon", "zero_shot_scores",
    "ContrastiveConfig", "ContrastiveHistory", "contrastive_finetune", "contrastive_pairs", "cosine_pair_loss",
    "freeze_below", "mean_pool", "BinaryReport", "best_model", "binary_report", "confident_joint",
    "expected_calibration_error", "reliability", "spearman", "change_points", "review_stream", "rolling_mean",
]
