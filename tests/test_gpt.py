"""The book's GPT against Hugging Face's GPT2LMHeadModel on the same weights (as minGPT's test does)."""
import math

import pytest
import torch

from labkit.gpt import GPT, GPTConfig, from_hf, to_hf
from labkit.models import GPT as GPTFromModels

CFG = dict(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=64)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**CFG)).eval()
    # GPT-2's init gives almost uniform logits; wider weights make greedy choices clear-cut.
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.15)
    return m


def test_exported_from_models():
    assert GPTFromModels is GPT


def test_logits_and_loss_equal_hugging_face(model):
    hf = to_hf(model)
    idx = torch.randint(0, CFG["vocab_size"], (3, 20))
    targets = torch.cat([idx[:, 1:], torch.full((3, 1), -1)], 1)  # HF shifts labels inside; we shift here
    logits, loss = model(idx, targets)
    out = hf(idx, labels=idx)
    assert (logits - out.logits).abs().max() <= 1e-4
    assert abs(loss.item() - out.loss.item()) <= 1e-5


def test_greedy_generation_equals_hugging_face(model):
    hf = to_hf(model)
    prompt = torch.randint(0, CFG["vocab_size"], (4, 3))
    prompt[:, 0] = 0  # token 0 must not be mistaken for padding by generate()
    ours = model.generate(prompt, 20, temperature=0)
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False)
    assert torch.equal(ours, theirs)


def test_round_trip_through_hugging_face_is_exact(model):
    back = from_hf(to_hf(model))
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert back.lm_head.weight is back.transformer.wte.weight


def test_no_bias_model_maps_to_zero_biases():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**CFG, bias=False)).eval()
    hf = to_hf(m)
    assert hf.transformer.h[0].attn.c_attn.bias.abs().max() == 0
    idx = torch.randint(0, CFG["vocab_size"], (2, 10))
    assert (m(idx)[0] - hf(idx).logits).abs().max() <= 1e-4


def test_sdpa_and_formula_paths_agree(model):
    manual = GPT(GPTConfig(**CFG, use_sdpa=False)).eval()
    manual.load_state_dict(model.state_dict())
    idx = torch.randint(0, CFG["vocab_size"], (2, 32))
    assert (manual(idx)[0] - model(idx)[0]).abs().max() <= 1e-5
    maps = model.attention_maps(idx)
    assert maps.shape == (2, 2, 4, 32, 32)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 4, 32), atol=1e-5)
    assert maps.triu(1).abs().max() == 0  # causal


def test_gpt2_initialisation():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=256))
    assert abs(m.transformer.wte.weight.std().item() - 0.02) < 0.002
    assert abs(m.transformer.h[0].mlp.c_proj.weight.std().item() - 0.02 / math.sqrt(8)) < 0.001
    assert m.transformer.h[0].attn.c_attn.bias.abs().max() == 0
    assert m.num_params() == sum(p.numel() for p in m.parameters())
    assert m.num_params(non_embedding=True) == m.num_params() - 64 * 256


def test_initial_loss_is_log_vocab():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=100, block_size=16, n_layer=2, n_head=2, n_embd=32))
    idx, targets = torch.randint(0, 100, (2, 8, 16))
    _, loss = m(idx, targets)  # (not idx itself: the tied head makes the input token a little likelier)
    assert abs(loss.item() - math.log(100)) < 0.1


def test_configure_optimizer_groups():
    m = GPT(GPTConfig(**CFG))
    opt = m.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.9, 0.95)


def test_generate_top_k_and_cropping(model):
    g = torch.Generator().manual_seed(0)
    prompt = torch.zeros(1, 30, dtype=torch.long)
    out = model.generate(prompt, 10, temperature=1.0, top_k=1, generator=g)  # longer than block_size: cropped
    assert out.shape == (1, 40)
    # top_k=1 is greedy
    assert torch.equal(out, model.generate(prompt, 10, temperature=0))


def test_training_step_reduces_loss():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=32))
    opt = m.configure_optimizer(0.0, 3e-3)
    idx = torch.arange(16).remainder(11)[None].repeat(4, 1)
    first = None
    for _ in range(30):
        _, loss = m(idx, torch.roll(idx, -1, 1))
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 3


def test_validation_messages():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    m = GPT(GPTConfig(**CFG))
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        m.generate(torch.zeros(1, 1, dtype=torch.long), 1, temperature=-1)
