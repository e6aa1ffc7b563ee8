"""labkit.multimodal against its peers: F.unfold, nn.Conv2d, transformers' CLIPModel loss, hand-written metrics."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import multimodal as mm


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_patchify_equals_unfold_and_checks_sizes():
    x = torch.randn(3, 2, 8, 12)
    for p in (1, 2, 4):
        ref = F.unfold(x, p, stride=p).transpose(1, 2)
        assert torch.equal(mm.patchify(x, p), ref)
    with pytest.raises(ValueError, match="divide"):
        mm.patchify(x, 3)
    with pytest.raises(ValueError, match="batch, channels"):
        mm.patchify(torch.randn(8, 8), 2)


def test_patch_embedding_is_a_strided_convolution():
    pe = mm.PatchEmbedding(4, 3, 16)
    x = torch.randn(2, 3, 8, 8)
    conv = pe.to_conv()
    ref = conv(x).flatten(2).transpose(1, 2)  # (B, dim, 2, 2) -> (B, 4, dim)
    assert (pe(x) - ref).abs().max() <= 1e-5


def test_shift_augment_moves_pixels_and_keeps_mass_inside():
    x = torch.zeros(50, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0  # a blob away from the border: a 1-pixel shift keeps it whole
    out = mm.shift_augment(x, 1, torch.Generator().manual_seed(0))
    assert torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))
    assert (out != x).any()
    assert torch.equal(mm.shift_augment(x, 0), x)


def test_encoders_shapes_and_parameter_counts():
    x = torch.rand(4, 1, 8, 8)
    cnn, vit = mm.SmallCNN(width=8, dim=32), mm.TinyViT(patch=4, dim=32, heads=2)
    assert cnn(x).shape == (4, 10) and cnn.embed(x).shape == (4, 32)
    assert cnn.feature_map(x).shape == (4, 16, 16)
    assert vit.tokens(x).shape == (4, 5, 32) and vit(x).shape == (4, 10)
    # patch embedding 16*32+32, [CLS] 32, positions 5*32: the parts a ViT adds to the blocks
    assert vit.patch_embed.proj.weight.numel() + vit.cls.numel() + vit.pos.numel() == 16 * 32 + 32 + 5 * 32


def test_captions_templates_are_disjoint_and_parsed():
    assert not set(mm.TRAIN_TEMPLATES) & set(mm.TEST_TEMPLATES)
    for t in mm.TRAIN_TEMPLATES + mm.TEST_TEMPLATES:
        for d in range(10):
            assert mm.digits_in(mm.caption(d, t)) == [d]
    assert mm.caption(8, "the number {num}") == "the number 8"
    assert mm.captions_for([1, 2], ["digit {num}"]) == ["digit 1", "digit 2"]
    with pytest.raises(ValueError):
        mm.caption(12, "digit {num}")


def test_word_vocab_roundtrip_and_unknown_words():
    v = mm.WordVocab(["the number 7", "a handwritten digit seven"])
    ids, mask = v.encode(["the number 7", "digit seven !"], bos=True, eos=True)
    assert ids[0, 0] == v.bos_id and ids[0, 4] == v.eos_id
    assert mask.tolist() == [[1] * 5, [1] * 5]
    assert v.decode(ids[0]) == "the number 7"
    assert v.decode(ids[1]) == "digit seven <unk>"
    ids, mask = v.encode(["seven", "the number 7"])
    assert mask[0].tolist() == [1, 0, 0] and ids[0, 1:].tolist() == [v.pad_id, v.pad_id]


def test_text_encoder_ignores_padding():
    enc = mm.TextEncoder(20, dim=16, heads=2).eval()
    ids = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0]])
    a = enc(ids, torch.ones(1, 3))
    b = enc(padded, torch.tensor([[1, 1, 1, 0, 0]]))
    assert (a - b).abs().max() <= 1e-5


def _clip_loss_by_hand(img, txt, log_scale):
    img, txt = F.normalize(img.double(), dim=-1), F.normalize(txt.double(), dim=-1)
    s = math.exp(log_scale) * img @ txt.T
    b = len(s)
    i2t = -sum(s[i, i] - torch.logsumexp(s[i], 0) for i in range(b)) / b
    t2i = -sum(s[j, j] - torch.logsumexp(s[:, j], 0) for j in range(b)) / b
    return float((i2t + t2i) / 2)


def test_clip_loss_equals_cross_entropy_by_hand():
    img, txt = torch.randn(7, 5), torch.randn(7, 5)
    for log_scale in (0.0, math.log(1 / 0.07), math.log(100)):
        ours = mm.clip_loss(img, txt, torch.tensor(log_scale))
        assert abs(float(ours) - _clip_loss_by_hand(img, txt, log_scale)) <= 1e-5
    # perfectly aligned pairs at a high scale: the loss goes to 0
    e = torch.eye(5)
    assert float(mm.clip_loss(e, e, math.log(100))) < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        mm.clip_loss(torch.randn(3, 4), torch.randn(2, 4), 0.0)


def _tiny_clip(vocab_size=80):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=8, patch_size=2, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16)
    return CLIPModel(cfg).eval()


@pytest.mark.slow  # importing transformers takes seconds
def test_clip_loss_equals_transformers_clip_model():
    model = _tiny_clip()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))  # a scale far from 1, so a wrong exp/log would show
        out = model(input_ids=torch.randint(2, 80, (6, 7)), pixel_values=torch.randn(6, 3, 8, 8), return_loss=True)
        ours = mm.clip_loss(out.image_embeds, out.text_embeds, model.logit_scale)
    assert abs(float(out.loss) - float(ours)) <= 1e-6


def test_clip_module_clamps_the_scale_and_trains():
    clip = mm.CLIP(mm.SmallCNN(width=4, dim=16), 16, nn.Identity(), 10, embed_dim=8)
    assert abs(clip.logit_scale.exp().item() - 1 / 0.07) < 1e-3
    with torch.no_grad():
        clip.logit_scale.fill_(10.0)
    clip.clamp_()
    assert abs(clip.logit_scale.exp().item() - 100.0) < 1e-3
    x, t = torch.rand(16, 1, 8, 8), torch.randn(16, 10)
    hist = mm.fit(clip, lambda m, a, b: m(a, b), [x, t], epochs=30, batch_size=16, lr=1e-2, after_step=clip.clamp_)
    assert hist[-1] < hist[0] * 0.5


def test_recall_at_k_and_zero_shot_by_hand():
    sim = torch.randn(30, 40)
    q, g = torch.randint(0, 4, (30,)), torch.randint(0, 4, (40,))
    r = mm.recall_at_k(sim, q, g, ks=(1, 3))
    order = sim.argsort(1, descending=True)
    for k in (1, 3):
        hits = [any(g[order[i, j]] == q[i] for j in range(k)) for i in range(30)]
        assert r[k] == pytest.approx(sum(hits) / 30)
    with pytest.raises(ValueError, match="gallery"):
        mm.recall_at_k(sim, q, g, ks=(50,))
    img, cls = torch.randn(9, 6), torch.randn(3, 2, 6)  # 3 templates, 2 classes
    avg = F.normalize(F.normalize(cls, dim=-1).mean(0), dim=-1)
    ref = (F.normalize(img, dim=-1) @ avg.T).argmax(1)
    assert torch.equal(mm.zero_shot_predict(img, cls), ref)


def test_mean_average_precision_equals_sklearn():
    from sklearn.metrics import average_precision_score

    sim = torch.randn(12, 50)
    q, g = torch.randint(0, 3, (12,)), torch.randint(0, 3, (50,))
    ref = np.mean([average_precision_score((g == q[i]).numpy(), sim[i].numpy()) for i in range(12)])
    assert mm.mean_average_precision(sim, q, g) == pytest.approx(ref, abs=1e-6)


def test_questions_have_correct_answers():
    labels = list(range(10)) * 3
    idx, qs, ans, kinds = mm.make_questions(labels, 5, torch.Generator().manual_seed(0))
    assert len(qs) == len(ans) == len(idx) == 150 and set(kinds) == set(mm.QUESTION_KINDS)
    for i, q, a in zip(idx, qs, ans):
        y, words = labels[i], q.split()
        if "even" in words:
            assert a == (y % 2 == 0)
        elif "odd" in words:
            assert a == (y % 2 == 1)
        elif "larger" in words:
            assert a == (y > int(words[-2]))
        elif "smaller" in words:
            assert a == (y < int(words[-2]))
        else:
            assert a == (mm.digits_in(q) == [y])
    yes_is = [a for a, k in zip(ans, kinds) if k == "is"]
    assert 0.3 < sum(yes_is) / len(yes_is) < 0.7  # "is it a ...?" is balanced on purpose


def test_fusion_models_shapes_and_cross_attention_weights():
    x, ids = torch.rand(3, 1, 8, 8), torch.randint(4, 20, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[0, 4:] = 0
    for m in (mm.EarlyFusion(20, 8), mm.LateFusion(20, mode="scores"), mm.LateFusion(20, mode="product"),
              mm.CrossAttentionFusion(20, image_tokens="patches", image_depth=1), mm.CrossAttentionFusion(20)):
        assert m(x, ids, mask).shape == (3, 2)
    logits, w = mm.CrossAttentionFusion(20).eval()(x, ids, mask, need_weights=True)
    assert w.shape == (3, 4, 6, 16) and torch.allclose(w.sum(-1), torch.ones(3, 4, 6), atol=1e-5)
    with pytest.raises(ValueError, match="scores"):
        mm.LateFusion(20, mode="sum")


def test_late_fusion_scores_cannot_model_interactions():
    # With added per-modality scores, logit(yes) = f(image) + g(question): the difference between two
    # questions is the same for every image. A product of embeddings has no such constraint.
    m = mm.LateFusion(20, mode="scores").eval()
    x = torch.rand(5, 1, 8, 8)
    q1, q2 = torch.full((5, 3), 4), torch.full((5, 3), 9)
    ones = torch.ones(5, 3)
    d = (m(x, q1, ones) - m(x, q2, ones))[:, 1]
    assert (d - d[0]).abs().max() <= 1e-5


def test_greedy_generation_is_consistent_with_teacher_forcing():
    m = mm.CaptionModel(15, dim=16, heads=2, max_len=8).eval()
    x = torch.rand(4, 1, 8, 8)
    out = m.generate(x, bos_id=2, eos_id=3)
    logits = m(x, out[:, :-1])
    pred = logits.argmax(-1)
    for b in range(4):
        for t in range(out.shape[1] - 1):
            if out[b, t] == 3:  # after <eos> the row is padding
                break
            assert pred[b, t] == out[b, t + 1]
    assert m.generate(x, 2, 3, max_new_tokens=3).shape[1] <= 4


def _tiny_clip_processor(tmp_path):
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: len(vocab) + i for i, c in enumerate(chars)})
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    ip = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    return CLIPProcessor(image_processor=ip, tokenizer=tok), len(vocab)


@pytest.mark.slow
def test_hub_zero_shot_code_path_on_a_tiny_random_clip(tmp_path):
    proc, n_vocab = _tiny_clip_processor(tmp_path)
    model = _tiny_clip(n_vocab)
    x = torch.rand(5, 1, 8, 8)
    prompts = [["digit 0", "digit 1", "digit 2"]]
    pred = mm.hub_zero_shot(model, proc, x, prompts, batch_size=2)
    with torch.no_grad():
        inputs = proc(text=prompts[0], images=mm.to_rgb_uint8(x), return_tensors="pt", padding=True)
        ref = model(**inputs).logits_per_image.argmax(1)
    assert torch.equal(pred, ref)
    assert mm.to_rgb_uint8(torch.ones(1, 1, 8, 8))[0].dtype == np.uint8
