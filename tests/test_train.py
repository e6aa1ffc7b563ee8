import math

import numpy as np
import pytest
import torch

from labkit import assets, builds, train
from labkit.models import GPT, GPTConfig


@pytest.fixture
def blocks(tmp_path):
    rng = np.random.default_rng(0)
    return train.TokenBlocks.from_ids(rng.integers(0, 50, 5000), tmp_path / "ids.bin")


def test_token_blocks_are_memory_mapped_and_shifted(blocks, tmp_path):
    assert isinstance(blocks.ids, np.memmap) and blocks.ids.dtype == np.uint16 and len(blocks) == 5000
    x, y = blocks.batch(8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = blocks.batch(8, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # the generator alone decides the batch
    seq = list(blocks.sequential(100))
    assert len(seq) == 49 and torch.equal(seq[1][0][0], torch.from_numpy(blocks.ids[100:200].astype(np.int64)))
    big = train.TokenBlocks.from_ids([0, 70000, 5], tmp_path / "big.bin")
    assert big.ids.dtype == np.uint32 and big.ids.tolist() == [0, 70000, 5]
    with pytest.raises(ValueError, match="cannot fill a block"):
        big.batch(1, 8, torch.Generator())


def test_lr_schedule_warmup_cosine():
    assert train.lr_at(0.0, 1.0, warmup=0.1) == 0.0
    assert train.lr_at(0.05, 1.0, warmup=0.1) == pytest.approx(0.5)
    assert train.lr_at(0.1, 1.0, warmup=0.1) == pytest.approx(1.0)
    assert train.lr_at(0.55, 1.0, warmup=0.1, min_lr_ratio=0.0) == pytest.approx(0.5)
    assert train.lr_at(1.0, 1.0, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert train.lr_at(2.0, 1.0, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_mask_tokens_follows_bert_80_10_10():
    ids = torch.randint(5, 1000, (500, 200), generator=torch.Generator().manual_seed(0))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    inputs, labels = train.mask_tokens(ids, 4, 1000, special, torch.Generator().manual_seed(1))
    t = labels != -100
    assert t.float().mean().item() == pytest.approx(0.15 * 199 / 200, abs=0.003)
    assert not (t & special).any() and torch.equal(labels[t], ids[t])
    assert (inputs[t] == 4).float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert (inputs[t] == ids[t]).float().mean().item() == pytest.approx(0.1 + 0.1 / 1000, abs=0.01)
    assert torch.equal(inputs[~t], ids[~t])


def _tiny():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
    return m, m.configure_optimizer(weight_decay=0.1, lr=3e-3)


def test_checkpoint_resume_is_exact(blocks, tmp_path):
    cfg = train.TrainConfig(batch_size=4, block_size=16, lr=3e-3, max_steps=12, eval_every=0)
    m, o = _tiny()
    g = torch.Generator().manual_seed(0)
    h = train.train_lm(m, o, blocks, None, cfg, generator=g, stop_at=6, progress=False)
    train.save_checkpoint(tmp_path / "c.pt", m, o, 6, g, cfg, h)
    h = train.train_lm(m, o, blocks, None, cfg, generator=g, start_step=6, history=h, progress=False)
    m2, o2 = _tiny()
    torch.manual_seed(99)
    g2 = torch.Generator()
    step, h2 = train.load_checkpoint(tmp_path / "c.pt", m2, o2, g2)
    h2 = train.train_lm(m2, o2, blocks, None, cfg, generator=g2, start_step=step, history=h2, progress=False)
    assert step == 6 and len(h2.train_loss) == 12
    assert h2.train_loss == h.train_loss  # bit for bit
    assert h.train_loss[-1] < h.train_loss[0]


def test_full_loss_is_the_mean_token_cross_entropy(blocks):
    m, _ = _tiny()
    loss = train.full_loss(m, blocks, 16, max_tokens=16 * 10 + 1, batch_size=3)
    ids = torch.from_numpy(blocks.ids[:161].astype(np.int64))
    x, y = ids[:-1].view(10, 16), ids[1:].view(10, 16)
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(m(x)[0].reshape(-1, 50), y.reshape(-1)).item()
    assert loss == pytest.approx(ref, rel=1e-5)
    assert loss == pytest.approx(math.log(50), rel=0.1)  # untrained: close to uniform


def test_budget_stops_on_time(blocks):
    m, o = _tiny()
    cfg = train.TrainConfig(batch_size=4, block_size=16, budget_s=0.5, eval_every=0)
    h = train.train_lm(m, o, blocks, None, cfg, progress=False)
    assert h.seconds >= 0.5 and h.tokens == len(h.step) * 64  # stops at the first step past the budget
    assert h.lr[0] < 0.5 * cfg.lr  # the schedule starts in its warm-up


def test_char_tokenizer_is_character_level_and_nfkc():
    tok = train.char_tokenizer(["我爱北京天安门", "北京１２月"], min_count=1)
    assert tok.tokenize("北京12月") == ["北", "京", "1", "2", "月"]
    ids = tok("北京")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and len(ids) == 4
    assert tok.convert_ids_to_tokens(tok("猫")["input_ids"])[1] == "[UNK]"


def test_mlm_training_learns_a_tiny_language():
    from transformers import BertConfig, BertForMaskedLM

    tok = train.char_tokenizer(["甲乙丙丁戊己庚辛"], min_count=1)
    enc = [tok("甲乙丙丁戊己庚辛")["input_ids"]] * 64
    torch.manual_seed(0)
    m = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=16))
    before = train.mlm_accuracy(m, tok, enc)
    losses = train.train_mlm(m, tok, enc, steps=150, batch_size=16, lr=3e-3, progress=False)
    assert losses[-1] < losses[0] and train.mlm_accuracy(m, tok, enc) > max(0.9, before)


def test_built_asset_paths_depend_on_the_recipe_settings():
    assert builds.built_path("zh-char-bert").name == "zh-char-bert-steps1000"
    assert builds.built_path("zh-char-bert", steps=30).name == "zh-char-bert-steps30"
    with pytest.raises(assets.AssetError, match="built models: zh-char-bert"):
        builds.built_path("en-bert")


# --- fit: the one training loop -------------------------------------------------------------------

def _zero_loss(m, batch):
    return sum((p * 0).sum() for p in m.parameters())  # zero gradients: only weight decay moves weights


def test_fit_decays_matrices_only():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    before = [p.detach().clone() for p in m.parameters()]
    train.fit(m, iter([None]), _zero_loss, steps=1, lr=0.5, weight_decay=0.1, warmup=0.0, device="cpu",
              progress=False)
    for p, p0 in zip(m.parameters(), before):  # AdamW with a zero gradient: p <- p (1 - lr wd) if decayed
        expected = p0 * (1 - 0.5 * 0.1) if p.dim() >= 2 else p0
        assert torch.equal(p.detach(), expected), p.shape


def test_fit_follows_lr_at_and_stops_on_request():
    m = torch.nn.Linear(2, 1)
    seen = []
    opt = torch.optim.SGD(m.parameters(), lr=1.0)

    def hook(step, h):
        seen.append(opt.param_groups[0]["lr"])  # the rate the update just used
        return step == 7

    h = train.fit(m, iter(lambda: None, 0), _zero_loss, steps=10, lr=0.3, warmup=0.2, min_lr_ratio=0.1,
                  optimizer=opt, device="cpu", progress=False, on_step=hook)
    expected = [train.lr_at(s / 10, 0.3, 0.2, 0.1) for s in range(7)]
    assert h.lr == seen == expected and h.step == list(range(1, 8))
    assert not m.training  # fit leaves the model ready to evaluate


def test_fit_clips_the_gradient_norm():
    m = torch.nn.Linear(4, 1, bias=False)
    w0 = m.weight.detach().clone()
    # SGD at a constant rate 1: the update is minus the clipped gradient (here 1000 * ones, norm 2000).
    train.fit(m, iter([None]), lambda m, b: 1000 * m.weight.sum(), steps=1, warmup=0.0, min_lr_ratio=1.0, lr=1.0,
              clip=0.5, optimizer=torch.optim.SGD(m.parameters(), lr=1.0), device="cpu", progress=False)
    step = w0 - m.weight.detach()
    assert float(step.norm()) == pytest.approx(0.5, rel=1e-6)
    assert torch.allclose(step, torch.full_like(step, 0.25))  # same direction, only shorter


def test_fit_accumulating_micro_batches_equals_one_big_batch():
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.randn(8, 1)
    loss = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])  # noqa: E731
    runs = []
    for accum, batches in [(1, [(x, y)]), (4, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])]:
        torch.manual_seed(0)
        m = torch.nn.Linear(3, 1)
        h = train.fit(m, iter(batches), loss, steps=1, grad_accum=accum, lr=0.1, warmup=0.0, clip=None,
                      optimizer=torch.optim.SGD(m.parameters(), lr=0.1), device="cpu", progress=False)
        runs.append((h.train_loss[0], torch.cat([p.detach().flatten() for p in m.parameters()])))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)  # the mean of equal-sized micro-batch means
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=1e-6, atol=1e-7)


