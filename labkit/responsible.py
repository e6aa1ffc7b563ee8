"""Responsible AI, measured: fairness tests, explanations, grounded answers, scaling fits, model cards.

- `bootstrap_ci`, `counterfactual_gap`, `fill_templates`: swap a name or group word in templated
  sentences and measure how much a classifier's positive probability moves, with a paired bootstrap
  confidence interval;
- `weat`: the Word Embedding Association Test (Caliskan et al. 2017): effect size and permutation
  p-value for two target sets and two attribute sets of vectors;
- `integrated_gradients`, `attention_rollout`, `occlusion`: three explanations of one prediction
  (IG is checked against captum and for completeness: attributions sum to f(x) - f(baseline));
- `PowerLawFit`, `fit_power_law`, `scaling_study`: a power law L(x) = a (x / x0)^(-alpha) fitted
  with `scipy.optimize.curve_fit`, its covariance-based extrapolation band, and a small scaling
  study of the book's GPT (the kind chapter 06 runs);
- `train_flops`, `book_minutes`: the compute the book's own runs cost;
- `model_card`: a Markdown model card (Mitchell et al. 2019) from book.toml and recorded results.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations, product
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["bootstrap_ci", "counterfactual_gap", "fill_templates", "weat", "weat_association",
           "integrated_gradients", "ig_alphas", "attention_rollout", "occlusion",
           "PowerLawFit", "fit_power_law", "scaling_study", "train_flops", "book_minutes",
           "MODEL_CARD_SECTIONS", "model_card"]


# --- fairness: counterfactual tests ----------------------------------------------------------------

def bootstrap_ci(values: Sequence[float] | np.ndarray, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean of `values` and its percentile bootstrap confidence interval (mean, low, high).

    >>> m, lo, hi = bootstrap_ci([0.1, 0.2, 0.3, 0.4], n_boot=500)
    >>> round(m, 2), lo <= m <= hi
    (0.25, True)
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    tail = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def counterfactual_gap(p_a: Sequence[float] | np.ndarray, p_b: Sequence[float] | np.ndarray,
                       n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Paired gap mean(p_a - p_b) between two versions of the same sentences, with a bootstrap CI.

    `p_a[i]` and `p_b[i]` are a classifier's positive probabilities for sentence i written with
    group A and with group B (everything else equal), so each pair cancels the sentence's own
    sentiment and only the swapped words remain. The interval resamples sentences (pairs).

    >>> g = counterfactual_gap([0.9, 0.6, 0.7], [0.8, 0.5, 0.7]); round(g["gap"], 3), g["n"]
    (0.067, 3)
    """
    a, b = np.asarray(p_a, dtype=float).ravel(), np.asarray(p_b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"p_a and p_b must be paired (same length); got {a.size} and {b.size}")
    gap, lo, hi = bootstrap_ci(a - b, n_boot=n_boot, level=level, seed=seed)
    return {"gap": gap, "low": lo, "high": hi, "n": int(a.size)}


def fill_templates(templates: Sequence[str], slot: str, values: Sequence[str]) -> list[dict[str, Any]]:
    """Every template with every value put into `{slot}`: rows of (template index, value, text).

    A sentence that starts with the value gets a capital first letter, so "he" reads "He".

    >>> [r["text"] for r in fill_templates(["{who} liked it ."], "who", ["he", "Anna"])]
    ['He liked it .', 'Anna liked it .']
    """
    if not templates or not values:
        raise ValueError("fill_templates needs at least one template and one value")
    bad = [t for t in templates if "{" + slot + "}" not in t]
    if bad:
        raise ValueError(f"templates without the slot {{{slot}}}: {bad[:3]}")
    rows = []
    for (i, t), v in product(enumerate(templates), values):
        text = t.format(**{slot: v})
        rows.append({"template": i, "value": v, "text": text[0].upper() + text[1:]})
    return rows


# --- fairness: WEAT ------------------------------------------------------------------------------

def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=float)
    if m.ndim != 2 or len(m) == 0:
        raise ValueError(f"expected a non-empty (words, dim) array of vectors, got shape {m.shape}")
    return m / np.linalg.norm(m, axis=1, keepdims=True).clip(1e-12)


