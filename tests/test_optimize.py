"""labkit.optimize: every hand-written piece checked against a PyTorch reference, on values."""
import pytest
import torch
import torch.nn.utils.prune  # noqa: F401  (a submodule: not imported by `import torch`)
from torch import nn

from labkit import optimize as opt


def test_fake_quantize_matches_torch_per_tensor_and_per_channel():
    torch.manual_seed(0)
    x = torch.randn(16, 32)
    s, z = opt.quant_params(x, 8, symmetric=False)
    ref = torch.fake_quantize_per_tensor_affine(x, float(s), int(z), 0, 255)
    assert torch.allclose(opt.fake_quantize(x, 8, symmetric=False), ref, atol=1e-6)
    s, z = opt.quant_params(x, 8, symmetric=True, dim=0)
    ref = torch.fake_quantize_per_channel_affine(x, s, z.int(), 0, -127, 127)
    assert torch.allclose(opt.fake_quantize(x, 8, symmetric=True, dim=0), ref, atol=1e-6)
    # the error of round-to-nearest is at most half a step
    assert float((opt.fake_quantize(x, 8, True, 0) - x).abs().max()) <= float(s.max()) / 2 + 1e-6


def test_hand_int8_linear_close_to_torch_dynamic_quantized():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(8, 64)
    hand = opt.HandInt8Linear.from_float(lin)(x)
    ref = opt.dynamic_int8(nn.Sequential(lin))(x)
    exact = lin(x).detach()
    # both approximate the float layer to ~1%; they agree with each other more closely
    scale = float(exact.abs().max())
    assert float((hand - exact).abs().max()) < 0.02 * scale
    assert float((hand - ref).abs().max()) < 0.02 * scale


def test_weight_only_int8_and_int4_equal_dequantized_weights():
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    x = torch.randn(5, 128)
    q8 = opt.WeightOnlyInt8Linear.from_float(lin)
    w8 = opt.fake_quantize(lin.weight, 8, True, dim=0)
    assert torch.allclose(q8(x), x @ w8.T + lin.bias, atol=1e-4)
    q4 = opt.Int4Linear.from_float(lin, group_size=64)
    q, scale, lo = opt.Int4Linear.quantize_groups(lin.weight, 64)
    w4 = (q.float().reshape(64, 2, 64) * scale[..., None] + lo[..., None]).reshape(64, 128)
    assert torch.allclose(q4(x), x @ w4.T + lin.bias, atol=1e-4)
    assert opt.size_on_disk_mb(q4) < opt.size_on_disk_mb(q8) < opt.size_on_disk_mb(lin)


def test_local_magnitude_pruning_equals_torch_prune():
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(20, 30)), nn.Sequential(nn.Linear(20, 30))
    b.load_state_dict(a.state_dict())
    opt.prune_magnitude_(a, 0.4, scope="local", skip=())
    torch.nn.utils.prune.l1_unstructured(b[0], "weight", amount=0.4)
    assert torch.equal(a[0].weight, b[0].weight)
    assert opt.weight_sparsity(a, skip=()) == pytest.approx(0.4)


def test_global_pruning_hits_target_and_spares_big_weights():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(50, 50), nn.Linear(50, 50))
    with torch.no_grad():
        m[1].weight.mul_(10)  # the second layer's weights are all larger
    s = opt.prune_magnitude_(m, 0.5, scope="global", skip=())
    assert s == pytest.approx(0.5, abs=1e-3)
    # only the second layer's weights below the first layer's largest survive-threshold go (~10%)
    assert opt.weight_sparsity(nn.Sequential(m[1]), skip=()) < 0.15
    assert opt.weight_sparsity(nn.Sequential(m[0]), skip=()) > 0.85


