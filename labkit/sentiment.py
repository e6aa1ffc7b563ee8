"""Sentiment analysis (情感分析): baselines, metrics, calibration, intensity and sentiment over time.

Chapter 14 writes each idea out in the notebook and then uses these versions:
- baselines: `vader_compound` (lexicon, English), `tfidf_classifier` (TF-IDF + logistic regression,
  words for English, jieba words and/or character n-grams for Chinese), `zero_shot_scores` (a chat
  model asked for "positive"/"negative", scored by the two answer tokens' log-probabilities);
- evaluation: `binary_report` (accuracy, macro-F1, confusion matrix), `reliability` and
  `expected_calibration_error`, `spearman`;
- over time: `review_stream` (a dated stream with known changes), `rolling_mean`, `change_points`
  (binary segmentation of the mean);
- the reader's own data: `load_eval_csv` reads `text,label` files and says exactly what is wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data import EvalFileError, read_labelled_csv

LANGUAGES = ("en", "zh")


# --- the reader's own data --------------------------------------------------------------------------

def load_eval_csv(path: str | Path, language: str = "en") -> tuple[list[str], list[int]]:
    """Read a CSV with columns `text,label` (label 1 = positive, 0 = negative) for evaluation in `language`.

    The file checks are those of `labkit.data.read_labelled_csv`; a bad file raises `EvalFileError`.

    >>> texts, labels = load_eval_csv("my_reviews.csv", language="en")     # doctest: +SKIP
    >>> len(texts) == len(labels)                                           # doctest: +SKIP
    """
    if language not in LANGUAGES:
        raise EvalFileError(f"language must be one of {LANGUAGES}, got {language!r}")
    return read_labelled_csv(path)


# --- baselines ----------------------------------------------------------------------------------------

def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score in [-1, 1] for each English text (rule-based lexicon model).

    >>> vader_compound(["A great, moving film.", "Dull and far too long."]).round(2)
    array([ 0.62, -0.4 ])
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    _check_texts(texts)
    sia = SentimentIntensityAnalyzer()
    return np.array([sia.polarity_scores(t)["compound"] for t in texts])


def vader_lexicon() -> dict[str, float]:
    """VADER's lexicon: token -> mean valence of 10 human ratings, from -4 (negative) to +4.

    >>> vader_lexicon()["good"]
    1.9
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return dict(SentimentIntensityAnalyzer().lexicon)


def jieba_words(text: str) -> list[str]:
    """Chinese word segmentation with jieba (its log messages silenced).

    >>> jieba_words("这本书很好看")
    ['这', '本书', '很', '好看']
    """
    return list(_jieba_cached(text))


@lru_cache(maxsize=200_000)
def _jieba_cached(text: str) -> tuple[str, ...]:
    # Cached: a words pipeline and a words+chars pipeline segment the same reviews again.
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return tuple(w for w in jieba.lcut(text) if w.strip())


def clip_middle(text: str, max_chars: int) -> str:
    """Keep the first and the last characters of a long text, dropping the middle.

    Reviews often open with the topic and close with the verdict, so for a model that reads a fixed
    number of characters, head + tail keeps more of the sentiment than the head alone.
    >>> clip_middle("abcdefghij", 6)
    'abchij'
    """
    if max_chars < 2:
        raise ValueError(f"max_chars must be at least 2, got {max_chars}")
    if len(text) <= max_chars:
        return text
    head = max_chars // 2
    return text[:head] + text[len(text) - (max_chars - head):]


FEATURES = ("words", "chars", "words+chars")


