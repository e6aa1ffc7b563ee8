"""Word embeddings written out: vocabulary, skip-gram with negative sampling, GloVe, evaluation.

- `Vocab.build`: word counts and ids (the vocabulary gensim's `Word2Vec` keeps for a `min_count`);
- `keep_probabilities`, `noise_distribution`: word2vec's subsampling of frequent words and its
  unigram^0.75 noise distribution (the numbers gensim stores as `sample_int` and `cum_table`);
- `noise_table`: word2vec's table for drawing noise words fast;
- `skipgram_pairs`: (centre, context) pairs with word2vec's randomly shrunk window, vectorised;
- `SkipGramNS`, `train_sgns`: the skip-gram model and a batched PyTorch training loop;
- `cooccurrence`, `glove_weight`, `GloVe`, `train_glove`: a distance-weighted co-occurrence
  matrix and its weighted least-squares factorisation;
- `WordVectors`, `evaluate_similarity`, `evaluate_analogies`: cosine neighbours, Spearman
  correlation with human scores, 3CosAdd analogies (the same numbers as gensim's evaluators).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --- vocabulary, subsampling, noise ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Vocab:
    """Words kept for training, most frequent first, with their corpus counts.

    >>> v = Vocab.build([["a", "b", "a"], ["a", "c"]], min_count=2)
    >>> v.words, v.counts.tolist(), v["a"]
    (('a',), [3], 0)
    """

    words: tuple[str, ...]
    counts: np.ndarray  # int64, aligned with words
    index: Mapping[str, int] = field(repr=False, compare=False)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5,
              max_size: int | None = None) -> "Vocab":
        """Count words and keep those seen at least `min_count` times (at most `max_size`)."""
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        counter: Counter[str] = Counter()
        for s in sentences:
            if isinstance(s, str):
                raise TypeError("Vocab.build takes tokenised sentences (lists of words), not strings; "
                                "split them first, e.g. with gensim.utils.simple_preprocess")
            counter.update(s)
        # Sorting by count keeps frequent words at small ids; ties keep first-seen order (stable sort).
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: -wc[1])
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(f"no word occurs {min_count} times or more; lower min_count or give more text")
        words = tuple(w for w, _ in kept)
        return cls(words, np.array([c for _, c in kept], dtype=np.int64), {w: i for i, w in enumerate(words)})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> int:
        return self.index[word]

    def encode(self, sentences: Iterable[Sequence[str]]) -> list[np.ndarray]:
        """Each sentence as an array of ids; words outside the vocabulary are dropped (as word2vec does)."""
        return [np.fromiter((self.index[w] for w in s if w in self.index), dtype=np.int64) for s in sentences]


def keep_probabilities(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """word2vec's probability of keeping each occurrence of a word (subsampling, 下采样).

    A word with corpus frequency f = count/total above `sample` is kept with probability
    (sqrt(f/sample) + 1) * sample/f, so "the" is mostly dropped and rare words always stay.

    >>> keep_probabilities(np.array([1000, 10]), sample=1e-2).round(3).tolist()
    [0.111, 1.0]
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    if not 0 < sample < 1:
        raise ValueError(f"sample is a frequency threshold in (0, 1), e.g. 1e-3; got {sample}")
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution P_n(w) proportional to count(w)^power (word2vec: 0.75).

    >>> noise_distribution(np.array([16, 1]), power=0.5).tolist()
    [0.8, 0.2]
    """
    p = np.asarray(counts, dtype=np.float64) ** power
    return p / p.sum()


def noise_table(probs: np.ndarray, size: int = 10_000_000) -> torch.Tensor:
    """word2vec's sampling table: word k fills about probs[k] * size slots; a uniform slot is a draw.

    Drawing is one random integer and one lookup, several times faster than a binary search over
    the cumulative distribution; shares are rounded to whole slots (largest remainders first).

    >>> noise_table(np.array([0.75, 0.25]), size=4).tolist()
    [0, 0, 0, 1]
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        raise ValueError("probs must be a 1-D probability vector (non-negative, summing to 1)")
    share = probs * size
    slots = np.floor(share).astype(np.int64)
    slots[np.argsort(slots - share)[: size - slots.sum()]] += 1  # hand out the remaining slots
    return torch.from_numpy(np.repeat(np.arange(len(probs), dtype=np.int32), slots))


