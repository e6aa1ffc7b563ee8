"""labkit.evaluate: perplexity and bits per character, and sliding-window scoring equal to HF's loss."""
import math

import numpy as np
import pytest
import torch

from labkit.evaluate import bits_per_char, causal_lm_nats, cross_entropy, perplexity, window_plan


def test_perplexity_and_bits_per_char():
    assert perplexity(3 * math.log(5), 3) == pytest.approx(5.0)
    assert bits_per_char(12 * math.log(2), 4) == pytest.approx(3.0)
    # the same text: nats/char -> bits/char and per-token perplexity are two views of one number
    total, chars, tokens = 1234.5, 1000, 250
    assert math.log2(perplexity(total, tokens)) * tokens / chars == pytest.approx(bits_per_char(total, chars))
    with pytest.raises(ValueError):
        perplexity(1.0, 0)
    with pytest.raises(ValueError):
        bits_per_char(1.0, 0)


def test_cross_entropy_equals_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 11, generator=g)
    targets = torch.randint(0, 11, (2, 7), generator=g)
    targets[0, :3] = -100
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), reduction="sum")
    assert float(cross_entropy(logits, targets)) == pytest.approx(float(ref), abs=1e-5)


@pytest.mark.parametrize("n,context,stride", [(2, 4, 4), (10, 4, 2), (37, 8, 3), (5, 16, 8), (100, 10, 10)])
def test_window_plan_scores_each_position_once(n, context, stride):
    plan = window_plan(n, context, stride)
    targets = [t for s, e, f in plan for t in range(f, e)]
    assert targets == list(range(1, n))
    for i, (s, e, f) in enumerate(plan):
        assert e - s <= context
        if i > 0:
            assert f - s == max(context - stride, 1)  # every later window re-reads this much context
    with pytest.raises(ValueError):
        window_plan(10, 4, 5)


@pytest.fixture(scope="module")
def tiny_lm():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz .,\n"))
    vocab = {"<eos>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    t.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval(), tok


TEXT = "the cat sat on the mat.\nthe dog sat on the log, and the cat ran.\n"


def test_single_window_equals_hf_loss(tiny_lm):
    model, tok = tiny_lm
    s = causal_lm_nats(model, tok, TEXT, context=128, stride=64, progress=False)
    ids = torch.tensor([[tok.eos_token_id] + tok(TEXT, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss  # mean over the len(TEXT) shifted targets
    assert s.windows == 1 and s.n_tokens == len(TEXT) == s.n_chars
    assert s.total_nats == pytest.approx(float(loss) * len(TEXT), rel=1e-5)
    assert s.bpc == pytest.approx(float(loss) / math.log(2), rel=1e-5)
    assert s.char_nats().sum() == pytest.approx(s.total_nats)


def test_sliding_windows_equal_hf_loss_per_window(tiny_lm):
    model, tok = tiny_lm
    s = causal_lm_nats(model, tok, TEXT, context=16, stride=6, progress=False)
    ids = torch.tensor([[tok.eos_token_id] + tok(TEXT, add_special_tokens=False)["input_ids"]])
    total = 0.0
    for start, end, first in window_plan(ids.shape[1], 16, 6):
        x = ids[:, start:end]
        labels = x.clone()
        labels[:, :first - start] = -100  # only the new tokens of this window count
        with torch.inference_mode():
            total += float(model(input_ids=x, labels=labels).loss) * (end - first)
    assert s.windows == len(window_plan(ids.shape[1], 16, 6)) > 1
    assert s.total_nats == pytest.approx(total, rel=1e-5)
    # more context can only be compared, not equal: a full-context score differs from the windowed one
    full = causal_lm_nats(model, tok, TEXT, context=128, stride=128, progress=False)
    assert not np.allclose(full.token_nats, s.token_nats)
    np.testing.assert_allclose(full.token_nats[:15], s.token_nats[:15], atol=1e-5)  # same first window


def test_causal_lm_nats_validates(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="non-empty"):
        causal_lm_nats(model, tok, "")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        causal_lm_nats(model, tok, TEXT, context=256, stride=64)