def weat_association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) = mean cos(w, a) - mean cos(w, b), for each row w of `w`.

    >>> weat_association(np.eye(2), np.eye(2)[:1], np.eye(2)[1:]).tolist()
    [1.0, -1.0]
    """
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(1) - (w @ b.T).mean(1)


def weat(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, n_perm: int = 10_000,
         seed: int = 0) -> dict[str, float]:
    """WEAT effect size d and one-sided permutation p-value (Caliskan et al. 2017).

    d = (mean_x s(x,A,B) - mean_y s(y,A,B)) / std_{w in X u Y} s(w,A,B) (sample std, ddof=1).
    The p-value is the share of equal-size re-partitions of X u Y whose test statistic
    sum_x s - sum_y s is at least the observed one: all of them when there are at most
    `n_perm`, else `n_perm` random ones.

    >>> r = weat(np.eye(4)[:2], np.eye(4)[2:], np.eye(4)[:2], np.eye(4)[2:]); round(r["effect_size"], 3)
    1.732
    """
    sx, sy = weat_association(x, a, b), weat_association(y, a, b)
    s = np.concatenate([sx, sy])
    d = (sx.mean() - sy.mean()) / s.std(ddof=1)
    observed = sx.sum() - sy.sum()
    n, total = len(sx), s.sum()
    n_all = math.comb(len(s), n)
    if n_all <= n_perm:
        # sum_x - sum_y = 2 sum_x - total, so only the sum over the chosen X matters.
        stats = np.array([2 * s[list(idx)].sum() - total for idx in combinations(range(len(s)), n)])
        exact = True
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n_perm, len(s))), axis=1)[:, :n]
        stats = 2 * s[idx].sum(1) - total
        exact = False
    p = float((stats >= observed - 1e-12).mean())
    return {"effect_size": float(d), "p_value": p, "statistic": float(observed), "n_x": len(sx),
            "n_y": len(sy), "n_a": len(a), "n_b": len(b), "exact": exact}


# --- explanations -----------------------------------------------------------------------------------

def ig_alphas(n_steps: int, method: str = "riemann_trapezoid") -> tuple[torch.Tensor, torch.Tensor]:
    """Points alpha in [0, 1] on the straight path and their quadrature weights (sum to 1).

    The two rules captum uses: the trapezoid rule on `n_steps` equal steps, and Gauss-Legendre.

    >>> a, w = ig_alphas(3); a.tolist(), w.tolist()
    ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
    """
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    if method == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, n_steps, dtype=torch.float64)
        w = torch.full((n_steps,), 1.0 / (n_steps - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n_steps - 1)
    elif method == "gausslegendre":
        x, wl = np.polynomial.legendre.leggauss(n_steps)
        alphas, w = torch.tensor(0.5 * (x + 1)), torch.tensor(0.5 * wl)
    else:
        raise ValueError(f"unknown method {method!r}; use 'riemann_trapezoid' or 'gausslegendre'")
    return alphas, w


def integrated_gradients(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         baseline: torch.Tensor | None = None, n_steps: int = 64,
                         method: str = "riemann_trapezoid", batch_size: int = 32) -> torch.Tensor:
    """Integrated gradients of a scalar output: (x - x') * integral_0^1 df/dx(x' + a (x - x')) da.

    `f` maps a batch of inputs (k, *x.shape) to k scalars; `x` is one input (no batch axis),
    `baseline` x' the reference input (zeros when None). The integral is a quadrature over
    `n_steps` points (`ig_alphas`), evaluated `batch_size` points at a time. By the fundamental
    theorem of calculus the attributions sum to f(x) - f(x') up to the quadrature error
    ("completeness", Sundararajan et al. 2017).

    >>> attr = integrated_gradients(lambda z: (z ** 2).sum(-1), torch.tensor([1.0, 2.0]))
    >>> [round(v, 4) for v in attr.tolist()]
    [1.0, 4.0]
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError("x must be a torch.Tensor (one input, without a batch axis)")
    baseline = torch.zeros_like(x) if baseline is None else baseline.to(x.dtype)
    if baseline.shape != x.shape:
        raise ValueError(f"baseline shape {tuple(baseline.shape)} differs from x shape {tuple(x.shape)}")
    alphas, weights = ig_alphas(n_steps, method)
    total = torch.zeros_like(x, dtype=torch.float64)
    delta = (x - baseline).detach()
    for s in range(0, n_steps, batch_size):
        a = alphas[s:s + batch_size].to(x.dtype).view(-1, *([1] * x.dim()))
        points = (baseline.detach() + a * delta).requires_grad_(True)
        out = f(points)
        if out.shape != (len(a),):
            raise ValueError(f"f must return one scalar per input of the batch, shape ({len(a)},); "
                             f"got {tuple(out.shape)}")
        (grads,) = torch.autograd.grad(out.sum(), points)
        w = weights[s:s + batch_size].view(-1, *([1] * x.dim()))
        total += (w * grads.double()).sum(0)
    return (delta.double() * total).to(x.dtype)


def attention_rollout(attentions: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each input token flows to each position.

    `attentions`: one (heads, T, T) or (1, heads, T, T) tensor per layer, first layer first.
    Heads are averaged; with `residual`, the skip connection is modelled as 0.5 A + 0.5 I, and
    rows are renormalised; the layers are multiplied: R = A_L ... A_2 A_1. Row i of R says how
    much position i at the top draws on each input token.

    >>> r = attention_rollout([torch.full((1, 2, 2), 0.5)]); r.tolist()
    [[0.75, 0.25], [0.25, 0.75]]
    """
    if not attentions:
        raise ValueError("attention_rollout needs one attention tensor per layer (got none); "
                         "run the model with output_attentions=True and attn_implementation='eager'")
    rollout = None
    for att in attentions:
        att = att.detach().double()
        if att.dim() == 4:
            if att.shape[0] != 1:
                raise ValueError("attention_rollout explains one sentence: pass batch size 1")
            att = att[0]
        a = att.mean(0)
        if residual:
            a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def occlusion(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, baseline: torch.Tensor,
              positions: Sequence[int]) -> torch.Tensor:
    """Leave-one-out: f(x) - f(x with row i replaced by the baseline's row i), for each position i.

    >>> occlusion(lambda z: z.sum((-1, -2)), torch.ones(3, 2), torch.zeros(3, 2), [0, 2]).tolist()
    [2.0, 2.0]
    """
    with torch.no_grad():
        batch = x.unsqueeze(0).repeat(len(positions) + 1, *([1] * x.dim()))
        for k, i in enumerate(positions, start=1):
            batch[k, i] = baseline[i]
        out = f(batch)
    return out[0] - out[1:]


# --- scaling laws ----------------------------------------------------------------------------------

def _power(x, a, alpha, x0):
    return a * (x / x0) ** (-alpha)


@dataclass
class PowerLawFit:
    """L(x) = a (x / x0)^(-alpha), fitted by least squares on the loss scale.

    `cov` is curve_fit's covariance of (a, alpha), scaled by the residual variance; `predict`
    returns the curve and a band from parameter draws of that covariance.
    """
    a: float
    alpha: float
    x0: float
    cov: np.ndarray
    r2: float
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)

    @property
    def alpha_se(self) -> float:
        return float(math.sqrt(max(self.cov[1, 1], 0.0)))

    def __call__(self, x) -> np.ndarray:
        return _power(np.asarray(x, dtype=float), self.a, self.alpha, self.x0)

    def predict(self, x, level: float = 0.95, n_draws: int = 4000, seed: int = 0):
        """(mean curve, low, high) at `x`: percentiles over draws of (a, alpha) ~ N(fit, cov)."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal([self.a, self.alpha], self.cov, size=n_draws)
        curves = _power(x[None, :], draws[:, :1], draws[:, 1:], self.x0)
        tail = (1 - level) / 2
        return self(x), np.quantile(curves, tail, axis=0), np.quantile(curves, 1 - tail, axis=0)


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """Fit L = a (x / x0)^(-alpha) to points (x, y) with `scipy.optimize.curve_fit`.

    x0 is the geometric mean of x, so a is the loss in the middle of the data and the two
    parameters are nearly uncorrelated. R^2 is 1 - SS_res / SS_tot on the loss scale.

    >>> f = fit_power_law([1e4, 1e5, 1e6], [4.0, 2.0, 1.0]); round(f.alpha, 3), round(f.r2, 3)
    (0.301, 1.0)
    """
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"fit_power_law needs at least 3 paired points; got x {x.shape}, y {y.shape}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("x and y must be positive for a power law")
    x0 = float(np.exp(np.log(x).mean()))
    # Start from the straight line in log-log space.
    slope, icpt = np.polyfit(np.log(x / x0), np.log(y), 1)
    popt, pcov = curve_fit(lambda t, a, al: _power(t, a, al, x0), x, y, p0=[math.exp(icpt), -slope])
    resid = y - _power(x, popt[0], popt[1], x0)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    if not np.isfinite(pcov).all():  # exactly two points, or a perfect fit: no residual variance
        pcov = np.zeros((2, 2))
    return PowerLawFit(float(popt[0]), float(popt[1]), x0, pcov, r2, x, y)


def scaling_study(train_ids: Sequence[int] | np.ndarray, val_ids: Sequence[int] | np.ndarray,
                  vocab_size: int, widths: Sequence[int], tokens: int, budgets: Sequence[int] = (),
                  budget_width: int | None = None, n_layer: int = 2, n_head: int = 4, block_size: int = 64,
                  batch_size: int = 16, lr: float = 2e-3, eval_batches: int = 40, seed: int = 0,
                  workdir: str | Path | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Train the book's GPT at several widths on `tokens` tokens, and one width on several budgets.

    The same recipe as chapter 06's scaling study (AdamW, warm-up and cosine over each run's own
    steps, random blocks), returning records with the same keys as its `scaling_06.json`:
    width, params (non-embedding), tokens, seconds, val_loss.

    >>> rows = scaling_study(ids[:50000], ids[50000:], 65, widths=[16, 32], tokens=20000)  # doctest: +SKIP
    >>> sorted(rows[0])                                                                      # doctest: +SKIP
    ['params', 'seconds', 'tokens', 'val_loss', 'width']
    """
    import tempfile

    from tqdm.auto import tqdm

    from . import train
    from .gpt import GPT, GPTConfig

    if not widths or tokens < batch_size * block_size:
        raise ValueError(f"need at least one width and tokens >= batch_size * block_size "
                         f"({batch_size * block_size}); got widths={list(widths)}, tokens={tokens}")
    bad = [w for w in [*widths, *([budget_width] if budget_width else [])] if w % n_head]
    if bad:
        raise ValueError(f"every width must be divisible by n_head={n_head}; these are not: {bad}")
    if budgets and budget_width is None:
        raise ValueError("budgets given without budget_width: say which width trains on them")
    work = Path(workdir or tempfile.mkdtemp(prefix="scaling_"))
    tr = train.TokenBlocks.from_ids(np.asarray(train_ids), work / "scaling_train.bin")
    va = train.TokenBlocks.from_ids(np.asarray(val_ids), work / "scaling_val.bin")

    def one(width: int, n_tokens: int) -> dict[str, float]:
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                              n_head=n_head, n_embd=width))
        opt = model.configure_optimizer(weight_decay=0.1, lr=lr, betas=(0.9, 0.99))
        tc = train.TrainConfig(batch_size=batch_size, block_size=block_size, lr=lr, eval_every=0, seed=seed,
                               max_steps=max(n_tokens // (batch_size * block_size), 1))
        h = train.train_lm(model, opt, tr, None, tc, progress=False)
        return {"width": width, "params": model.num_params(non_embedding=True), "tokens": h.tokens,
                "seconds": h.seconds, "val_loss": train.estimate_loss(model, va, tc, batches=eval_batches)}

    jobs = [(w, tokens) for w in widths] + [(budget_width, d) for d in budgets
                                             if not (budget_width in widths and d == tokens)]
    return [one(w, d) for w, d in tqdm(jobs, desc="scaling runs", disable=not progress, leave=False)]


# --- compute accounting ----------------------------------------------------------------------------

def train_flops(params: float, tokens: float) -> float:
    """Training compute of a Transformer, C ~ 6 N D floating-point operations (Kaplan et al. 2020).

    Forward ~2 N D, backward ~4 N D (matrix products only; attention over short contexts is small).

    >>> train_flops(1e6, 1e9) == 6e15
    True
    """
    if params < 0 or tokens < 0:
        raise ValueError("params and tokens must be non-negative")
    return 6.0 * float(params) * float(tokens)
