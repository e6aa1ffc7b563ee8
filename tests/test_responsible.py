"""labkit.responsible: values checked against brute force, captum, scipy and known closed forms."""
import math
from itertools import combinations

import numpy as np
import pytest
import torch

from labkit import responsible as R


def test_bootstrap_ci_and_counterfactual_gap():
    m, lo, hi = R.bootstrap_ci(np.full(10, 0.3), n_boot=200)
    assert m == pytest.approx(0.3) and lo == pytest.approx(0.3) and hi == pytest.approx(0.3)
    rng = np.random.default_rng(0)
    a = rng.uniform(size=400)
    g = R.counterfactual_gap(a + 0.1, a, n_boot=500)
    assert g["gap"] == pytest.approx(0.1) and g["low"] == pytest.approx(0.1) and g["n"] == 400
    b = rng.normal(0.05, 0.1, size=2000)
    g = R.counterfactual_gap(b, np.zeros_like(b), n_boot=1000)
    # The bootstrap interval of a mean is close to the normal one, mean +- 1.96 s / sqrt(n).
    half = 1.96 * b.std(ddof=1) / math.sqrt(len(b))
    assert g["high"] - g["low"] == pytest.approx(2 * half, rel=0.1)
    with pytest.raises(ValueError, match="paired"):
        R.counterfactual_gap([0.1, 0.2], [0.1])


def test_fill_templates():
    rows = R.fill_templates(["{who} liked it .", "i saw {who} ."], "who", ["he", "Amy"])
    assert [r["text"] for r in rows] == ["He liked it .", "Amy liked it .", "I saw he .", "I saw Amy ."]
    with pytest.raises(ValueError, match="slot"):
        R.fill_templates(["no slot here"], "who", ["x"])


def _weat_brute(x, y, a, b):
    def s(w):
        u = lambda m: m / np.linalg.norm(m, axis=-1, keepdims=True)  # noqa: E731
        return np.array([np.mean([u(v) @ u(p) for p in a]) - np.mean([u(v) @ u(q) for q in b]) for v in w])
    sx, sy = s(x), s(y)
    allv = np.concatenate([x, y])
    obs = s(x).sum() - s(y).sum()
    stats = []
    for idx in combinations(range(len(allv)), len(x)):
        rest = [i for i in range(len(allv)) if i not in idx]
        stats.append(s(allv[list(idx)]).sum() - s(allv[rest]).sum())
    d = (sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1)
    return d, np.mean(np.array(stats) >= obs - 1e-12)


def test_weat_matches_brute_force():
    rng = np.random.default_rng(1)
    x, y, a, b = (rng.normal(size=(k, 6)) for k in (4, 4, 3, 5))
    x[:, 0] += 1.5
    a[:, 0] += 1.5
    r = R.weat(x, y, a, b)
    d, p = _weat_brute(x, y, a, b)
    assert r["exact"] and r["effect_size"] == pytest.approx(d, abs=1e-12) and r["p_value"] == pytest.approx(p)
    # Swapping the targets flips the sign; random permutations estimate the exact p-value.
    assert R.weat(y, x, a, b)["effect_size"] == pytest.approx(-d)
    assert R.weat(x, y, a, b, n_perm=30, seed=0)["p_value"] == pytest.approx(p, abs=0.2)


def _toy_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return lambda z: net(z).squeeze(-1)


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre"])
def test_integrated_gradients_matches_captum(method):
    from captum.attr import IntegratedGradients

    f = _toy_model()
    x, x0 = torch.randn(3, 4), torch.randn(3, 4)
    ours = R.integrated_gradients(f, x, x0, n_steps=20, method=method, batch_size=7)
    ref = IntegratedGradients(f).attribute(x[None], baselines=x0[None], n_steps=20, method=method)[0]
    # captum's trapezoid weights sum to (n - 1) / n; the textbook rule's sum to 1.
    scale = 19 / 20 if method == "riemann_trapezoid" else 1.0
    assert torch.allclose(ref, scale * ours, atol=1e-6)