def test_svd_linear_full_rank_exact_and_error_is_tail_of_spectrum():
    torch.manual_seed(0)
    lin = nn.Linear(48, 32)
    x = torch.randn(4, 48)
    assert torch.allclose(opt.svd_linear(lin, 32)(x), lin(x), atol=1e-5)
    f = opt.svd_linear(lin, 8)
    w_r = f[1].weight @ f[0].weight
    s = torch.linalg.svdvals(lin.weight.detach())
    # Eckart-Young: the Frobenius error of the best rank-r approximation is the norm of the dropped spectrum
    assert float(torch.linalg.norm(lin.weight - w_r).detach()) == pytest.approx(float(s[8:].norm()), rel=1e-4)


def test_distillation_loss_formula():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 3), torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    T, a = 3.0, 0.7
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, -1))).sum(-1).mean()
    ref = a * T * T * kl + (1 - a) * nn.functional.cross_entropy(s, y)
    assert float(opt.distillation_loss(s, t, y, T, a)) == pytest.approx(float(ref), rel=1e-5)
    # unlabelled rows (-1) get the soft term only; the hard term averages over the labelled rows
    y_part = torch.tensor([0, -1, 2, -1, 1, -1])
    known = y_part >= 0
    ref_part = a * T * T * kl + (1 - a) * nn.functional.cross_entropy(s[known], y_part[known])
    assert float(opt.distillation_loss(s, t, y_part, T, a)) == pytest.approx(float(ref_part), rel=1e-5)
    assert float(opt.distillation_loss(s, t, torch.full((6,), -1), T, a)) == pytest.approx(float(a * T * T * kl), rel=1e-5)