def tfidf_classifier(features: str = "words", language: str = "en", ngram_range: tuple[int, int] = (1, 2),
                     char_ngram_range: tuple[int, int] = (1, 3), C: float = 4.0, min_df: int = 1):
    """An (unfitted) scikit-learn pipeline: TF-IDF features -> L2-regularised logistic regression.

    features: "words" (English: sklearn's word tokens; Chinese: jieba words), "chars" (character
    n-grams) or "words+chars" (both, side by side).
    >>> clf = tfidf_classifier("words+chars", language="zh").fit(train_texts, train_labels)  # doctest: +SKIP
    >>> clf.predict_proba(["质量很好"])[:, 1]                                                  # doctest: +SKIP
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    # sublinear_tf: 1 + log(tf), so a word said five times does not count five times as much.
    if language == "zh":
        words = TfidfVectorizer(tokenizer=jieba_words, token_pattern=None, lowercase=False,
                                ngram_range=ngram_range, sublinear_tf=True, min_df=min_df)
    else:
        words = TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, min_df=min_df)
    chars = TfidfVectorizer(analyzer="char", ngram_range=char_ngram_range, sublinear_tf=True, min_df=min_df)
    vec = {"words": words, "chars": chars,
           "words+chars": FeatureUnion([("words", words), ("chars", chars)])}[features]
    return make_pipeline(vec, LogisticRegression(C=C, max_iter=3000))


ZERO_SHOT_PROMPT = ("Is the sentiment of this review positive or negative?\n"
                    "Review: {text}\nAnswer with one word: positive or negative.")


def zero_shot_scores(model, tokenizer, texts: Sequence[str], prompt: str = ZERO_SHOT_PROMPT,
                     labels: tuple[str, str] = ("negative", "positive"), progress: bool = True) -> np.ndarray:
    """Zero-shot (零样本) sentiment from a chat model: log p(positive) - log p(negative) for the first
    answer token after the chat template. Positive score = positive review.

    >>> lm, tok = labkit.assets.load_model("smollm2-135m-instruct")            # doctest: +SKIP
    >>> zero_shot_scores(lm, tok, ["I loved it."]) > 0                          # doctest: +SKIP
    array([ True])
    """
    import torch

    _check_texts(texts)
    if "{text}" not in prompt:
        raise ValueError("the prompt must contain the placeholder {text}")
    ids = []
    for lab in labels:
        tok_ids = tokenizer(lab, add_special_tokens=False)["input_ids"]
        ids.append(tok_ids[0])  # only the first token is compared; it must differ between labels
    if ids[0] == ids[1]:
        raise ValueError(f"the labels {labels} start with the same token; choose other label words")
    device = next(model.parameters()).device
    out = np.zeros(len(texts))
    it = range(len(texts))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="zero-shot", leave=False)
    with torch.inference_mode():
        for i in it:
            msgs = [{"role": "user", "content": prompt.format(text=texts[i])}]
            enc = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True).to(device)
            logp = model(**enc).logits[0, -1].float().log_softmax(-1)
            out[i] = float(logp[ids[1]] - logp[ids[0]])
    return out


# --- evaluation ---------------------------------------------------------------------------------------

@dataclass
class BinaryReport:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray  # rows = true label (0, 1), columns = predicted label

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


def binary_report(labels: Sequence[int], predictions: Sequence[int]) -> BinaryReport:
    """Accuracy, macro-F1 (the mean of the F1 of each class) and the 2x2 confusion matrix.

    >>> r = binary_report([1, 1, 0, 0], [1, 0, 0, 0]); r.accuracy, round(r.macro_f1, 3)
    (0.75, 0.733)
    """
    y, p = _binary(labels, "labels"), _binary(predictions, "predictions")
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (y, p), 1)
    f1 = []
    for c in (0, 1):
        tp, fp, fn = cm[c, c], cm[1 - c, c], cm[c, 1 - c]
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return BinaryReport(float(np.mean(y == p)), float(np.mean(f1)), cm)


def reliability(labels: Sequence[int], prob_positive: Sequence[float], n_bins: int = 10):
    """Reliability diagram data with equal-width bins on the confidence of the predicted class.

    Returns (confidence, accuracy, count) per non-empty bin.
    >>> conf, acc, n = reliability([1, 0, 1, 1], [0.9, 0.2, 0.6, 0.3], n_bins=2)
    """
    y = _binary(labels, "labels")
    p = np.asarray(prob_positive, dtype=float)
    if p.shape != y.shape or np.any((p < 0) | (p > 1)):
        raise ValueError("prob_positive must hold one probability in [0, 1] per label")
    pred = (p >= 0.5).astype(int)
    conf = np.where(pred == 1, p, 1 - p)  # in [0.5, 1]
    correct = (pred == y).astype(float)
    # Bins over [0.5, 1]: binary confidence never goes below one half.
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out_c, out_a, out_n = [], [], []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out_c.append(conf[m].mean())
            out_a.append(correct[m].mean())
            out_n.append(int(m.sum()))
    return np.array(out_c), np.array(out_a), np.array(out_n)


def expected_calibration_error(labels: Sequence[int], prob_positive: Sequence[float], n_bins: int = 10) -> float:
    """ECE (期望校准误差): sum over bins of (bin size / n) * |accuracy - mean confidence|.

    >>> expected_calibration_error([1, 0], [1.0, 0.0])
    0.0
    """
    conf, acc, n = reliability(labels, prob_positive, n_bins)
    return float(np.sum(n / n.sum() * np.abs(acc - conf)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson correlation of the ranks (ties get their average rank).

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
    0.8
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("spearman needs two 1-d sequences of the same length (at least 2)")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra ** 2).sum() * (rb ** 2).sum()))


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    r = np.empty(len(a))
    r[order] = np.arange(1, len(a) + 1)
    # Tied values share the mean of the ranks they span.
    vals, inv = np.unique(a, return_inverse=True)
    return np.bincount(inv, weights=r)[inv] / np.bincount(inv)[inv]


# --- sentiment over time ----------------------------------------------------------------------------

def review_stream(texts: Sequence[str], labels: Sequence[int], days: int = 180, per_day: int = 6,
                  regimes: Sequence[tuple[int, float]] = ((0, 0.75), (60, 0.3), (120, 0.6)),
                  start: str = "2024-01-01", seed: int = 0):
    """A dated stream of reviews whose share of positives changes at known days.

    regimes: (first day, probability that a review is positive) pairs, in order, the first at day 0.
    Returns a pandas DataFrame with columns date, day, index (into `texts`), text, label; reviews are
    drawn with replacement from the positive or the negative pool.
    >>> df = review_stream(texts, labels, days=90, regimes=[(0, 0.8), (45, 0.3)])   # doctest: +SKIP
    """
    import pandas as pd

    y = _binary(labels, "labels")
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    starts = [d for d, _ in regimes]
    if not regimes or starts[0] != 0 or starts != sorted(starts) or starts[-1] >= days:
        raise ValueError("regimes must start at day 0, be in increasing order and lie within `days`")
    if any(not 0 <= q <= 1 for _, q in regimes):
        raise ValueError("each regime's positive share must be in [0, 1]")
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(y == c) for c in (0, 1)]
    if any(len(pl) == 0 for pl in pools):
        raise ValueError("review_stream needs positive and negative texts")
    rows = []
    for day in range(days):
        q = [share for d, share in regimes if d <= day][-1]
        for _ in range(per_day):
            c = int(rng.random() < q)
            i = int(rng.choice(pools[c]))
            rows.append((day, i, texts[i], c))
    df = pd.DataFrame(rows, columns=["day", "index", "text", "label"])
    df.insert(0, "date", pd.Timestamp(start) + pd.to_timedelta(df["day"], unit="D"))
    return df


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start), like pandas' rolling(min_periods=1).

    >>> rolling_mean([1, 2, 3, 4], 2)
    array([1. , 1.5, 2.5, 3.5])
    """
    v = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    c = np.concatenate([[0.0], np.cumsum(v)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(hi - window, 0)
    return (c[hi] - c[lo]) / (hi - lo)


def change_points(values: Sequence[float], max_points: int = 5, min_size: int = 5,
                  penalty: float | None = None) -> list[int]:
    """Where the mean of a series shifts: binary segmentation (二分分割) with a squared-error cost.

    Each step splits the segment whose best split lowers the cost most, while that gain exceeds
    `penalty` (default: 2 * variance estimate * ln n, a BIC-like rule). Returns sorted indices i, the
    first index of each new segment.
    >>> change_points([0.0] * 20 + [1.0] * 20, max_points=2)
    [20]
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2 * min_size:
        return []
    if penalty is None:
        # Noise scale from differences of neighbours: a mean shift barely moves it.
        sigma2 = np.median(np.abs(np.diff(v))) ** 2 / (2 * 0.6745 ** 2) if n > 2 else v.var()
        penalty = 2 * max(sigma2, 1e-12) * math.log(n)
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = np.concatenate([[0.0], np.cumsum(v * v)])

    def cost(a: int, b: int) -> float:  # squared error of v[a:b] around its mean
        s = c1[b] - c1[a]
        return c2[b] - c2[a] - s * s / (b - a)

    def best_split(a: int, b: int) -> tuple[float, int]:
        if b - a < 2 * min_size:
            return 0.0, -1
        ks = np.arange(a + min_size, b - min_size + 1)
        gains = [cost(a, b) - cost(a, k) - cost(k, b) for k in ks]
        j = int(np.argmax(gains))
        return float(gains[j]), int(ks[j])

    segments, points = [(0, n)], []
    while len(points) < max_points:
        cands = [(best_split(a, b), (a, b)) for a, b in segments]
        (gain, k), (a, b) = max(cands, key=lambda c: c[0][0])
        if k < 0 or gain <= penalty:
            break
        points.append(k)
        segments.remove((a, b))
        segments += [(a, k), (k, b)]
    return sorted(points)


# --- label noise -----------------------------------------------------------------------------------

def confident_joint(labels: Sequence[int], prob_positive: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """Confident learning (Northcutt, Jiang & Chuang 2021) for two classes, from out-of-sample probabilities.

    Each class j gets a threshold t_j, the mean predicted probability of j over the examples labelled j.
    An example counts towards class j when its probability of j reaches t_j (the larger one when both
    do). Returns the confident joint C (rows: given label, columns: likely true label), the mask of
    examples whose likely true label differs from the given one, and the estimated share of wrong
    labels (C calibrated to the class counts, off-diagonal mass over the total).

    >>> C, flagged, rate = confident_joint([0, 0, 0, 1, 1, 1], [0.0, 0.25, 0.875, 0.5, 1.0, 0.75])
    >>> C.tolist(), flagged.tolist(), round(rate, 3)
    ([[2, 1], [0, 2]], [False, False, True, False, False, False], 0.167)
    """
    y = _binary(labels, "labels")
    p = np.asarray(prob_positive, dtype=float)
    if p.shape != y.shape or ((p < 0) | (p > 1)).any():
        raise ValueError("prob_positive must be probabilities in [0, 1], one per label")
    if len(np.unique(y)) < 2:
        raise ValueError("confident learning needs examples of both labels")
    probs = np.stack([1 - p, p], axis=1)
    t = np.array([probs[y == j, j].mean() for j in (0, 1)])
    above = probs >= t
    likely = np.where(above.all(1), probs.argmax(1), np.where(above.any(1), above.argmax(1), -1))
    C = np.array([[int(((y == i) & (likely == j)).sum()) for j in (0, 1)] for i in (0, 1)])
    calibrated = C / np.maximum(C.sum(1, keepdims=True), 1) * np.bincount(y, minlength=2)[:, None]
    return C, (likely >= 0) & (likely != y), float((calibrated[0, 1] + calibrated[1, 0]) / calibrated.sum())


# --- helpers ------------------------------------------------------------------------------------------

def best_model(scores: dict[str, float]) -> str:
    """The name with the highest score (ties: the first listed).

    >>> best_model({"tfidf": 0.8, "bert": 0.9})
    'bert'
    """
    if not scores:
        raise ValueError("no models to choose from")
    return max(scores, key=lambda k: (scores[k], -list(scores).index(k)))


def _check_texts(texts) -> None:
    if isinstance(texts, str):
        raise TypeError("pass a list of texts; wrap a single text in [...]")


def _binary(values, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or not np.isin(a, (0, 1)).all():
        raise ValueError(f"{what} must be a 1-d sequence of 0/1 values")
    return a.astype(int)


Predictor = Callable[[Sequence[str]], np.ndarray]  # texts -> probability of "positive"
