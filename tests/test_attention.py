"""labkit.attention against its peers: torch's SDPA, nn.MultiheadAttention, nn.Transformer*Layer, HF RoPE."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import attention as A

TOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def qkv(b=2, h=3, n=7, d=16, m=None):
    m = n if m is None else m
    return torch.randn(b, h, n, d), torch.randn(b, h, m, d), torch.randn(b, h, m, d)


@pytest.mark.parametrize("case", ["none", "causal", "padding", "padding+causal", "float", "cross"])
def test_sdpa_equals_torch(case):
    q, k, v = qkv(m=5 if case == "cross" else None)
    pad = A.padding_mask(torch.tensor([[1] * 7, [1] * 4 + [0] * 3]))
    kw = {"none": {}, "causal": {"is_causal": True}, "padding": {"mask": pad},
          "padding+causal": {"mask": pad & A.causal_mask(7)}, "float": {"mask": torch.randn(7, 7)},
          "cross": {}}[case]
    ours = A.scaled_dot_product_attention(q, k, v, **kw)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=kw.get("mask"), is_causal=kw.get("is_causal", False))
    assert (ours - ref).abs().max() <= TOL


def test_attention_weights_are_distributions_and_respect_masks():
    q, k, v = qkv()
    _, w = A.scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-6)
    assert (w.masked_select(~A.causal_mask(7)) == 0).all()  # exact zeros above the diagonal
    _, w = A.scaled_dot_product_attention(q, k, v, mask=A.padding_mask(torch.tensor([[1] * 7, [1] * 3 + [0] * 4])),
                                          return_weights=True)
    assert (w[1, ..., 3:] == 0).all()


def test_padding_does_not_change_real_tokens():
    mha = A.MultiHeadAttention(16, 4).eval()
    x = torch.randn(1, 4, 16)
    padded = torch.cat([x, torch.randn(1, 3, 16)], 1)
    mask = A.padding_mask(torch.tensor([[1] * 4 + [0] * 3]))
    alone, _ = mha(x, is_causal=True)
    batch, _ = mha(padded, mask=mask, is_causal=True)
    assert (alone - batch[:, :4]).abs().max() <= TOL


def test_masks():
    assert A.causal_mask(3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert A.sliding_window_mask(5, 2)[4].int().tolist() == [0, 0, 0, 1, 1]
    assert A.sliding_window_mask(5, 2, causal=False)[2].int().tolist() == [0, 1, 1, 1, 0]
    assert torch.equal(A.sliding_window_mask(6, 6), A.causal_mask(6))
    with pytest.raises(ValueError, match="batch, length"):
        A.padding_mask(torch.ones(3))


def test_mha_equals_torch_self_and_cross_attention():
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ours = A.MultiHeadAttention.from_torch(ref).eval()
    x, mem = torch.randn(2, 7, 16), torch.randn(2, 5, 16)
    o_ref, w_ref = ref(x, x, x, attn_mask=~A.causal_mask(7), need_weights=True, average_attn_weights=False)
    o, w = ours(x, is_causal=True, need_weights=True)
    assert (o - o_ref).abs().max() <= TOL and (w - w_ref).abs().max() <= TOL
    o_fast, _ = ours(x, is_causal=True)  # the fused path gives the same numbers
    assert (o_fast - o_ref).abs().max() <= TOL
    kpm = torch.tensor([[0] * 5, [0] * 3 + [1] * 2]).bool()  # torch: True = ignore (the opposite convention)
    o_ref, _ = ref(x, mem, mem, key_padding_mask=kpm)
    o, _ = ours(x, mem, mem, mask=A.padding_mask((~kpm).long()))
    assert (o - o_ref).abs().max() <= TOL


def test_mha_validates_shapes():
    with pytest.raises(ValueError, match="divisible"):
        A.MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="d_model=8"):
        A.MultiHeadAttention(8, 2)(torch.randn(1, 3, 6))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_equals_torch(norm_first):
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True, norm_first=norm_first).eval()
    ours = A.EncoderBlock.from_torch(ref).eval()
    x = torch.randn(2, 7, 16)
    am = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    out_ref = ref(x, src_key_padding_mask=am == 0)
    out = ours(x, mask=A.padding_mask(am))
    assert (out - out_ref)[am.bool()].abs().max() <= TOL  # padded positions are garbage in both


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_equals_torch(norm_first):
    ref = nn.TransformerDecoderLayer(16, 4, 32, batch_first=True, norm_first=norm_first, activation="gelu").eval()
    ours = A.DecoderBlock.from_torch(ref).eval()
    y, mem = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    kpm = torch.tensor([[0] * 5, [0] * 3 + [1] * 2]).bool()
    out_ref = ref(y, mem, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6), tgt_is_causal=True,
                  memory_key_padding_mask=kpm)
    out, ws = ours(y, mem, memory_mask=A.padding_mask((~kpm).long()), need_weights=True)
    assert (out - out_ref).abs().max() <= TOL
    assert ws["cross"].shape == (2, 4, 6, 5) and (ws["cross"][1, ..., 3:] == 0).all()


def test_sinusoidal_values():
    pe = A.sinusoidal_encoding(50, 16)
    p, i = 7, 3
    assert math.isclose(pe[p, 2 * i].item(), math.sin(p / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(p / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    # PE(p).PE(p + k) = sum_i cos(k w_i): it depends on the distance k only
    dots = pe @ pe.T
    expected = sum(math.cos(3 / 10000 ** (2 * i / 16)) for i in range(8))
    assert abs(dots[10, 13] - expected) < 1e-4 and abs(dots[40, 43] - expected) < 1e-4


def test_learned_positions():
    emb = A.LearnedPositionalEmbedding(8, 4)
    assert torch.equal(emb(3), emb.weight[:3])
    with pytest.raises(ValueError, match="longer"):
        emb(9)


def test_rope_equals_hugging_face_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    q, k, _ = qkv(d=16, n=9)
    hf_rope = LlamaRotaryEmbedding(LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=64))
    cos, sin = hf_rope(q, torch.arange(9)[None])
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    c, s = A.RotaryEmbedding(16)(9)
    assert (A.apply_rotary(q, c, s) - q_ref).abs().max() <= TOL
    assert (A.apply_rotary(k, c, s) - k_ref).abs().max() <= TOL


def test_rope_scores_depend_on_relative_position_only():
    rope = A.RotaryEmbedding(32)
    q, k = torch.randn(32), torch.randn(32)
    c, s = rope(200)

    def score(m, n):
        return (A.apply_rotary(q, c[m], s[m]) @ A.apply_rotary(k, c[n], s[n])).item()

    for m, n, shift in [(5, 2, 100), (0, 9, 37), (50, 50, 149)]:
        assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-4
    assert torch.allclose(A.apply_rotary(q, c[17], s[17]).norm(), q.norm(), atol=1e-5)  # a rotation


def test_attention_cost_counts_the_formula():
    c = A.attention_cost(lambda q, k, v: A.scaled_dot_product_attention(q, k, v, is_causal=True), 128,
                         head_dim=32, n_heads=2, repeats=1)
    assert c["flops"] == 4 * 2 * 128 * 128 * 32  # two matrix products of 2*n*n*d each, per head
    assert c["allocated_bytes"] >= 2 * 128 * 128 * 4  # at least one n x n float matrix per head
    assert c["saved_bytes"] >= 2 * 128 * 128 * 4  # the softmax output is kept for backward
    fused = A.attention_cost(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), 128,
                             head_dim=32, n_heads=2, repeats=1)
    assert fused["saved_bytes"] < c["saved_bytes"]
