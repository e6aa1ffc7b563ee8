"""Tests of labkit.harness: tasks and splits, log-likelihood scoring, statistics, contamination."""
import math

import numpy as np
import pytest
import torch

from labkit import harness
from labkit.harness import tasks as T


# --- tasks -----------------------------------------------------------------------------------------

def test_arithmetic_items_are_fixed_and_correct():
    a, b = harness.load_task("arithmetic"), harness.load_task("arithmetic")
    assert a.items == b.items  # no hidden randomness: the split is part of the task
    assert a.sizes() == {"train": 200, "validation": 100, "test": 200}
    ids = [r["id"] for s in a.items.values() for r in s]
    assert len(ids) == len(set(ids))  # no item in two splits
    for r in a.items["test"]:
        f = r["fields"]
        assert r["choices"][r["gold"]] == str(f["a"] + f["b"])
        assert len(set(r["choices"])) == 4


def test_capitals_split_by_country_hash():
    t = harness.load_task("capitals")
    splits = {s: {r["id"] for r in rows} for s, rows in t.items.items()}
    assert not (splits["train"] & splits["test"]) and not (splits["validation"] & splits["test"])
    for r in t.items["test"]:
        assert T._bucket(r["id"]) == "test"
        assert len(set(r["choices"])) == 4 and r["choices"][r["gold"]] == r["answers"][0]
    gen = harness.load_task("capitals-gen")
    assert [r["id"] for r in gen.items["test"]] == [r["id"] for r in t.items["test"]]


def test_prompts_templates_and_shots():
    t = harness.load_task("arithmetic")
    p = t.prompts("validation", template="eq", limit=2)
    assert len(p) == 2 and p[0].context.endswith("=")
    few = t.prompts("test", shots=2, limit=1, shot_seed=3)[0]
    assert few.context.count("Question:") == 3  # two solved examples, then the item
    assert few.context == t.prompts("test", shots=2, limit=1, shot_seed=3)[0].context
    with pytest.raises(ValueError, match="templates"):
        t.prompts("test", template="nope")
    with pytest.raises(ValueError, match="splits"):
        t.prompts("dev")
    with pytest.raises(ValueError, match="unknown task"):
        harness.load_task("mmlu")
    with pytest.raises(ValueError, match="generation task"):
        harness.load_task("capitals-gen").prompts("test")


@pytest.mark.slow
def test_wiki_cloze_and_zh_tasks():
    w = harness.load_task("wiki-cloze")
    assert w.sizes() == {"validation": 200, "test": 200}
    r = w.items["test"][0]
    assert r["choices"][r["gold"]] == r["answers"][0] and len(set(r["choices"])) == 4
    z = harness.load_task("zh-sentiment", n_per_split=50)
    golds = [r["gold"] for r in z.items["test"]]
    assert 0 < sum(golds) < 50  # both labels in the first items (the fixed shuffle)


# --- scoring ---------------------------------------------------------------------------------------

class Bigram(torch.nn.Module):
    """A causal LM whose next-token logits depend only on the current token: easy to score by hand."""

    def __init__(self, vocab: int = 7):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, x):
        return (self.table[x], None)


def enc(s: str) -> list[int]:
    return [ord(c) % 7 for c in s]


def test_encode_pair_moves_trailing_space():
    assert harness.encode_pair(enc, "ab ", "c") == (enc("ab"), enc(" c"))
    with pytest.raises(ValueError, match="context is empty"):
        harness.encode_pair(enc, "", "x")


def test_loglikelihoods_equal_hand_computation_and_ignore_batching():
    m = Bigram()
    reqs = [("abc", " d"), ("a", " bcd"), ("abcdef", " g")]
    logp = torch.log_softmax(m.table.detach(), dim=-1)
    want = []
    for c, x in reqs:
        ids = enc(c + x)
        n = len(enc(x))
        want.append((sum(float(logp[ids[i - 1], ids[i]]) for i in range(len(ids) - n, len(ids))), n))
    for bs in (1, 2, 8):
        got = harness.loglikelihoods(m, enc, reqs, batch_size=bs, progress=False)
        assert [n for _, n in got] == [n for _, n in want]
        assert np.allclose([v for v, _ in got], [v for v, _ in want], atol=1e-5)


def test_score_mc_normalisations():
    m = Bigram()
    p = [T.Prompt("x", "ab", ("c", "dddd"), 1)]
    r = harness.score_mc(m, enc, p, progress=False)
    ll = r.loglik[0]
    assert r.n_tokens[0].tolist() == [2.0, 5.0] and r.n_chars[0].tolist() == [1.0, 4.0]
    assert np.allclose(r.scores("token")[0], ll / [2, 5]) and np.allclose(r.scores("char")[0], ll / [1, 4])
    assert r.accuracy("sum") == float(np.argmax(ll) == 1)
    assert math.isclose(r.probs()[0].sum(), 1.0)
    with pytest.raises(ValueError, match="norm"):
        r.scores("byte")
    with pytest.raises(ValueError, match="no prompts"):
        harness.score_mc(m, enc, [], progress=False)