def test_fit_runs_on_the_runtime_device(monkeypatch):
    from labkit import runtime

    asked = []
    monkeypatch.setattr(runtime, "device", lambda: asked.append(1) or runtime.resolve_device(None))
    dev = torch.device(runtime.resolve_device(None))
    m = torch.nn.Linear(2, 2)
    places = []

    def loss(model, batch):
        places.append((batch["x"].device.type, next(model.parameters()).device.type))
        return model(batch["x"]).pow(2).mean()

    train.fit(m, iter([{"x": torch.randn(4, 2)}] * 2), loss, steps=2, progress=False)
    assert asked and places == [(dev.type, dev.type)] * 2
    # Mixed precision: runtime.autocast's rule by default (none on the CPU), bf16 on the CPU when asked
    # (as chapter 06 measures it), never with False.
    dtypes = []
    for flag in (None, True, False):
        train.fit(torch.nn.Linear(2, 2), iter([torch.randn(4, 2)]), lambda m, x: dtypes.append(m(x).dtype) or m(x).sum(),
                  steps=1, device="cpu", mixed_precision=flag, progress=False)
    assert dtypes == [torch.float32, torch.bfloat16, torch.float32]


def test_fit_checks_its_inputs():
    m = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="steps >= 1 or budget_s"):
        train.fit(m, [], _zero_loss, progress=False)
    with pytest.raises(ValueError, match="batches ran out at step 2"):
        train.fit(m, [None, None], _zero_loss, steps=3, device="cpu", progress=False)


def test_train_lm_equals_the_loop_written_out(blocks):
    """train_lm (a user of fit) against nanoGPT's loop by hand: same losses, bit for bit."""
    cfg = train.TrainConfig(batch_size=4, block_size=16, lr=3e-3, max_steps=5, grad_accum=2, warmup=0.2)
    m, o = _tiny()
    h = train.train_lm(m, o, blocks, None, cfg, generator=torch.Generator().manual_seed(0), progress=False)
    m, o = _tiny()
    g, losses = torch.Generator().manual_seed(0), []
    for step in range(cfg.max_steps):
        for group in o.param_groups:
            group["lr"] = train.lr_at(step / cfg.max_steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        total = 0.0
        for _ in range(cfg.grad_accum):
            x, y = blocks.batch(cfg.batch_size, cfg.block_size, g)
            loss = m(x, y)[1]
            (loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        o.step()
        o.zero_grad(set_to_none=True)
        losses.append(total)
    assert h.train_loss == losses and h.tokens == 5 * 2 * 4 * 16
