"""N-gram language models: add-k and interpolated Kneser-Ney smoothing, counted and scored with NumPy.

`Vocab` maps characters or word tokens to ids (0 = `<s>` padding, 1 = `<unk>`); `NGramLM` counts
every n-gram up to its order and scores a whole sequence in a few vectorised look-ups; `char_nats`
and `word_nats` score raw text so that every character is paid for, out-of-vocabulary ones included,
which makes bits per character comparable with any other model of the same text.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

BOS, UNK = 0, 1
SPECIALS = ("<s>", "<unk>")
UNICODE_SIZE = 0x110000  # code points U+0000..U+10FFFF: the alphabet an unseen character is spelled in
SMOOTHINGS = ("kn", "add-k")
_WORD_RE = re.compile(r" ?\w+| ?[^\w\s]|\s+")


def word_tokenize(text: str) -> list[str]:
    """Split text into words, punctuation and whitespace runs, losslessly (a leading space stays on a word).

    >>> word_tokenize("The cat, 2 mats.")
    ['The', ' cat', ',', ' 2', ' mats', '.']
    """
    tokens = _WORD_RE.findall(text)
    # Every character is a word character, whitespace or neither, so nothing can be dropped.
    assert sum(map(len, tokens)) == len(text), "word_tokenize lost characters"
    return tokens


class Vocab:
    """Ids for tokens: 0 is the `<s>` padding, 1 is `<unk>`, then the kept tokens by frequency.

    >>> v = Vocab.build("abracadabra"); v.encode("abz").tolist()
    [2, 3, 1]
    """

    def __init__(self, tokens: Sequence[str]):
        self.itos = [*SPECIALS, *tokens]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab tokens must be distinct and must not be '<s>' or '<unk>'")

    @classmethod
    def build(cls, items: Iterable[str], min_count: int = 1) -> "Vocab":
        """Keep the tokens seen at least `min_count` times (a string is read as its characters)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(items)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi and self.stoi[token] > UNK

    def encode(self, items: Iterable[str]) -> np.ndarray:
        """Ids of the items, `<unk>` for unknown ones."""
        return np.fromiter((self.stoi.get(t, UNK) for t in items), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


def _rank(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted array `keys`, or -1 where it is absent."""
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    found = (keys[pos] == query) & (query >= 0)
    return np.where(found, pos, -1)


class NGramLM:
    """An n-gram language model over ids 1..V-1 (id 0 pads the start), add-k or interpolated Kneser-Ney.

    >>> lm = NGramLM(3).fit(Vocab.build("abracadabra").encode("abracadabra"), vocab_size=7)
    >>> round(float(lm.distribution([2, 3]).sum()), 6)   # P(. | "ab") sums to one
    1.0

    Kneser-Ney (`smoothing="kn"`), written recursively for order m with context h and shorter context h':
        p_m(w|h) = max(c_m(hw) - D_m, 0) / c_m(h.) + D_m * N1+(h.) / c_m(h.) * p_{m-1}(w|h')
    where c_m is the raw count at the top order and the continuation count N1+(.hw) (the number of
    distinct tokens seen before hw) below it; an unseen context gives p_m = p_{m-1}; p_0 is uniform.
    `discount=None` estimates D_m = n1 / (n1 + 2 n2) per order from the counts of counts.
    Add-k (`smoothing="add-k"`): p(w|h) = (c(hw) + k) / (c(h.) + k V'), V' = V - 1 predictable ids.
    """

    def __init__(self, order: int, smoothing: str = "kn", k: float = 1.0,
                 discount: float | Sequence[float] | None = None):
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        order = int(order)
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}")
        if smoothing == "add-k" and not k > 0:
            raise ValueError(f"add-k needs k > 0 (k = 0 gives unseen n-grams probability 0), got {k}")
        if discount is not None:
            d = [float(discount)] * order if np.isscalar(discount) else [float(x) for x in discount]
            if len(d) != order or not all(0 <= x <= 1 for x in d):
                raise ValueError(f"discount must be one number or {order} numbers (orders 1..{order}), "
                                 f"each in [0, 1]; got {discount!r}")
            discount = d
        self.order, self.smoothing, self.k, self._fixed_discount = order, smoothing, float(k), discount
        self.vocab_size = 0

    def __repr__(self) -> str:
        how = f"k={self.k:g}" if self.smoothing == "add-k" else "kn"
        return f"NGramLM(order={self.order}, {how}, V={self.vocab_size})"

    # --- counting ---------------------------------------------------------------------------------

    def fit(self, ids: np.ndarray | Sequence[int], vocab_size: int) -> "NGramLM":
        """Count all 1..order-grams of `ids` (a training sequence, padded here with order-1 `<s>`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError("fit needs a non-empty 1-D sequence of token ids")
        if ids.min() < 1 or ids.max() >= vocab_size:
            raise ValueError(f"token ids must lie in 1..{vocab_size - 1} (0 is the <s> padding); "
                             f"got {ids.min()}..{ids.max()}")
        n, V = self.order, int(vocab_size)
        self.vocab_size = V
        x = np.concatenate([np.full(n - 1, BOS, dtype=np.int64), ids])
        real = x != BOS  # n-grams ending in padding are only contexts, never counted as events
        # An m-gram is identified by (rank of its (m-1)-gram prefix) * V + last token; ranks index the
        # sorted unique keys of each order, so any order fits in int64 and look-ups are searchsorted.
        self.keys, raw, pos_ids = [None], [None], [None]
        prev = None
        for m in range(1, n + 1):
            key = np.full(len(x), -1, dtype=np.int64)
            key[m - 1:] = x[m - 1:] if m == 1 else prev[m - 2:-1] * V + x[m - 1:]
            uniq, inv = np.unique(key[m - 1:], return_inverse=True)
            pid = np.full(len(x), -1, dtype=np.int64)
            pid[m - 1:] = inv
            self.keys.append(uniq)
            raw.append(np.bincount(inv, weights=real[m - 1:], minlength=len(uniq)))
            pos_ids.append(pid)
            prev = pid
        # Continuation counts N1+(.g): for each distinct (m+1)-gram ending in a real token, +1 to its suffix.
        cont = [None] * (n + 1)
        for m in range(1, n):
            sel = np.flatnonzero((pos_ids[m + 1] >= 0) & real)
            _, first = np.unique(pos_ids[m + 1][sel], return_index=True)
            cont[m] = np.bincount(pos_ids[m][sel[first]], minlength=len(self.keys[m])).astype(float)
        self.raw_counts, self.cont_counts = raw, cont
        self._smooth()
        return self

    def _smooth(self) -> None:
        """Per-order counts, context totals and discounts for this model's order and smoothing."""
        n, V = self.order, self.vocab_size
        kn = self.smoothing == "kn"
        # Kneser-Ney: raw counts at the top order, continuation counts below it.
        self.counts = [None] + [self.cont_counts[m] if kn and m < n else self.raw_counts[m] for m in range(1, n + 1)]
        self.ctx_total, self.ctx_types, self.discounts = [None], [None], [None]
        for m in range(1, n + 1):
            c = self.counts[m]
            if m == 1:
                self.ctx_total.append(np.array([c.sum()]))
                self.ctx_types.append(np.array([(c > 0).sum()], dtype=float))
            else:
                prefix = self.keys[m] // V
                self.ctx_total.append(np.bincount(prefix, weights=c, minlength=len(self.keys[m - 1])))
                self.ctx_types.append(np.bincount(prefix, weights=c > 0, minlength=len(self.keys[m - 1])))
            self.discounts.append(self._discount(m, c))

    def derive(self, order: int | None = None, smoothing: str | None = None, k: float | None = None,
               discount: float | Sequence[float] | None = None) -> "NGramLM":
        """A model of lower (or equal) order or other smoothing that reuses this model's counts.

        >>> big = NGramLM(7).fit(ids, len(vocab)); trigram = big.derive(order=3)   # doctest: +SKIP
        """
        self._check_fitted()
        order = self.order if order is None else order
        if not isinstance(order, (int, np.integer)) or not 1 <= order <= self.order:
            raise ValueError(f"derive can only lower the order: 1 <= order <= {self.order}, got {order!r}")
        order = int(order)
        new = NGramLM(order, smoothing or self.smoothing, self.k if k is None else k, discount)
        new.vocab_size = self.vocab_size
        new.keys = self.keys[:order + 1]
        new.raw_counts = self.raw_counts[:order + 1]
        new.cont_counts = self.cont_counts[:order] + [None]
        new._smooth()
        return new

    def _discount(self, m: int, c: np.ndarray) -> float:
        if self._fixed_discount is not None:
            return self._fixed_discount[m - 1]
        n1, n2 = np.sum(c == 1), np.sum(c == 2)
        return float(n1 / (n1 + 2 * n2)) if n1 + n2 > 0 else 0.5  # Ney et al. (1994)

    # --- scoring ----------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not self.vocab_size:
            raise RuntimeError("this NGramLM is not fitted yet; call .fit(ids, vocab_size) first")

    def _lookup(self, grams: np.ndarray) -> np.ndarray:
        """Rank of each row of `grams` (shape B x m) among the training m-grams, -1 if unseen."""
        r = _rank(self.keys[1], grams[:, 0])
        for j in range(1, grams.shape[1]):
            r = _rank(self.keys[j + 1], np.where(r >= 0, r * self.vocab_size + grams[:, j], -1))
        return r

    def logprob(self, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Natural log P(target | context) per row; `contexts` is B x (order-1), left-padded with 0.

        >>> lm.logprob(np.array([[2, 3]]), np.array([4]))          # doctest: +SKIP
        array([-0.31])
        """
        self._check_fitted()
        n, V = self.order, self.vocab_size
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(targets), n - 1)
        targets = np.asarray(targets, dtype=np.int64)
        if targets.size and (targets.min() < 0 or targets.max() >= V):
            raise ValueError(f"target ids must lie in 0..{V - 1}")
        Vp = V - 1  # <s> is never predicted
        if self.smoothing == "add-k":
            with np.errstate(divide="ignore"):  # log 0 = -inf for the never-predicted <s>
                return np.log(self._addk(contexts, targets, Vp))
        p = np.full(len(targets), 1.0 / Vp)  # order 0: uniform
        for m in range(1, n + 1):
            ctx = contexts[:, n - m:]  # the last m-1 tokens
            h = self._lookup(ctx) if m > 1 else np.zeros(len(targets), dtype=np.int64)
            tot = np.where(h >= 0, self.ctx_total[m][np.maximum(h, 0)], 0.0)
            g = self._lookup(np.concatenate([ctx, targets[:, None]], axis=1))
            c = np.where(g >= 0, self.counts[m][np.maximum(g, 0)], 0.0)
            D = self.discounts[m]
            seen = tot > 0
            safe = np.where(seen, tot, 1.0)
            types = np.where(h >= 0, self.ctx_types[m][np.maximum(h, 0)], 0.0)
            p = np.where(seen, np.maximum(c - D, 0) / safe + D * types / safe * p, p)
        with np.errstate(divide="ignore"):
            return np.where(targets == BOS, -np.inf, np.log(p))

    def _addk(self, contexts: np.ndarray, targets: np.ndarray, Vp: int) -> np.ndarray:
        n = self.order
        h = self._lookup(contexts) if n > 1 else np.zeros(len(targets), dtype=np.int64)
        tot = np.where(h >= 0, self.ctx_total[n][np.maximum(h, 0)], 0.0)
        g = self._lookup(np.concatenate([contexts, targets[:, None]], axis=1))
        c = np.where(g >= 0, self.counts[n][np.maximum(g, 0)], 0.0)
        return np.where(targets == BOS, 0.0, (c + self.k) / (tot + self.k * Vp))

    def sequence_logprobs(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """log P(ids[i] | the order-1 ids before it) for every position (the start is padded with <s>)."""
        self._check_fitted()
        ids = np.asarray(ids, dtype=np.int64)
        x = np.concatenate([np.full(self.order - 1, BOS, dtype=np.int64), ids])
        ctx = np.lib.stride_tricks.sliding_window_view(x[:-1], self.order - 1) if self.order > 1 \
            else np.zeros((len(ids), 0), dtype=np.int64)
        return self.logprob(ctx, ids)

    def context_order(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """For each position, the highest order m whose m-1 preceding ids were seen as a context in
        training (1 = no context seen, only unigram statistics apply; `order` = the full context).

        >>> (lm.context_order(vocab.encode(held_out)) >= 4).mean()   # share with a known 3-id context  # doctest: +SKIP
        """
        self._check_fitted()
        ids = np.asarray(ids, dtype=np.int64)
        x = np.concatenate([np.full(self.order - 1, BOS, dtype=np.int64), ids])
        out = np.ones(len(ids), dtype=np.int64)
        for m in range(2, self.order + 1):
            ctx = np.lib.stride_tricks.sliding_window_view(x[self.order - m:len(x) - 1], m - 1)
            h = self._lookup(ctx)
            seen = np.where(h >= 0, self.ctx_total[m][np.maximum(h, 0)], 0.0) > 0
            out = np.where(seen, m, out)  # contexts nest: a seen long context has a seen shorter one
        return out

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(w | context) for every id w (index 0, `<s>`, gets 0); uses the last order-1 ids of `context`."""
        self._check_fitted()
        ctx = [BOS] * (self.order - 1) + [int(i) for i in context]
        ctx = np.array(ctx[len(ctx) - (self.order - 1):], dtype=np.int64)
        V = self.vocab_size
        return np.exp(self.logprob(np.tile(ctx, (V, 1)), np.arange(V)))

    def sample(self, length: int, context: Sequence[int] = (), rng: np.random.Generator | None = None,
               exclude: Sequence[int] = (UNK,)) -> list[int]:
        """Draw `length` ids one at a time from P(w | previous ids); `exclude` ids are never drawn.

        >>> lm.sample(20, rng=np.random.default_rng(0))                    # doctest: +SKIP
        [2, 3, 6, 2, ...]
        """
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        rng = rng or np.random.default_rng()
        out = [int(i) for i in context]
        for _ in range(length):
            p = self.distribution(out)
            p[list(exclude)] = 0.0
            out.append(int(rng.choice(len(p), p=p / p.sum())))
        return out[len(context):]


# --- fair scoring of raw text ---------------------------------------------------------------------

class Speller:
    """A character unigram model with an end mark that spells out-of-vocabulary tokens.

    P(token) = p(c1) ... p(ck) p(end), add-one smoothed; a character it never saw shares the
    "other" mass uniformly over all Unicode code points, so every string has a probability.

    >>> round(Speller(["ab", "b"]).nats("ab"), 3)
    3.701
    """

    def __init__(self, tokens: Iterable[str]):
        counts = Counter()
        n_tokens = 0
        for t in tokens:
            counts.update(t)
            n_tokens += 1
        total = sum(counts.values()) + n_tokens + len(counts) + 2  # +1 each: chars, end, other
        self.char_nats = {c: -math.log((k + 1) / total) for c, k in counts.items()}
        self.end_nats = -math.log((n_tokens + 1) / total)
        self.other_nats = -math.log(1 / total) + math.log(UNICODE_SIZE - len(counts))

    def nats(self, token: str) -> float:
        return sum(self.char_nats.get(c, self.other_nats) for c in token) + self.end_nats


def char_nats(model: NGramLM, vocab: Vocab, text: str) -> np.ndarray:
    """Nats each character of `text` costs under a character n-gram model (unknown characters: <unk>,
    then one code point out of all Unicode characters the vocabulary does not hold).

    >>> bits = char_nats(lm, vocab, "some text").sum() / math.log(2)    # doctest: +SKIP
    """
    if model.vocab_size != len(vocab):
        raise ValueError(f"model was fitted with vocab_size={model.vocab_size} but the vocab has {len(vocab)} ids")
    ids = vocab.encode(text)
    nats = -model.sequence_logprobs(ids)
    spell = math.log(UNICODE_SIZE - (len(vocab) - len(SPECIALS)))
    return nats + np.where(ids == UNK, spell, 0.0)


def word_nats(model: NGramLM, vocab: Vocab, speller: Speller, text: str) -> tuple[np.ndarray, list[str]]:
    """Nats per word token of `text` (tokens from `word_tokenize`, which cover every character once);
    an unknown token pays P(<unk>) and then its spelling under `speller`. Returns (nats, tokens).

    >>> nats, toks = word_nats(lm, vocab, Speller(rare_words), text)    # doctest: +SKIP
    """
    if model.vocab_size != len(vocab):
        raise ValueError(f"model was fitted with vocab_size={model.vocab_size} but the vocab has {len(vocab)} ids")
    tokens = word_tokenize(text)
    ids = vocab.encode(tokens)
    nats = -model.sequence_logprobs(ids)
    extra = np.array([speller.nats(t) if i == UNK else 0.0 for t, i in zip(tokens, ids)])
    return nats + extra, tokens