def test_integrated_gradients_completeness_and_linear_case():
    f = _toy_model()
    x, x0 = torch.randn(3, 4), torch.zeros(3, 4)
    attr = R.integrated_gradients(f, x, x0, n_steps=64, method="gausslegendre")
    with torch.no_grad():
        delta = (f(x[None]) - f(x0[None])).item()
    assert abs(attr.sum().item() - delta) < 1e-5
    w = torch.randn(5)
    lin = R.integrated_gradients(lambda z: z @ w, torch.ones(5), n_steps=2)  # exact for a linear f
    assert torch.allclose(lin, w, atol=1e-6)
    a, wts = R.ig_alphas(7, "gausslegendre")
    assert float(wts.sum()) == pytest.approx(1.0) and float((wts * a ** 5).sum()) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="one scalar per input"):
        R.integrated_gradients(lambda z: z, torch.ones(3), n_steps=4)


def test_attention_rollout_and_occlusion():
    torch.manual_seed(0)
    layers = [torch.softmax(torch.randn(1, 2, 4, 4), -1) for _ in range(3)]
    r = R.attention_rollout(layers)
    expect = torch.eye(4, dtype=torch.float64)
    for att in layers:
        a = 0.5 * att[0].double().mean(0) + 0.5 * torch.eye(4, dtype=torch.float64)
        expect = (a / a.sum(-1, keepdim=True)) @ expect
    assert torch.allclose(r, expect) and torch.allclose(r.sum(-1), torch.ones(4, dtype=torch.float64))
    occ = R.occlusion(lambda z: (z ** 2).sum((-1, -2)), torch.full((3, 2), 2.0), torch.zeros(3, 2), [1, 2])
    assert occ.tolist() == [8.0, 8.0]


def test_fit_power_law_recovers_exponent_and_band():
    x = np.geomspace(1e4, 1e6, 6)
    y = 3.0 * (x / 1e5) ** -0.2 * np.exp(np.random.default_rng(0).normal(0, 0.005, 6))
    fit = R.fit_power_law(x, y)
    assert fit.alpha == pytest.approx(0.2, abs=0.02) and fit.r2 > 0.98 and fit.alpha_se > 0
    mean, lo, hi = fit.predict([1e7, 1e8])
    rel = (hi - lo) / mean
    assert (lo < mean).all() and (mean < hi).all() and rel[1] > rel[0]  # the band widens away from the data
    exact = R.fit_power_law([1.0, 10.0, 100.0], [1.0, 0.5, 0.25])
    assert exact.alpha == pytest.approx(math.log10(2)) and exact.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        R.fit_power_law([1, 2, 0], [1, 1, 1])


@pytest.mark.usefixtures("one_thread")
def test_scaling_study_records_and_flops():
    ids = np.random.default_rng(0).integers(0, 20, 6000)
    rows = R.scaling_study(ids[:5000], ids[5000:], 20, widths=[8, 16], tokens=2048, budgets=[1024, 2048],
                           budget_width=8, n_layer=1, n_head=2, block_size=16, batch_size=8, eval_batches=2,
                           progress=False)
    assert [(r["width"], r["tokens"]) for r in rows] == [(8, 2048), (16, 2048), (8, 1024)]
    assert rows[0]["params"] < rows[1]["params"] and all(r["val_loss"] > 0 for r in rows)
    assert R.train_flops(2e6, 3e9) == pytest.approx(3.6e16)
    with pytest.raises(ValueError, match="n_head"):
        R.scaling_study(ids, ids, 20, widths=[7], tokens=4096, n_head=2)


def test_model_card_sections_and_targets():
    from labkit import book

    sections = {s: f"text of {s}" for s in book.MODEL_CARD_SECTIONS}
    card = book.model_card("demo", "00", sections, {"cosine_gap": 0.7, "other": 1.0}, profile="cpu")
    assert card.startswith("# Model card: demo")
    assert all(f"## {s}" in card for s in book.MODEL_CARD_SECTIONS)
    assert "| `cosine_gap` | 0.7 | > 0.3 |" in card and "| `other` | 1 |  |" in card
    with pytest.raises(ValueError, match="missing"):
        book.model_card("demo", "00", {"Model details": "x"})
