"""Summarization: sentences, ROUGE, TextRank, a faithfulness check, and offline document/reference pairs.

Chapter 17 writes each piece by hand in the notebook and checks it against this module and the
reference libraries (`rouge-score`, `networkx`); later chapters use the module.

- `split_sentences(text, lang)`: English (abbreviation-aware) and Chinese (。！？；) sentence splitting.
- `tokenize(text, lang)`: ROUGE tokens. `"en"` reproduces `rouge-score`'s default tokenizer (lower case,
  runs of a-z0-9); that tokenizer drops every non-ASCII character, so Chinese needs `"zh-char"`
  (one token per Han character, a-z0-9 runs kept whole) or `"zh-word"` (jieba words).
- `rouge(candidate, reference, lang)`: ROUGE-1, ROUGE-2 and ROUGE-L (one LCS over the whole text, as
  `rouge-score`'s `rougeL`), each as precision, recall, F1.
- `textrank(sentences, k, lang)` and `pagerank(weights)`: graph-based extractive summaries.
- `support_scores(summary, source, lang)`: how much of each summary sentence the source contains.
- `wiki_pairs()`, `peoples_daily_pairs()`: (source, reference) pairs built from bundled data.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

LANGS = ("en", "zh-char", "zh-word")

# "Mr. Smith" and "e.g. this" must not end a sentence: a period after these words is not a boundary.
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "fig", "no",
                 "vol", "c", "ca", "approx", "gen", "col", "lt", "sgt", "rev", "inc", "ltd", "co", "u.s", "u.k",
                 "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
_EN_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_ZH_BOUNDARY = re.compile(r"(?<=[。！？；!?])[”’」』）)]*")


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}; use one of {', '.join(LANGS)}")


def split_sentences(text: str, lang: str = "en") -> list[str]:
    """Split `text` into sentences; `lang` is "en" or a Chinese mode ("zh-char"/"zh-word"/"zh").

    >>> split_sentences("Dr. Smith arrived. He met Mr. Lee at 5 p.m. today! Fine.")
    ['Dr. Smith arrived.', 'He met Mr. Lee at 5 p.m. today!', 'Fine.']
    >>> split_sentences("今天下雨。我们去哪里？“去公园！”他说。", "zh")
    ['今天下雨。', '我们去哪里？', '“去公园！”', '他说。']
    """
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return []
    if lang.startswith("zh"):
        out, start = [], 0
        for m in _ZH_BOUNDARY.finditer(text):
            if m.end() > start:
                out.append(text[start:m.end()].strip())
                start = m.end()
        out.append(text[start:].strip())
        return [s for s in out if s]
    _check_lang(lang)
    out, start = [], 0
    for m in _EN_BOUNDARY.finditer(text):
        before = text[start:m.start()].split()
        last = before[-1].rstrip(".!?\"'”’)]").lower() if before else ""
        # An abbreviation, an initial ("J. Smith") or a dotted form ("p.m.", "U.S.") before the period
        # is taken as no sentence end: sometimes wrong ("... in the U.S. The ..."), far more often right.
        if text[m.start() - 1] == "." and (last in ABBREVIATIONS or len(last) == 1 or
                                           re.fullmatch(r"(?:[a-z]\.)+[a-z]", last)):
            continue
        out.append(text[start:m.start() + len(m.group().rstrip())].strip())  # closing quotes stay
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_CHAR = re.compile(rf"[{_HAN}]|[a-z0-9]+")
_FULLWIDTH = {i: i - 0xFEE0 for i in range(0xFF01, 0xFF5F)}  # "１９９８" and "１９９８" are the same number


def tokenize(text: str, lang: str = "en") -> list[str]:
    """ROUGE tokens of `text`.

    "en" equals `rouge_score.tokenize.tokenize(text, None)`: lower case, runs of [a-z0-9] (so
    "don't" is two tokens and every non-ASCII character, every Chinese one included, is dropped).
    "zh-char": full-width forms folded to ASCII, one token per Han character, [a-z0-9] runs kept.
    "zh-word": jieba's words, with punctuation dropped (jieba is loaded on first use, about 1 s).

    >>> tokenize("The U.S. economy grew 3% in 2019.")
    ['the', 'u', 's', 'economy', 'grew', '3', 'in', '2019']
    >>> tokenize("１９９８年，经济增长", "zh-char")
    ['1998', '年', '经', '济', '增', '长']
    """
    _check_lang(lang)
    text = text.translate(_FULLWIDTH).lower()
    if lang == "en":
        return re.findall(r"[a-z0-9]+", text)
    if lang == "zh-char":
        return _ZH_CHAR.findall(text)
    import jieba

    jieba.setLogLevel(60)  # its "Building prefix dict" chatter goes to stderr otherwise
    return [w for w in jieba.lcut(text) if re.search(rf"[{_HAN}a-z0-9]", w)]


class RougeTokenizer:
    """A tokenizer object for `rouge_score.rouge_scorer.RougeScorer(tokenizer=...)`, so the library
    scores Chinese with the same tokens as `rouge()` (its default tokenizer would drop every character).

    >>> RougeTokenizer("zh-char").tokenize("天气很好")
    ['天', '气', '很', '好']
    """

    def __init__(self, lang: str = "zh-char"):
        _check_lang(lang)
        self.lang = lang

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.lang)


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    fmeasure: float


def _prf(overlap: int, n_cand: int, n_ref: int) -> Score:
    p = overlap / n_cand if n_cand else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return Score(p, r, 2 * p * r / (p + r) if p + r else 0.0)


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams of `tokens`.

    >>> ngrams(["a", "b", "a", "b"], 2)
    Counter({('a', 'b'): 2, ('b', 'a'): 1})
    """
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(cand: Sequence[str], ref: Sequence[str], n: int) -> Score:
    """ROUGE-N of token lists: clipped n-gram overlap over candidate (P) and reference (R) counts.

    >>> rouge_n("the cat sat".split(), "the cat ran".split(), 1).fmeasure
    0.6666666666666666
    """
    c, r = ngrams(cand, n), ngrams(ref, n)
    return _prf(sum((c & r).values()), sum(c.values()), sum(r.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) len(b)) time, O(len(b)) memory).

    >>> lcs_length("a b c d e".split(), "a c e f".split())
    3
    """
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(cand: Sequence[str], ref: Sequence[str]) -> Score:
    """ROUGE-L of token lists: LCS over candidate (P) and reference (R) lengths.

    >>> round(rouge_l("a b c d e".split(), "a c e f".split()).fmeasure, 4)
    0.6667
    """
    return _prf(lcs_length(cand, ref), len(cand), len(ref))


def rouge(candidate: str, reference: str, lang: str = "en") -> dict[str, Score]:
    """ROUGE-1, ROUGE-2 and ROUGE-L of one candidate summary against one reference.

    >>> s = rouge("The cat sat on the mat.", "A cat sat on a mat."); round(s["rouge1"].fmeasure, 4)
    0.6667
    """
    c, r = tokenize(candidate, lang), tokenize(reference, lang)
    return {"rouge1": rouge_n(c, r, 1), "rouge2": rouge_n(c, r, 2), "rougeL": rouge_l(c, r)}


def mean_rouge(candidates: Sequence[str], references: Sequence[str], lang: str = "en",
               field: str = "fmeasure") -> dict[str, float]:
    """Average ROUGE over pairs (macro average, as papers report).

    >>> mean_rouge(["a b", "c"], ["a b", "d"])["rouge1"]
    0.5
    """
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need as many candidates as references, and at least one; got "
                         f"{len(candidates)} and {len(references)}")
    scores = [rouge(c, r, lang) for c, r in zip(candidates, references)]
    return {k: sum(getattr(s[k], field) for s in scores) / len(scores) for k in ("rouge1", "rouge2", "rougeL")}


# --- extractive summaries -----------------------------------------------------------------------

def lead(sentences: Sequence[str], k: int) -> list[int]:
    """Indices of the lead-k summary: the first k sentences (news puts the key facts first).

    >>> lead(["a", "b", "c"], 2)
    [0, 1]
    """
    return list(range(min(k, len(sentences))))


def sentence_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """TextRank's similarity (Mihalcea & Tarau 2004): shared words over log lengths.

    >>> round(sentence_similarity("a b c".split(), "a c d e".split()), 4)
    0.8049
    """
    if len(a) < 2 or len(b) < 2:  # log(1) = 0: one-word sentences would divide by zero
        return 0.0
    return len(set(a) & set(b)) / (math.log(len(a)) + math.log(len(b)))


def similarity_matrix(sentences: Sequence[str], lang: str = "en") -> list[list[float]]:
    """Pairwise `sentence_similarity` (zero diagonal) of the sentences' ROUGE tokens.

    >>> similarity_matrix(["a b", "a c", "d e"])[0]
    [0.0, 0.7213475204444817, 0.0]
    """
    toks = [tokenize(s, lang) for s in sentences]
    sets = [set(t) for t in toks]  # built once: a 60-sentence article has 1,770 pairs
    logs = [math.log(len(t)) if len(t) > 1 else 0.0 for t in toks]
    n = len(toks)
    w = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if logs[i] and logs[j]:
                w[i][j] = w[j][i] = len(sets[i] & sets[j]) / (logs[i] + logs[j])
    return w


def pagerank(weights: Sequence[Sequence[float]], damping: float = 0.85, tol: float = 1e-10,
             max_iter: int = 1000) -> list[float]:
    """Weighted PageRank by power iteration, with networkx's conventions: a node with no out-weight
    (a sentence sharing no word with any other) spreads its rank uniformly; scores sum to 1.

    >>> [round(x, 4) for x in pagerank([[0, 1, 1], [1, 0, 0], [1, 0, 0]])]
    [0.4865, 0.2568, 0.2568]
    """
    import numpy as np

    w = np.asarray(weights, dtype=float).reshape(len(weights), -1)
    n = len(w)
    if n == 0:
        return []
    out = w.sum(1)
    walk = np.divide(w, out[:, None], out=np.zeros_like(w), where=out[:, None] > 0)
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        new = (1 - damping) / n + damping * x[out == 0].sum() / n + damping * (x @ walk)
        if np.abs(new - x).sum() < n * tol:
            return new.tolist()
        x = new
    return x.tolist()


def textrank_scores(sentences: Sequence[str], lang: str = "en", damping: float = 0.85) -> list[float]:
    """TextRank score of every sentence: PageRank on the `similarity_matrix` graph.

    >>> [round(x, 3) for x in textrank_scores(["a b", "a c", "d e"])]
    [0.465, 0.465, 0.07]
    """
    return pagerank(similarity_matrix(sentences, lang), damping)


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the k highest scores (ties: earlier first), in document order.

    >>> top_k([0.1, 0.5, 0.2, 0.5], 2)
    [1, 3]
    """
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def textrank(sentences: Sequence[str], k: int, lang: str = "en", damping: float = 0.85) -> list[int]:
    """Indices (in document order) of the k sentences with the highest TextRank score.

    >>> textrank(["Cats purr.", "Cats and dogs play.", "Dogs bark loudly.", "Rain falls."], 1)
    [1]
    """
    return top_k(textrank_scores(sentences, lang, damping), k)