def test_pad_fraction_and_psi():
    assert opt.pad_fraction([{"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])}]) == 0.5
    assert opt.psi([0.1] * 50 + [0.9] * 50, [0.1] * 50 + [0.9] * 50) == pytest.approx(0.0)
    assert opt.psi([0.1] * 50 + [0.9] * 50, [0.5] * 100) > 0.25


def test_benchmark_and_monitor():
    r = opt.compare_latency({"small": lambda: torch.randn(10, 10) @ torch.randn(10, 10),
                             "big": lambda: torch.randn(300, 300) @ torch.randn(300, 300)}, repeats=5)
    assert r["small"].median_ms < r["big"].median_ms and r["big"].p90_ms >= r["big"].median_ms
    mon = opt.Monitor(lambda texts: [0.95] * len(texts), reference=[0.05] * 50 + [0.95] * 50, window=20)
    mon(["x"] * 40)
    assert len(mon.log) == 2 and all(w["alert"] == 1.0 for w in mon.log)


def test_bad_inputs_fail_clearly():
    with pytest.raises(opt.OptimizeError, match="sparsity"):
        opt.prune_magnitude_(nn.Linear(2, 2), 1.5)
    with pytest.raises(opt.OptimizeError, match="rank"):
        opt.svd_linear(nn.Linear(4, 4), 9)
    with pytest.raises(opt.OptimizeError, match="bits"):
        opt.weight_only(nn.Linear(4, 4), bits=3)
    with pytest.raises(opt.OptimizeError, match="BERT"):
        opt.prune_ffn_(nn.Linear(4, 4), 0.5)


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(cfg).eval()


@pytest.mark.slow  # imports transformers
def test_prune_ffn_keeping_all_neurons_is_exact_and_shrinks():
    m = _tiny_bert()
    ids = torch.randint(0, 50, (3, 10))
    ref = m(input_ids=ids).logits
    assert opt.prune_ffn_(m, 1.0) == 0
    assert torch.allclose(m(input_ids=ids).logits, ref, atol=1e-6)
    removed = opt.prune_ffn_(m, 0.5)
    assert removed == 2 * (32 * 32 + 32 + 32 * 32)  # per layer: half the up rows (+bias), half the down columns
    assert m.bert.encoder.layer[0].intermediate.dense.out_features == 32


@pytest.mark.slow
def test_data_parallel_equals_single_process(tmp_path):
    m = _tiny_bert()
    m.save_pretrained(tmp_path / "m")
    g = torch.Generator().manual_seed(0)
    data = {"input_ids": torch.randint(0, 50, (32, 8), generator=g),
            "attention_mask": torch.ones(32, 8, dtype=torch.long),
            "labels": torch.randint(0, 2, (32,), generator=g)}
    torch.save(data, tmp_path / "d.pt")
    job = opt.DPJob(str(tmp_path / "m"), str(tmp_path / "d.pt"), steps=2, global_batch=16, lr=1e-2)
    ref = opt.train_reference(job)
    # the tolerance is float32 rounding's own effect on one process: its distance from a float64 run
    fp32_error = opt.max_abs_diff(ref, opt.train_reference(opt.DPJob(**{**job.__dict__, "dtype": "float64"})))
    assert 0 < fp32_error < 1e-4
    out = opt.run_data_parallel(job, world=2, mode="ddp")
    assert opt.max_abs_diff(ref, out["state"]) <= 2 * fp32_error
    # a wrong split (every rank on the same rows) is caught far above that tolerance
    assert opt.max_abs_diff(ref, opt.train_reference(opt.DPJob(**{**job.__dict__, "global_batch": 8}))) > 10 * fp32_error


def test_int8_instructions_read_from_cpu_flags():
    avx2 = opt.int8_instructions("processor : 0\nflags : fpu sse4_2 avx avx2 fma\n")
    assert (avx2["vnni"], avx2["amx_int8"], avx2["fast_int8"], avx2["int8_flags"]) == (False, False, False, [])
    sapphire = opt.int8_instructions("flags : avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16\n")
    assert sapphire["vnni"] and sapphire["amx_int8"] and sapphire["int8_flags"] == ["avx512_vnni", "amx_int8"]
    arm = opt.int8_instructions("processor : 0\nFeatures : fp asimd asimddp i8mm\n")
    assert (arm["vnni"], arm["fast_int8"], arm["int8_flags"]) == (False, True, ["asimddp", "i8mm"])
    assert isinstance(avx2["capability"], str)


def test_choose_backend_falls_back_to_gloo_without_gpus(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    backend, world, note = opt.choose_backend("nccl", 0)  # the gpu profile's settings on a CPU machine
    assert (backend, world) == ("gloo", 2) and "falling back to gloo" in note
    assert opt.choose_backend("nccl", 3)[:2] == ("gloo", 3)
    assert opt.choose_backend("gloo", 0)[:2] == ("gloo", 2)
    assert opt.choose_backend("gloo", 2) == ("gloo", 2, "")
    with pytest.raises(opt.OptimizeError, match="backend"):
        opt.choose_backend("mpi", 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    assert opt.choose_backend("nccl", 0) == ("nccl", 2, "")  # one process per visible GPU
    with pytest.raises(opt.OptimizeError, match="one GPU per process"):
        opt.choose_backend("nccl", 4)


class _WordTokenizer:
    """Just enough of a tokenizer for train_student: words hashed into a 50-token vocabulary."""

    def __call__(self, texts, max_length=8, **_):
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, t in enumerate(texts):
            words = t.split()[:max_length]
            ids[r, :len(words)] = torch.tensor([1 + sum(map(ord, w)) % 49 for w in words])
            mask[r, :len(words)] = 1
        return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.slow  # imports transformers
def test_train_student_scores_every_epoch_without_changing_the_training():
    texts = [f"{a} film {b}" for a in ("good", "bad", "fine", "dull") for b in ("indeed", "really", "truly", "")]
    labels = [i // 8 for i in range(len(texts))]
    seen = []
    plain = opt.train_student(_tiny_bert(), _WordTokenizer(), texts, labels, epochs=3, batch_size=5, max_length=8,
                              progress=False)
    scored = opt.train_student(_tiny_bert(), _WordTokenizer(), texts, labels, epochs=3, batch_size=5, max_length=8,
                               progress=False, on_epoch=lambda e, m: seen.append((e, m.training)))
    assert seen == [(1, False), (2, False), (3, False)]  # once per epoch, in eval mode
    assert scored == plain  # scoring on validation does not disturb the training run
