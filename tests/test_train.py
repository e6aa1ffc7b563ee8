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