# --- faithfulness -------------------------------------------------------------------------------

STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been
being it its this that these those he she they them his her their we you i me my our your not no so than then
there here also which who whom whose what when where how all any some such can could would should will may
might must do does did has have had into about over after before between during under while s""".split())


def content_tokens(text: str, lang: str = "en") -> list[str]:
    """ROUGE tokens minus stop words (English) - the words a claim is made of.

    >>> content_tokens("The cat sat on the mat.")
    ['cat', 'sat', 'mat']
    """
    return [t for t in tokenize(text, lang) if t not in STOPWORDS]


def support_scores(summary: str, source: str, lang: str = "en") -> list[tuple[str, float]]:
    """For each summary sentence, the share of its content tokens that occur in the source.

    An overlap check, not entailment: a sentence that recombines source words into a false claim
    scores high, and a faithful paraphrase with new words scores low. 1.0 for extractive summaries.

    >>> support_scores("Paris is in France. It has ten moons.", "Paris is the capital of France.")
    [('Paris is in France.', 1.0), ('It has ten moons.', 0.0)]
    """
    have = set(content_tokens(source, lang))
    out = []
    for s in split_sentences(summary, lang):
        toks = content_tokens(s, lang)
        out.append((s, sum(t in have for t in toks) / len(toks) if toks else 1.0))
    return out


# --- offline (document, reference) pairs --------------------------------------------------------

def _clean_wiki(text: str) -> str:
    text = re.sub(r"'{2,}", "", text)  # bold/italic markup that filter_wiki leaves
    text = re.sub(r"\(\s*[;,]?[\s;,]*\)", "", text)  # "( ; , )": pronunciations removed by filter_wiki
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def wiki_pairs(source_words: int = 300, min_reference_words: int = 25,
               max_reference_words: int = 120) -> list[dict[str, str]]:
    """Bundled Wikipedia articles as (source, reference) pairs.

    reference: the first paragraph of the article's lead (the text before the first section heading),
    written by editors to introduce the *whole* article. source: whole sentences from the start of
    the body (after the lead; headings, lists and captions dropped) up to `source_words` words. The
    lead is held out from the source, so copying it is impossible; but it is not a summary of this
    excerpt: it may state facts the excerpt lacks, and the excerpt covers details the lead skips.

    >>> pairs = wiki_pairs(); len(pairs) > 50   # doctest: +SKIP
    True
    """
    from . import data

    ds = data.load("wikipedia")
    out = []
    for title, text in zip(ds["title"], ds["text"]):
        head, _, body = text.partition("\n==")
        paras = [p.strip() for p in head.split("\n\n") if p.strip()]
        start = next((i for i, p in enumerate(paras) if "'''" in p), None)
        if start is None:
            continue
        reference = _clean_wiki(paras[start])
        n_ref = len(reference.split())
        if not min_reference_words <= n_ref <= max_reference_words:
            continue
        sentences, n = [], 0
        for para in body.split("\n"):
            para = para.strip()
            if para.startswith(("=", "*", "#", "|", "{", ":")) or len(para.split()) < 12 or para[-1:] not in ".!?\"":
                continue
            for s in split_sentences(_clean_wiki(para)):
                if n >= source_words:
                    break
                sentences.append(s)
                n += len(s.split())
        if n >= source_words * 0.8 and len(sentences) >= 6:
            out.append({"title": title, "source": " ".join(sentences), "reference": reference})
    return out


_DATELINE = re.compile(r"^(本报|新华社)[^。：]{0,40}?[讯电](（[^）]{0,30}）)?([^。：，]{0,20}报道：)?")


def peoples_daily_pairs(min_body_chars: int = 150) -> list[dict[str, str]]:
    """People's Daily (Jan. 1998) news articles as (source, reference) pairs: reference = headline.

    The corpus has no article boundaries; an article is found as a short line without final
    punctuation (the headline) followed within two lines by a dateline ("本报北京1月4日讯", "新华社...电").
    A headline is a very short, often stylised "summary" (about 13 characters), a proxy for the
    reference summaries that no offline Chinese corpus ships. The dateline is cut from the body.

    >>> pairs = peoples_daily_pairs(); len(pairs) > 500   # doctest: +SKIP
    True
    """
    from . import data

    lines = data.load("peoples-daily")["text"]

    def dateline(k: int) -> bool:
        return k < len(lines) and bool(_DATELINE.match(lines[k]))

    heads = [j for j, ln in enumerate(lines) if 4 <= len(ln) <= 30 and ln[-1:] not in "。！？”）」：…"
             and ln[0] not in "·—（(《" and len(re.findall(f"[{_HAN}]", ln)) >= 4  # not a byline or a note
             and (dateline(j + 1) or dateline(j + 2))]
    heads = [h for h in heads if h - 1 not in heads]  # headline + subtitle: keep the headline
    out = []
    for h, nxt in zip(heads, heads[1:] + [len(lines)]):
        k = h + 1 if dateline(h + 1) else h + 2
        body = "".join([_DATELINE.sub("", lines[k])] + lines[k + 1:nxt])
        if len(body) >= min_body_chars:
            out.append({"title": lines[h], "source": body, "reference": lines[h]})
    return out