def test_score_answers_uses_squad_metrics():
    s = harness.score_answers(["the Paris", "Lima, Peru", "Quito"], [["Paris"], ["Lima"], ["Bogota"]])
    assert s["em"].tolist() == [1.0, 0.0, 0.0]
    assert np.allclose(s["f1"], [1.0, 2 / 3, 0.0]) and s["contains"].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="answer lists"):
        harness.score_answers(["a"], [])

def test_generate_answers_keeps_the_first_line(monkeypatch):
    """Chapters 07 and 18 score `generate_answers`: a model that goes on after its answer is cut at the line."""
    from labkit import generate

    seen = {}

    def fake_batch(model, tok, prompts, max_new_tokens, batch_size, system, progress):
        seen.update(prompts=prompts, max_new_tokens=max_new_tokens, system=system)
        return ["Lima\nQuestion: What is", "  The capital is Quito.  ", "\nBogota"]

    monkeypatch.setattr(generate, "generate_batch", fake_batch)
    out = harness.generate_answers(None, None, ["a", "b", "c"], system="Be brief.", max_new_tokens=5, progress=False)
    assert out == ["Lima", "The capital is Quito.", "Bogota"]  # leading blank lines are stripped first
    assert seen == {"prompts": ["a", "b", "c"], "max_new_tokens": 5, "system": "Be brief."}
    s = harness.score_answers(out, [["Lima"], ["Quito"], ["Bogota"]])
    assert s["em"].tolist() == [1.0, 0.0, 1.0] and s["contains"].tolist() == [1.0, 1.0, 1.0]



# --- statistics ------------------------------------------------------------------------------------

def test_bootstrap_ci_close_to_normal_approximation():
    v = np.array([1.0] * 70 + [0.0] * 30)
    mean, lo, hi = harness.bootstrap_ci(v, n_boot=4000, seed=1)
    half = 1.96 * math.sqrt(0.7 * 0.3 / 100)
    assert mean == 0.7 and abs((hi - lo) / 2 - half) < 0.015
    assert harness.bootstrap_ci(v, n_boot=500, seed=2) == harness.bootstrap_ci(v, n_boot=500, seed=2)
    with pytest.raises(ValueError, match="empty"):
        harness.bootstrap_ci([])


def test_permutation_test_matches_scipy_and_exact_sign_test():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = (rng.random(60) < 0.7).astype(float)
    b = (rng.random(60) < 0.5).astype(float)
    p = harness.permutation_test(a, b, n_perm=20000, seed=0)
    sp = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                n_resamples=20000, random_state=0).pvalue
    assert abs(p - sp) < 0.02
    assert harness.permutation_test(a, a) == 1.0
    with pytest.raises(ValueError, match="same items"):
        harness.permutation_test([1, 0], [1])


def test_paired_bootstrap_and_items_needed():
    mean, lo, hi = harness.paired_bootstrap([1, 1, 1, 0] * 25, [1, 0, 1, 0] * 25, n_boot=1000)
    assert mean == 0.25 and lo < 0.25 < hi
    assert harness.items_needed(0.02, 0.3) == 1766
    assert harness.items_needed(0.04, 0.3) == math.ceil(1766 / 4)
    with pytest.raises(ValueError):
        harness.items_needed(0.0, 0.3)


def test_cohen_kappa_matches_sklearn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        assert abs(harness.cohen_kappa(a, b) - cohen_kappa_score(a, b)) < 1e-12
    assert harness.cohen_kappa([1, 0, 1], [1, 0, 1]) == 1.0
    assert math.isnan(harness.cohen_kappa([0, 0], [0, 0]))
    with pytest.raises(ValueError, match="equally long"):
        harness.cohen_kappa([1], [1, 0])


def test_ece_matches_torchmetrics():
    from torchmetrics.functional.classification import multiclass_calibration_error

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    target = rng.integers(0, 4, 200)
    conf, hit = probs.max(1), (probs.argmax(1) == target).astype(float)
    ref = float(multiclass_calibration_error(torch.tensor(probs), torch.tensor(target), num_classes=4, n_bins=10))
    assert abs(harness.ece(conf, hit, 10) - ref) < 1e-6
    bins = harness.reliability(conf, hit, 10)
    assert sum(b["count"] for b in bins) == 200
    with pytest.raises(ValueError, match="confidences"):
        harness.ece([1.5], [1])


# --- contamination ---------------------------------------------------------------------------------

def test_ngram_overlap():
    train = harness.training_ngrams(["We read that the capital of Peru is Lima, and more."], 3)
    assert harness.overlap("The capital of Peru is Lima.", train, 3) == 1.0
    assert harness.overlap("The capital of Chile is Santiago.", train, 3) == pytest.approx(1 / 4)
    assert harness.overlap("too short", train, 3) == 0.0
    with pytest.raises(ValueError):
        harness.ngrams("a b", 0)
