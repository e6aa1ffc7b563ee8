"""Sentiment baselines (chapter 14): VADER's lexicon, TF-IDF + logistic regression, zero-shot prompting,
jieba words, and the reader's own `text,label` file.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data import EvalFileError, read_labelled_csv

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


def _check_texts(texts) -> None:
    if isinstance(texts, str):
        raise TypeError("pass a list of texts; wrap a single text in [...]")


Predictor = Callable[[Sequence[str]], np.ndarray]  # texts -> probability of "positive"
