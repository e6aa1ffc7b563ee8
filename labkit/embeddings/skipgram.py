"""Skip-gram with negative sampling: `skipgram_pairs` ((centre, context) pairs with word2vec's
randomly shrunk window, vectorised), the model `SkipGramNS` and its batched training loop
`train_sgns`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .training import _progress, _threads, TrainResult
from .vectors import WordVectors
from .vocab import keep_probabilities, noise_distribution, noise_table, Vocab


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
