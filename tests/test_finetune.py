"""Tests for labkit.finetune on a tiny randomly initialised BERT saved to a temporary folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit import finetune as ft


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "fine", "bad", "awful", "dull", "film", "a"]
    vocab = {w: i for i, w in enumerate(words)}
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, pad_token_id=0)
    model = BertForSequenceClassification(cfg)
    folder = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def toy_data():
    pos = ["good film", "great film", "a good film", "fine film", "a great film", "good", "great", "a fine film"]
    neg = ["bad film", "awful film", "a dull film", "dull film", "a bad film", "bad", "awful", "a awful film"]
    return pos + neg, [1] * len(pos) + [0] * len(neg)


def test_load_classifier_from_folder(tiny_bert):
    model, tok = ft.load_classifier(str(tiny_bert), num_labels=3)
    assert model.config.num_labels == 3
    assert model.classifier.out_features == 3
    with pytest.raises(ft.FinetuneError, match="num_labels"):
        ft.load_classifier(str(tiny_bert), num_labels=1)


def test_load_classifier_offline_hub_id_is_clear(monkeypatch):
    from labkit import assets, runtime

    monkeypatch.setattr(runtime, "offline", lambda: True)
    with pytest.raises(assets.AssetError, match="hub is off"):
        ft.load_classifier("google-bert/bert-base-uncased")


def test_train_learns_and_predict_proba(tiny_bert):
    model, tok = ft.load_classifier(str(tiny_bert))
    texts, labels = toy_data()
    cfg = ft.FinetuneConfig(epochs=25, lr=1e-2, batch_size=8, warmup=0.1, weight_decay=0.0, seed=0)
    hist = ft.train_classifier(model, tok, texts, labels, cfg, progress=False)
    assert len(hist.train_loss) == 25 and len(hist.step_loss) == 50
    assert hist.train_loss[-1] < hist.train_loss[0]
    # The schedule is labkit.train.lr_at: 0 at the first step, peak after warm-up, decaying after.
    assert hist.lr[0] == 0.0 and max(hist.lr) == pytest.approx(1e-2, rel=0.05) and hist.lr[-1] < 1e-3
    p = ft.predict_proba(model, tok, texts, batch_size=5)
    assert p.shape == (16, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert ((p.argmax(1) == np.array(labels)).mean()) == 1.0
    # predict_proba equals a manual forward pass (batching and padding change nothing).
    with torch.no_grad():
        enc = tok(texts[:3], padding=True, return_tensors="pt")
        ref = torch.softmax(model(**enc).logits, -1).numpy()
    np.testing.assert_allclose(p[:3], ref, atol=1e-5)


def test_early_stopping_restores_best(tiny_bert):
    model, tok = ft.load_classifier(str(tiny_bert))
    texts, labels = toy_data()
    # Validation labels flipped: validation loss rises as training succeeds, so stop early.
    cfg = ft.FinetuneConfig(epochs=12, lr=3e-3, batch_size=8, patience=2, seed=0)
    hist = ft.train_classifier(model, tok, texts, labels, cfg, texts, [1 - y for y in labels], progress=False)
    assert hist.stopped_early and len(hist.val_loss) < 12
    best = hist.best_epoch
    assert hist.val_loss[best - 1] == min(hist.val_loss)
    vl, _ = ft._evaluate(model, tok, texts, [1 - y for y in labels], 64, cfg.max_length)
    assert vl == pytest.approx(hist.val_loss[best - 1], abs=1e-5)


def test_train_validates_inputs(tiny_bert):
    model, tok = ft.load_classifier(str(tiny_bert))
    cfg = ft.FinetuneConfig(epochs=1)
    with pytest.raises(ft.FinetuneError, match="match"):
        ft.train_classifier(model, tok, ["a", "b"], [0], cfg, progress=False)
    with pytest.raises(ft.FinetuneError, match="labels must be 0..1"):
        ft.train_classifier(model, tok, ["a", "b"], [0, 2], cfg, progress=False)
    with pytest.raises(ft.FinetuneError, match="one string"):
        ft.train_classifier(model, tok, "good", [1], cfg, progress=False)
    with pytest.raises(ft.FinetuneError, match="val_texts"):
        ft.train_classifier(model, tok, ["a"], [1], ft.FinetuneConfig(patience=1), progress=False)


def test_add_lora_matches_base_at_init_and_trains_few(tiny_bert):
    model, tok = ft.load_classifier(str(tiny_bert))
    enc = tok(["good film", "bad"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        before = model(**enc).logits.clone()
    lm = ft.add_lora(model, r=4, alpha=8)
    lm.eval()
    with torch.no_grad():
        after = lm(**enc).logits
    # B starts at zero, so the adapted model computes exactly what the base model did.
    torch.testing.assert_close(after, before)
    names = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names) and any("classifier" in n for n in names)
    assert not any("word_embeddings" in n for n in names)
    # query and value of one layer: 2 * r * (32 + 32) LoRA weights + the classifier head.
    n_lora = sum(p.numel() for n, p in lm.named_parameters() if p.requires_grad and "lora_" in n)
    assert n_lora == 2 * 4 * (32 + 32)
    with pytest.raises(ft.FinetuneError, match="not Linear"):
        ft.add_lora(ft.load_classifier(str(tiny_bert))[0], target_modules=["nope"])


def test_accuracy_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    y, p = [0, 1, 1, 0, 1], [0, 1, 0, 0, 1]
    acc, f1 = ft.accuracy_f1(y, p)
    assert acc == pytest.approx(0.8) and f1 == pytest.approx(f1_score(y, p, average="macro"))


def test_add_lora_layer_equals_formula(tiny_bert):
    """peft's adapted query projection computes W x + b + (alpha / r) B A x."""
    model, _ = ft.load_classifier(str(tiny_bert))
    lm = ft.add_lora(model, r=4, alpha=8, target_modules=["query"])
    layer = lm.base_model.model.bert.encoder.layer[0].attention.self.query
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.1)
    x = torch.randn(3, 32)
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    ref = x @ layer.base_layer.weight.T + layer.base_layer.bias + (8 / 4) * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), ref, atol=1e-6, rtol=1e-5)
    assert 0 < ft.trainable_fraction(lm) < 0.2
