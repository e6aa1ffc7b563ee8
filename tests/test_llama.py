"""labkit.llama: the from-scratch Llama equals transformers' LlamaForCausalLM, piece by piece and whole."""
import pytest
import torch
from transformers import LlamaConfig as HFConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

from labkit import llama

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_hf():
    cfg = HFConfig(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
                   num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def test_config_reads_hf_dict(tiny_hf):
    cfg = llama.LlamaConfig.from_hf_dict(tiny_hf.config.to_dict())
    assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (2, 6, 2, 8)
    assert cfg.rope_theta == 10000.0 and cfg.tie_word_embeddings
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        llama.LlamaConfig(num_heads=4, num_kv_heads=3)


def test_rmsnorm_equals_transformers():
    torch.manual_seed(1)
    x = torch.randn(3, 5, 16)
    ours, ref = llama.RMSNorm(16, 1e-5), LlamaRMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_rope_equals_transformers(tiny_hf):
    torch.manual_seed(2)
    q, k = torch.randn(1, 6, 7, 8), torch.randn(1, 2, 7, 8)   # HF layout (B, heads, T, D)
    pos = torch.arange(3, 10)[None]
    cos, sin = LlamaRotaryEmbedding(tiny_hf.config)(q, pos)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    c, s = llama.rope_cos_sin(pos, 8, 10000.0)
    q_ours = llama.apply_rope(q.transpose(1, 2), c, s).transpose(1, 2)
    k_ours = llama.apply_rope(k.transpose(1, 2), c, s).transpose(1, 2)
    assert torch.allclose(q_ours, q_ref, atol=1e-6) and torch.allclose(k_ours, k_ref, atol=1e-6)


def test_gqa_attention_equals_sdpa():
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 5, 6, 8), torch.randn(2, 5, 2, 8), torch.randn(2, 5, 2, 8)
    ours = llama.attention(q, k, v, llama.causal_mask(5))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(3, 2).transpose(1, 2), v.repeat_interleave(3, 2).transpose(1, 2),
        is_causal=True).transpose(1, 2)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_logits_equal_transformers(tiny_hf):
    model = llama.from_hf(tiny_hf)
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        diff = (model(ids) - tiny_hf(ids).logits).abs().max().item()
    assert diff < 1e-5
    # Only the selected positions come out, with the same values.
    with torch.no_grad():
        sel = model(ids, select=torch.tensor([10]))
    assert sel.shape == (2, 1, 300) and torch.allclose(sel[:, 0], model(ids)[:, -1], atol=1e-6)


def test_tied_head_shares_embedding(tiny_hf):
    model = llama.from_hf(tiny_hf)
    assert model.lm_head.weight.data_ptr() == model.embed_tokens.weight.data_ptr()


def test_load_rejects_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1,'
                                          ' "vocab_size": 10, "intermediate_size": 16, "num_hidden_layers": 1}')
    with pytest.raises(FileNotFoundError, match="safetensors"):
        llama.load(tmp_path)


@pytest.mark.slow
def test_smollm2_logits_equal_transformers():
    from transformers import AutoModelForCausalLM

    from labkit import assets

    model, tok = llama.load("smollm2-135m-instruct", device="cpu")
    assert (model.cfg.num_heads, model.cfg.num_kv_heads, model.cfg.num_layers) == (9, 3, 30)
    hf = AutoModelForCausalLM.from_pretrained(assets.path("smollm2-135m-instruct"), dtype=torch.float32).eval()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        ours, ref = model(ids), hf(ids).logits
    assert (ours - ref).abs().max().item() < 1e-3
    assert ours[0, -1].argmax() == ref[0, -1].argmax()
