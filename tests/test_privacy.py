"""Tests of labkit.privacy: values checked against opacus, scikit-learn, TenSEAL and known checksums."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit import privacy
from labkit.gpt import GPT, GPTConfig


def test_dp_step_matches_opacus_without_noise():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    torch.manual_seed(0)
    x, y = torch.randn(16, 5) * 3, torch.randint(0, 3, (16,))
    ours = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    theirs.load_state_dict(ours.state_dict())
    privacy.dp_sgd_step(ours, F.cross_entropy, x, y, lr=0.5, max_grad_norm=0.7, noise_multiplier=0.0)
    gsm = GradSampleModule(theirs)
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.5), noise_multiplier=0.0, max_grad_norm=0.7,
                      expected_batch_size=16)
    F.cross_entropy(gsm(x), y).backward()
    opt.step()
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_clip_and_noise_bounds_and_noise_scale():
    g = {"w": torch.randn(200, 10) * 5}
    out = privacy.clip_and_noise(g, 1.0, 0.0)
    # The mean of clipped gradients has norm at most C.
    assert out["w"].norm() <= 1.0 + 1e-5
    gen = torch.Generator().manual_seed(0)
    big = {"w": torch.zeros(1000, 500)}
    noisy = privacy.clip_and_noise(big, 2.0, 1.5, expected_batch_size=1000, generator=gen)
    assert abs(float(noisy["w"].std()) - 1.5 * 2.0 / 1000) < 1e-4
    with pytest.raises(ValueError, match="max_grad_norm"):
        privacy.clip_and_noise(g, 0.0, 1.0)


def test_per_sample_grads_equal_single_example_backward():
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 2)
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 1])
    g = privacy.per_sample_grads(m, F.cross_entropy, x, y)
    for i in range(3):
        m.zero_grad()
        F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(g["weight"][i], m.weight.grad)


def test_roc_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 300).round(1), rng.normal(0, 1, 200).round(1)  # rounding makes ties
    _, _, auc = privacy.roc_auc(pos, neg)
    want = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[pos, neg])
    assert abs(auc - want) < 1e-12
    assert privacy.loss_threshold_attack([0.1, 0.2], [0.3, 0.4])[2] == 1.0


def test_exposure_and_canary_logprobs():
    assert privacy.exposure(np.array([-3.0, -1.0, -2.0, -4.0]), 1) == (1, 2.0)
    assert privacy.exposure(np.array([-3.0, -1.0, -2.0, -4.0]), 3) == (4, 0.0)
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16))
    digits, prefix = list(range(10)), [10, 11, 10]
    lp = privacy.digit_canary_logprobs(m, prefix, digits, 2, batch_size=3)
    assert lp.shape == (100,)
    # Candidate 47 scored directly: log p(4 | prefix) + log p(7 | prefix, 4).
    with torch.no_grad():
        logp = F.log_softmax(m(torch.tensor([prefix + [4, 7]]))[0], -1)[0]
    assert abs(lp[47] - float(logp[2, 4] + logp[3, 7])) < 1e-5
    assert np.logaddexp.reduce(lp) < 0  # digits share the probability with the other tokens


def test_position_batched_gpt_equals_gpt():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)
    a = GPT(cfg)
    b = privacy.PositionBatchedGPT(cfg)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 11, (3, 8))
    torch.testing.assert_close(a(x)[0], b(x)[0])


def test_checksums():
    assert privacy.luhn_valid("4111 1111 1111 1111") and privacy.luhn_valid("378282246310005")
    assert not privacy.luhn_valid("4111111111111112") and not privacy.luhn_valid("1234")
    assert privacy.cn_id_valid("11010519491231002X") and privacy.cn_id_valid("11010519491231002x")
    assert not privacy.cn_id_valid("110105194912310021") and not privacy.cn_id_valid("11010519491331002X")


def test_find_pii_and_redact():
    t = "Dear Dr. Mary Smith, call 138 0013 8000 or (415)555-2671, card 4111111111111111, id 11010519491231002X."
    found = {(s.type, s.text) for s in privacy.find_pii(t)}
    assert found == {("NAME", "Dr. Mary Smith"), ("PHONE", "138 0013 8000"), ("PHONE", "(415)555-2671"),
                     ("CARD", "4111111111111111"), ("ID", "11010519491231002X")}
    assert privacy.find_pii("tracking 4111111111111112") == []  # fails Luhn: not a card
    zh = "客户王小明用卡付款，联系人李娜。"
    assert [s.text for s in privacy.find_pii(zh)] == ["王小明", "李娜"]
    assert privacy.redact("mail me: a.b@example.org") == "mail me: [EMAIL]"
    g = [[privacy.PiiSpan(0, 3, "NAME")]]
    s = privacy.span_scores(g, [[privacy.PiiSpan(0, 3, "NAME"), privacy.PiiSpan(5, 9, "EMAIL")]])
    assert s["ALL"]["recall"] == 1.0 and s["ALL"]["precision"] == 0.5


def test_encrypted_linear_matches_plaintext():
    ts = pytest.importorskip("tenseal")
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=16), rng.normal(size=(3, 16)), rng.normal(size=3)
    ctx = privacy.ckks_context()
    out = [c.decrypt()[0] for c in privacy.encrypted_linear(ts.ckks_vector(ctx, x.tolist()), w, b)]
    np.testing.assert_allclose(out, w @ x + b, atol=1e-3)
    with pytest.raises(ValueError, match="weight"):
        privacy.encrypted_linear(ts.ckks_vector(ctx, x.tolist()), w[:, :5], b)


def test_normalize_and_attack():
    assert privacy.normalize_text("ｂａｄ\u200b 书") == "bad书"

    def proba(texts):  # a "model" that is sure of class 1 unless it sees a space
        p = np.array([0.2 if " " in t else 0.9 for t in texts])
        return np.c_[1 - p, p]

    adv, flipped, n = privacy.greedy_char_attack(proba, "good", 1, max_edits=3)
    assert flipped and n == 1 and " " in adv
    _, flipped, _ = privacy.greedy_char_attack(lambda ts_: proba([privacy.normalize_text(t) for t in ts_]), "good", 1, 3)
    assert not flipped


def test_heldout_edits_are_not_undone_by_the_defence():
    text = "质量很好ok"
    seen, held = privacy.char_edits(text), privacy.heldout_char_edits(text)
    # 5 gaps x (zero-width, space) + 2 full-width letters; 5 gaps x (direction mark, middle dot)
    assert len(seen) == 12 and len(held) == 10
    assert all(privacy.normalize_text(t) == text for t in seen)      # the defence undoes every seen edit ...
    assert not any(privacy.normalize_text(t) == text for t in held)  # ... and none of the held-out ones
    assert "质\u200e量很好ok" in held and "质·量很好ok" in held

    def proba(texts):  # class 1 unless the bigram "ol" is broken, as any inserted character breaks it
        p = np.array([0.9 if "ol" in t else 0.2 for t in texts])
        return np.c_[1 - p, p]

    defended = lambda ts_: proba([privacy.normalize_text(t) for t in ts_])  # noqa: E731
    assert not privacy.greedy_char_attack(defended, "gold", 1, 2, edits=privacy.char_edits)[1]
    _, flipped, n = privacy.greedy_char_attack(defended, "gold", 1, 2, edits=privacy.heldout_char_edits)
    assert flipped and n == 1


def test_manifest_and_encryption(tmp_path):
    from cryptography.fernet import Fernet, InvalidToken

    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 100)
    privacy.write_manifest([f], tmp_path / "M.json")
    assert privacy.verify_manifest(tmp_path / "M.json") == {"w.bin": True}
    f.write_bytes(b"weightz" * 100)
    assert privacy.verify_manifest(tmp_path / "M.json") == {"w.bin": False}
    key = Fernet.generate_key()
    enc = privacy.encrypt_file(f, key)
    assert privacy.decrypt_file(enc, key) == f.read_bytes()
    with pytest.raises(InvalidToken):
        privacy.decrypt_file(enc, Fernet.generate_key())


def test_model_api_refuses():
    clock = [0.0]
    api = privacy.ModelAPI(lambda t: np.tile([0.123, 0.877], (len(t), 1)), keys={"u": "user", "a": "admin"},
                           max_requests=3, window_s=10, decimals=1, clock=lambda: clock[0])
    np.testing.assert_allclose(api.predict("u", ["x", "y"]), [[0.1, 0.9], [0.1, 0.9]])
    with pytest.raises(privacy.AccessDenied):
        api.predict("nobody", ["x"])
    with pytest.raises(privacy.AccessDenied):
        api.audit("u")
    with pytest.raises(privacy.RateLimited):
        api.predict("u", ["x", "y"])
    clock[0] = 11
    assert api.predict("u", ["x", "y", "z"]).shape == (3, 2)
    log = api.audit("a")
    assert [r["ok"] for r in log] == [True, False, False, False, True, True][:len(log) - 1] + [True]
    with pytest.raises(ValueError, match="roles"):
        privacy.ModelAPI(lambda t: t, keys={"k": "root"})
