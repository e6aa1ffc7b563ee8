"""GloVe: `cooccurrence`, a distance-weighted co-occurrence matrix, and its weighted least-squares
factorisation (`glove_weight`, `GloVe`, `train_glove`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .training import _progress, _threads, TrainResult
from .vectors import WordVectors
from .vocab import Vocab


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