def skipgram_pairs(docs: Sequence[np.ndarray], window: int, rng: np.random.Generator,
                   keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) id pairs of one pass over `docs`, as word2vec draws them.

    Each position gets its own window b ~ Uniform{1..window} (nearby words are seen more often);
    with `keep` (from `keep_probabilities`) frequent words are dropped *before* windowing, so the
    window reaches further past them. Pairs never cross document boundaries.

    >>> c, x = skipgram_pairs([np.array([0, 1, 2])], window=1, rng=np.random.default_rng(0))
    >>> sorted(zip(c.tolist(), x.tolist()))
    [(0, 1), (1, 0), (1, 2), (2, 1)]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    docs = [np.asarray(d, dtype=np.int64) for d in docs]
    ids = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    if keep is not None:
        mask = rng.random(len(ids)) < keep[ids]
        ids, doc = ids[mask], doc[mask]
    reach = rng.integers(1, window + 1, size=len(ids))
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = doc[:-d] == doc[d:]
        right = same & (reach[:-d] >= d)  # centre i sees i+d
        left = same & (reach[d:] >= d)  # centre i+d sees i
        centres += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    return np.concatenate(centres), np.concatenate(contexts)


# --- skip-gram with negative sampling -------------------------------------------------------------


class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling (跳字模型 + 负采样): centre (input) and context (output) tables.

    loss(c, o) = -log sigma(u_c . v_o) - sum_k log sigma(-u_c . v_k),   k ~ P_n(w)

    >>> m = SkipGramNS(10, 8); m(torch.tensor([1]), torch.tensor([2]), torch.tensor([[3, 4]])).shape
    torch.Size([1])
    """

    def __init__(self, vocab_size: int, dim: int, sparse: bool = True):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be positive, got {vocab_size}, {dim}")
        self.inp = nn.Embedding(vocab_size, dim, sparse=sparse)
        self.out = nn.Embedding(vocab_size, dim, sparse=sparse)
        # word2vec's initialisation: small random centre vectors, zero context vectors.
        nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out.weight)

    def forward(self, centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Loss per pair: centre (B,), context (B,), negatives (B, K) -> (B,)."""
        u = self.inp(centre)  # (B, d)
        pos = (u * self.out(context)).sum(-1)
        neg = torch.bmm(self.out(negatives), u.unsqueeze(-1)).squeeze(-1)  # (B, K)
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1))

    @torch.no_grad()
    def sgd_step(self, centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor,
                 lr: float) -> torch.Tensor:
        """One SGD step on the summed loss of a batch, with word2vec's gradients written out.

        With s = sigma(u . v) - 1 for the true context and s_k = sigma(u . v_k) for the noise words:
        dL/du = s v + sum_k s_k v_k,  dL/dv = s u,  dL/dv_k = s_k u  (the same numbers autograd
        gives, see the tests), scattered back with index_add_ so repeated words add up.
        Skipping autograd and sparse gradients makes a step about twice as fast on a CPU.
        Returns the loss per pair, before the step.
        """
        w_in, w_out = self.inp.weight, self.out.weight
        # index_select is several times faster than w[idx] on a CPU.
        u, v = w_in.index_select(0, centre), w_out.index_select(0, context)  # (B, d)
        vn = w_out.index_select(0, negatives.reshape(-1)).view(*negatives.shape, -1)  # (B, K, d)
        pos = (u * v).sum(-1)
        neg = torch.bmm(vn, u.unsqueeze(-1)).squeeze(-1)
        s_pos = torch.sigmoid(pos) - 1  # (B,)
        s_neg = torch.sigmoid(neg)  # (B, K)
        grad_u = s_pos.unsqueeze(-1) * v + torch.bmm(s_neg.unsqueeze(1), vn).squeeze(1)
        w_out.index_add_(0, context, s_pos.unsqueeze(-1) * u, alpha=-lr)
        w_out.index_add_(0, negatives.reshape(-1), (s_neg.unsqueeze(-1) * u.unsqueeze(1)).reshape(-1, u.shape[1]),
                         alpha=-lr)
        w_in.index_add_(0, centre, grad_u, alpha=-lr)
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1))


@dataclass
class TrainResult:
    """What `train_sgns` / `train_glove` return: the model, its word vectors and the loss history."""

    model: nn.Module
    vectors: "WordVectors"
    losses: list[float]  # mean loss per epoch
    seconds: float


def train_sgns(docs: Sequence[np.ndarray], vocab: Vocab, dim: int = 100, window: int = 5,
               negative: int = 5, epochs: int = 5, sample: float = 1e-3, lr: float = 0.025,
               min_lr: float = 1e-4, batch_size: int = 4096, seed: int = 0,
               threads: int | None = 1, progress: bool = True) -> TrainResult:
    """Train skip-gram with negative sampling on id-encoded `docs` (from `vocab.encode`).

    Like word2vec: each epoch subsamples frequent words, draws pairs with a shrunk random window,
    and takes SGD steps whose learning rate falls linearly from `lr` to `min_lr`. Unlike word2vec
    (one pair at a time, many threads), a step here updates a whole shuffled batch of pairs,
    each with `negative` noise words drawn from the unigram^0.75 distribution.
    `threads` sets torch's CPU threads while training (None: leave as is). One is the default:
    the tensors of a step are small, and on a busy 2-core machine a second thread made each
    step two to three times slower, not faster.

    >>> res = train_sgns(vocab.encode(sentences), vocab, dim=50, epochs=3)     # doctest: +SKIP
    >>> res.vectors.most_similar("king")                                        # doctest: +SKIP
    """
    if epochs < 1 or batch_size < 1 or negative < 1 or dim < 1:
        raise ValueError(f"dim, negative, epochs and batch_size must be positive integers; got "
                         f"dim={dim}, negative={negative}, epochs={epochs}, batch_size={batch_size}")
    if len(docs) and max((int(d.max()) for d in docs if len(d)), default=0) >= len(vocab):
        raise ValueError("docs hold ids outside the vocabulary; encode them with the same vocab.encode")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SkipGramNS(len(vocab), dim, sparse=False)
    keep = keep_probabilities(vocab.counts, sample)
    table = noise_table(noise_distribution(vocab.counts))
    # The expected number of pairs per epoch fixes the schedule: sum over kept tokens of the mean
    # window reach (w + 1) / 2 on each side.
    expected_pairs = float((keep[np.concatenate(docs)]).sum()) * (window + 1)
    total_steps = max(1, math.ceil(epochs * expected_pairs / batch_size))
    start = time.perf_counter()
    bar = _progress(total=epochs, disable=not progress, desc="skip-gram epochs")
    with _threads(threads):
        losses = _sgns_epochs(model, docs, window, negative, epochs, keep, table, lr, min_lr,
                              batch_size, total_steps, rng, gen, bar)
    bar.close()
    vectors = WordVectors(vocab.words, model.inp.weight.detach().numpy().copy())
    return TrainResult(model, vectors, losses, time.perf_counter() - start)


def _sgns_epochs(model, docs, window, negative, epochs, keep, table, lr, min_lr, batch_size,
                 total_steps, rng, gen, bar) -> list[float]:
    """The epochs of `train_sgns`; returns the mean loss per pair of each epoch."""
    step, losses = 0, []
    for _ in range(epochs):
        centres, contexts = skipgram_pairs(docs, window, rng, keep)
        order = torch.from_numpy(rng.permutation(len(centres)))
        centres, contexts = torch.from_numpy(centres)[order], torch.from_numpy(contexts)[order]
        total = 0.0
        for i in range(0, len(centres), batch_size):
            c, o = centres[i:i + batch_size], contexts[i:i + batch_size]
            # Negatives for the whole batch at once, from word2vec's table of P_n.
            slot = torch.randint(len(table), (len(c) * negative,), generator=gen)
            neg = table[slot].long().view(len(c), negative)
            lr_now = max(min_lr, lr - (lr - min_lr) * step / total_steps)
            total += float(model.sgd_step(c, o, neg, lr_now).sum())
            step += 1
        losses.append(total / max(len(centres), 1))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.update()
    return losses


def _progress(total: int, disable: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=disable, desc=desc)


@contextmanager
def _threads(n: int | None):
    """Run a block with `n` torch CPU threads, then restore the previous setting."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- co-occurrence counts and GloVe ----------------------------------------------------------------

def cooccurrence(docs: Sequence[np.ndarray], vocab_size: int, window: int = 10,
                 distance_weighting: bool = True):
    """Symmetric word-word co-occurrence matrix X (共现矩阵) as a scipy CSR matrix.

    X[i, j] adds 1/d (GloVe's weighting; 1 with `distance_weighting=False`) each time word j
    occurs d <= `window` positions before or after word i in the same document.

    >>> cooccurrence([np.array([0, 1, 2])], 3, window=2).toarray().tolist()
    [[0.0, 1.0, 0.5], [1.0, 0.0, 1.0], [0.5, 1.0, 0.0]]
    """
    import scipy.sparse as sp

    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    docs = [np.asarray(d, dtype=np.int64) for d in docs]
    ids = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}); got {ids.min()}..{ids.max()}")
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    x = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for d in range(1, window + 1):
        same = doc[:-d] == doc[d:]
        a, b = ids[:-d][same], ids[d:][same]
        w = np.full(len(a), 1.0 / d if distance_weighting else 1.0)
        # coo -> csr sums repeated (i, j) entries; both directions make X symmetric.
        x = x + sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([a, b]), np.concatenate([b, a]))),
                              shape=(vocab_size, vocab_size)).tocsr()
    return x


def glove_weight(x: np.ndarray | torch.Tensor, x_max: float = 100.0, alpha: float = 0.75):
    """GloVe's weighting f(x) = (x / x_max)^alpha below x_max, 1 above: rare pairs count less.

    >>> glove_weight(np.array([1.0, 50.0, 200.0]), x_max=100).round(3).tolist()
    [0.032, 0.595, 1.0]
    """
    if x_max <= 0:
        raise ValueError(f"x_max must be positive, got {x_max}")
    if isinstance(x, torch.Tensor):
        return torch.clamp(x / x_max, max=1.0) ** alpha
    return np.minimum(np.asarray(x, dtype=np.float64) / x_max, 1.0) ** alpha


class GloVe(nn.Module):
    """GloVe (Pennington et al. 2014): w_i . w~_j + b_i + b~_j fits log X_ij, weighted by f(X_ij).

    >>> m = GloVe(10, 8); m(torch.tensor([1]), torch.tensor([2]), torch.tensor([0.5]), torch.tensor([1.0])).shape
    torch.Size([1])
    """

    def __init__(self, vocab_size: int, dim: int, sparse: bool = True):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be positive, got {vocab_size}, {dim}")
        self.w = nn.Embedding(vocab_size, dim, sparse=sparse)
        self.w_ctx = nn.Embedding(vocab_size, dim, sparse=sparse)
        self.b = nn.Embedding(vocab_size, 1, sparse=sparse)
        self.b_ctx = nn.Embedding(vocab_size, 1, sparse=sparse)
        for e in (self.w, self.w_ctx):  # the reference C code's initialisation
            nn.init.uniform_(e.weight, -0.5 / dim, 0.5 / dim)
        for e in (self.b, self.b_ctx):
            nn.init.zeros_(e.weight)

    def forward(self, i: torch.Tensor, j: torch.Tensor, log_x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Weighted squared error per entry: f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2."""
        pred = (self.w(i) * self.w_ctx(j)).sum(-1) + self.b(i).squeeze(-1) + self.b_ctx(j).squeeze(-1)
        return weight * (pred - log_x) ** 2

    @torch.no_grad()
    def adagrad_step(self, i: torch.Tensor, j: torch.Tensor, log_x: torch.Tensor, weight: torch.Tensor,
                     lr: float, state: dict[str, torch.Tensor], eps: float = 1e-10,
                     initial_accumulator: float = 1.0) -> torch.Tensor:
        """One AdaGrad step on the summed loss of a batch of entries, gradients written out.

        With e = w_i . w~_j + b_i + b~_j - log X_ij: dL/dw_i = 2 f e w~_j, dL/dw~_j = 2 f e w_i,
        dL/db_i = dL/db~_j = 2 f e. Gradients of repeated rows are summed with index_add_, then
        each parameter moves by lr * g / (sqrt(G) + eps), G the running sum of g^2 (`state`,
        started at `initial_accumulator`; 1 in the reference C code): the step torch.optim.Adagrad takes.
        Returns the loss per entry, before the step.
        """
        wi, wj = self.w.weight[i], self.w_ctx.weight[j]
        err = (wi * wj).sum(-1) + self.b.weight[i, 0] + self.b_ctx.weight[j, 0] - log_x
        g = 2 * weight * err  # (B,)
        grads = {"w": (i, g.unsqueeze(-1) * wj), "w_ctx": (j, g.unsqueeze(-1) * wi),
                 "b": (i, g.unsqueeze(-1)), "b_ctx": (j, g.unsqueeze(-1))}
        for name, (rows, gr) in grads.items():
            param = getattr(self, name).weight
            if name not in state:
                state[name] = torch.full_like(param, initial_accumulator)
            full = torch.zeros_like(param).index_add_(0, rows, gr)
            # Rows outside the batch have a zero gradient, so they neither move nor add to G:
            # dense updates over the whole (small) table are cheaper than gathering unique rows.
            state[name].addcmul_(full, full)
            param.addcdiv_(full, state[name].sqrt().add_(eps), value=-lr)
        return weight * err * err

    def vectors(self) -> np.ndarray:
        """The word vectors GloVe reports: w + w~ (the two tables see the same symmetric X)."""
        return (self.w.weight + self.w_ctx.weight).detach().numpy().copy()


def train_glove(x, vocab: Vocab, dim: int = 100, epochs: int = 25, x_max: float = 100.0,
                alpha: float = 0.75, lr: float = 0.05, batch_size: int = 65536, seed: int = 0,
                initial_accumulator: float = 1.0, threads: int | None = 1,
                progress: bool = True) -> TrainResult:
    """Fit GloVe to the non-zero entries of co-occurrence matrix `x` with AdaGrad, as the paper does.

    Each epoch visits every non-zero entry once, in shuffled batches; the vectors returned are
    w + w~. `threads` as in `train_sgns`.

    >>> res = train_glove(cooccurrence(vocab.encode(sents), len(vocab)), vocab)   # doctest: +SKIP
    >>> res.vectors.most_similar("paris")                                       # doctest: +SKIP
    """
    import scipy.sparse as sp

    if x.shape != (len(vocab), len(vocab)):
        raise ValueError(f"x has shape {x.shape} but the vocabulary has {len(vocab)} words")
    if epochs < 1 or batch_size < 1 or dim < 1:
        raise ValueError(f"dim, epochs and batch_size must be positive; got {dim}, {epochs}, {batch_size}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    coo = sp.coo_matrix(x)
    keep = coo.data > 0
    i = torch.from_numpy(coo.row[keep].astype(np.int64))
    j = torch.from_numpy(coo.col[keep].astype(np.int64))
    xij = torch.from_numpy(coo.data[keep]).float()
    log_x, weight = xij.log(), glove_weight(xij, x_max, alpha)
    model = GloVe(len(vocab), dim, sparse=False)
    state: dict[str, torch.Tensor] = {}
    losses, start = [], time.perf_counter()
    bar = _progress(total=epochs, disable=not progress, desc="GloVe epochs")
    with _threads(threads):
        for _ in range(epochs):
            order = torch.randperm(len(i), generator=gen)
            total = 0.0
            for s in range(0, len(order), batch_size):
                k = order[s:s + batch_size]
                total += float(model.adagrad_step(i[k], j[k], log_x[k], weight[k], lr, state,
                                                  initial_accumulator=initial_accumulator).sum())
            losses.append(total / len(i))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    bar.close()
    return TrainResult(model, WordVectors(vocab.words, model.vectors()), losses, time.perf_counter() - start)


# --- word vectors and their evaluation -------------------------------------------------------------

class WordVectors:
    """A table of word vectors with cosine similarity and nearest neighbours.

    >>> wv = WordVectors(["a", "b", "c"], np.array([[1.0, 0], [0.9, 0.1], [0, 1]]))
    >>> wv.most_similar("a", topn=1)
    [('b', 0.9939)]
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"need one vector per word: {len(words)} words, vectors of shape {vectors.shape}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words must be unique")
        self.vectors = vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)

    @classmethod
    def from_gensim(cls, kv) -> "WordVectors":
        """Wrap gensim `KeyedVectors` (e.g. `Word2Vec(...).wv`)."""
        return cls(list(kv.index_to_key), kv.vectors)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self)} words)")
        return self.vectors[self.index[word]]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(self.unit[self.index[a]] @ self.unit[self.index[b]])

    def most_similar(self, query: str | np.ndarray, topn: int = 10,
                     exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Nearest words by cosine to a word (itself excluded) or to a vector."""
        if isinstance(query, str):
            if query not in self.index:
                raise KeyError(f"{query!r} is not in the vocabulary ({len(self)} words)")
            exclude = {query, *exclude}
            q = self.unit[self.index[query]]
        else:
            q = np.asarray(query, dtype=np.float32)
            q = q / max(np.linalg.norm(q), 1e-12)
        sims = self.unit @ q
        for w in exclude:
            if w in self.index:
                sims[self.index[w]] = -np.inf
        best = np.argsort(-sims)[:topn]
        return [(self.words[k], round(float(sims[k]), 4)) for k in best]


def evaluate_similarity(wv: WordVectors, word1: Sequence[str], word2: Sequence[str],
                        scores: Sequence[float], vocab: Iterable[str] | None = None,
                        lowercase: bool = True) -> dict[str, Any]:
    """Spearman correlation between cosine similarities and human scores (SimLex-999, WordSim-353).

    Pairs with a word outside `vocab` (default: the vectors' own words) are skipped; pass the
    shared vocabulary of several models so that each is scored on the same pairs.

    >>> r = evaluate_similarity(wv, ds["word1"], ds["word2"], ds["score"])   # doctest: +SKIP
    >>> r["spearman"], r["n"], r["coverage"]                                   # doctest: +SKIP
    """
    from scipy.stats import spearmanr

    if not len(word1) == len(word2) == len(scores):
        raise ValueError("word1, word2 and scores must have the same length")
    allowed = set(vocab) if vocab is not None else None
    model, human = [], []
    for a, b, s in zip(word1, word2, scores):
        if lowercase:
            a, b = a.lower(), b.lower()
        if a in wv and b in wv and (allowed is None or (a in allowed and b in allowed)):
            model.append(wv.similarity(a, b))
            human.append(float(s))
    n = len(model)
    rho = float(spearmanr(human, model).statistic) if n >= 3 else float("nan")
    return {"spearman": rho, "n": n, "total": len(scores), "coverage": n / max(len(scores), 1)}


def evaluate_analogies(wv: WordVectors, a: Sequence[str], b: Sequence[str], c: Sequence[str],
                       d: Sequence[str], sections: Sequence[str] | None = None,
                       vocab: Iterable[str] | None = None, lowercase: bool = True,
                       batch_size: int = 512) -> dict[str, Any]:
    """3CosAdd analogies a:b :: c:? (Mikolov et al. 2013): argmax_w cos(w, b - a + c), w not in {a, b, c}.

    Questions with a word outside `vocab` (default: the vectors' own words) are skipped and
    counted in `coverage`. Returns accuracy, n, coverage and accuracy per section.

    >>> r = evaluate_analogies(wv, q["a"], q["b"], q["c"], q["d"], q["section"])   # doctest: +SKIP
    >>> r["accuracy"], r["coverage"]                                            # doctest: +SKIP
    """
    if not len(a) == len(b) == len(c) == len(d):
        raise ValueError("a, b, c and d must have the same length")
    sections = list(sections) if sections is not None else ["all"] * len(a)
    allowed = set(vocab) if vocab is not None else None
    rows, secs = [], []
    for q in zip(a, b, c, d, sections):
        words = [w.lower() for w in q[:4]] if lowercase else list(q[:4])
        if all(w in wv and (allowed is None or w in allowed) for w in words):
            rows.append([wv.index[w] for w in words])
            secs.append(q[4])
    idx = np.array(rows, dtype=np.int64).reshape(-1, 4)
    correct = np.zeros(len(idx), dtype=bool)
    # With unit vectors, ranking by cos(w, b - a + c) equals ranking by w . (b - a + c).
    cand = np.arange(len(wv)) if allowed is None else np.array(sorted(wv.index[w] for w in allowed if w in wv))
    unit = wv.unit[cand]
    pos = np.full(len(wv), -1)
    pos[cand] = np.arange(len(cand))
    for s in range(0, len(idx), batch_size):
        q = idx[s:s + batch_size]
        target = wv.unit[q[:, 1]] - wv.unit[q[:, 0]] + wv.unit[q[:, 2]]
        sims = target @ unit.T
        rows_ = np.arange(len(q))[:, None]
        sims[rows_, pos[q[:, :3]]] = -np.inf  # the question words are never the answer
        correct[s:s + len(q)] = cand[sims.argmax(1)] == q[:, 3]
    by_section: dict[str, float] = {}
    secs_arr = np.array(secs)
    for name in dict.fromkeys(secs):
        m = secs_arr == name
        by_section[name] = float(correct[m].mean())
    n = len(idx)
    return {"accuracy": float(correct.mean()) if n else float("nan"), "correct": int(correct.sum()), "n": n,
            "total": len(a), "coverage": n / max(len(a), 1), "by_section": by_section,
            "section_n": {k: int((secs_arr == k).sum()) for k in by_section}}
