"""Tests of labkit.translate: values checked against torch.nn.Transformer, F.cross_entropy, sacrebleu,
tokenizers / labkit.text and transformers' generate."""
from __future__ import annotations

import datetime as dt
import json
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import translate as T

# Tiny models decode token by token: on a busy machine extra torch threads only spin and wait
# (one thread makes the decoding tests ~20x faster under load).
pytestmark = pytest.mark.usefixtures("one_thread")


# --- data --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, words", [
    (0, "零"), (7, "七"), (10, "十"), (15, "十五"), (20, "二十"), (115, "一百一十五"), (1005, "一千零五"),
    (1050, "一千零五十"), (1500, "一千五百"), (2021, "二千零二十一"), (9999, "九千九百九十九"),
    (10010, "一万零一十"), (100000, "十万"), (120034, "十二万零三十四"), (1000001, "一百万零一")])
def test_zh_number_known_cases(n, words):
    assert T.zh_number(n) == words


def test_zh_number_rejects_bad_input():
    with pytest.raises(ValueError, match="zh_number"):
        T.zh_number(-1)


def test_numbers_and_dates_in_five_languages():
    assert T.number_words(97, "fr") == "quatre-vingt-dix-sept"
    assert T.number_words(21, "de") == "einundzwanzig"
    assert T.number_words(21, "es") == "veintiuno"
    d = dt.date(2021, 3, 5)
    assert [T.date_text(d, l) for l in ("en", "zh", "fr", "de", "es")] == [
        "March 5, 2021", "2021年3月5日", "5 mars 2021", "5. März 2021", "5 de marzo de 2021"]
    with pytest.raises(ValueError, match="choose one of"):
        T.number_words(3, "xx")


def test_pairs_split_without_shared_values():
    pairs = T.numbers_dates_pairs(200, 100, targets=("fr", "zh"), seed=1)
    assert len(pairs) == 2 * 300
    assert pairs[0]["src"].startswith("<2fr> ") and pairs[1]["src"].startswith("<2zh> ")
    train, test = T.split_by_group(pairs, "key", 0.2)
    assert not {p["key"] for p in train} & {p["key"] for p in test}
    assert len(train) + len(test) == len(pairs) and 0.15 < len(test) / len(pairs) < 0.25
    with pytest.raises(ValueError, match="targets"):
        T.numbers_dates_pairs(2, 1, targets=("en",))


def test_bible_loader_says_plainly_when_modules_are_absent(tmp_path, capsys):
    assert T.load_bible_pairs(tmp_path) is None
    out = capsys.readouterr().out
    assert "not installed" in out and "numbers-and-dates task only" in out and "sword-text-web" in out


def test_osis_markup_is_stripped_with_a_space_for_notes():
    raw = '<w lemma="x">only</w> born</q><note placement="foot">3:16 a note</note><q><w>Son</w>, that'
    assert T._osis_text(raw) == "only born Son, that"


# --- tokenizer ---------------------------------------------------------------------------------

def test_shared_bpe_has_fixed_special_ids_and_round_trips():
    texts = ["four thousand, three hundred", "quatre mille trois cent", "二千零二十一", "5. März 2021"] * 5
    tok = T.train_shared_bpe(texts, 400, ["<2fr>", "<2zh>"])
    assert [tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>", "<2fr>")] == [0, 1, 2, 3]
    enc = tok.encode("<2fr> four thousand")
    assert enc.ids[0] == 3 and tok.decode(enc.ids[1:]).strip() == "four thousand"
    assert tok.decode(tok.encode("二千零二十一").ids) == "二千零二十一"


def test_shared_bpe_merges_equal_labkit_text_train_bpe():
    from labkit.text import train_bpe

    texts = [T.number_words(n, l) for n in range(0, 3000, 7) for l in ("en", "fr", "de", "es", "zh")]
    tok = T.train_shared_bpe(texts, 500)
    model = json.loads(tok.to_str())["model"]
    hf = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    ours = train_bpe(texts, 500 - 3).merges  # the 3 special tokens take vocabulary slots, not merges
    assert ours == hf


def test_batches_shift_targets_and_mask_padding():
    enc = [([5, 6, 2], [1, 7, 8, 2]), ([9, 2], [1, 7, 2])]
    src, mask, tgt_in, labels = next(T.batches(enc, 2, shuffle=False))
    assert src.tolist() == [[9, 2, 0], [5, 6, 2]] and mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert tgt_in.tolist() == [[1, 7, 2], [1, 7, 8]]
    assert labels.tolist() == [[7, 2, -100], [7, 8, 2]]


# --- model and loss ----------------------------------------------------------------------------

def test_seq2seq_stack_equals_torch_transformer():
    torch.manual_seed(0)
    d, h, n_layers, ff = 32, 4, 2, 64
    t = nn.Transformer(d, h, n_layers, n_layers, ff, dropout=0.0, batch_first=True, norm_first=True)
    m = T.Seq2SeqTransformer(T.Seq2SeqConfig(vocab_size=50, d_model=d, n_heads=h, n_encoder_layers=n_layers,
                                             n_decoder_layers=n_layers, d_ff=ff, dropout=0.0))
    m.load_torch_transformer(t)
    t.train(), m.train()  # train mode with dropout 0: torch's eval fast path (nested tensors) is skipped
    x, y = torch.randn(3, 7, d), torch.randn(3, 5, d)
    src_mask = torch.ones(3, 7, dtype=torch.long)
    src_mask[0, 5:] = 0
    src_mask[2, 3:] = 0
    ref = t(x, y, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5), tgt_is_causal=True,
            src_key_padding_mask=src_mask == 0, memory_key_padding_mask=src_mask == 0)
    ours = m.decode_embedded(y, m.encode_embedded(x, src_mask), src_mask)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_label_smoothing_equals_torch():
    torch.manual_seed(0)
    z, y = torch.randn(2, 6, 30), torch.randint(0, 30, (2, 6))
    y[0, 4:] = -100
    for eps in (0.0, 0.1, 0.3):
        torch.testing.assert_close(T.label_smoothed_cross_entropy(z, y, eps),
                                   F.cross_entropy(z.reshape(-1, 30), y.reshape(-1), label_smoothing=eps))


def test_padding_does_not_change_the_output():
    torch.manual_seed(0)
    m = T.Seq2SeqTransformer(T.Seq2SeqConfig(vocab_size=40, d_model=16, n_heads=2, d_ff=32, dropout=0.0)).eval()
    src = torch.tensor([[5, 6, 7, 2]])
    tgt = torch.tensor([[1, 9, 10]])
    a = m(src, torch.ones_like(src), tgt)
    padded = torch.tensor([[5, 6, 7, 2, 0, 0]])
    b = m(padded, (padded != 0).long(), tgt)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# --- decoding against transformers' generate ----------------------------------------------------

def _tiny_marian(seed=0):
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    cfg = MarianConfig(vocab_size=30, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                       forced_eos_token_id=None)
    m = MarianMTModel(cfg).eval()
    with torch.no_grad():  # random weights give flat distributions; sharpen them so beams differ
        m.lm_head.weight.mul_(8)
    return m


def _hf_generate(m, src, **kw):
    ids = torch.tensor([src])
    out = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                     decoder_start_token_id=1, eos_token_id=2, pad_token_id=0, **kw)
    row = out[0, 1:].tolist()
    return row[:row.index(2)] if 2 in row else row


def test_greedy_equals_transformers_generate():
    m = _tiny_marian()
    rng = random.Random(0)
    srcs = [[rng.randrange(3, 30) for _ in range(rng.randrange(2, 6))] + [2] for _ in range(6)]
    ours = T.greedy_decode(m, srcs, max_len=12)
    assert ours == [_hf_generate(m, s) for s in srcs]


def test_beam_search_equals_transformers_generate():
    agree, n = 0, 0
    for seed in range(3):
        m = _tiny_marian(seed)
        rng = random.Random(seed)
        for _ in range(5):
            s = [rng.randrange(3, 30) for _ in range(rng.randrange(2, 6))] + [2]
            ours = T.beam_search(m, s, num_beams=3, max_len=12, length_penalty=1.0)
            ref = _hf_generate(m, s, num_beams=3, early_stopping=True, length_penalty=1.0)
            agree += ours == ref
            n += 1
    assert agree == n


def test_beam_with_one_beam_is_greedy():
    m = _tiny_marian(1)
    s = [5, 9, 11, 2]
    assert T.beam_search(m, s, num_beams=1, max_len=12) == T.greedy_decode(m, [s], max_len=12)[0]


# --- scores ------------------------------------------------------------------------------------

def test_corpus_bleu_equals_sacrebleu():
    rng = random.Random(0)
    words = "the cat sat on a mat dog ran to house , .".split()
    for _ in range(20):
        refs = [" ".join(rng.choices(words, k=rng.randrange(3, 12))) for _ in range(5)]
        hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(words) for w in r.split()[:rng.randrange(2, 12)])
                for r in refs]
        assert T.corpus_bleu(hyps, refs) == pytest.approx(T.sacre_bleu(hyps, refs), abs=1e-9)
    zh_h, zh_r = ["二千零二十一年", "三月五日"], ["二千零二十年", "三月五日"]
    assert T.corpus_bleu(zh_h, zh_r, tokenize="zh") == pytest.approx(T.sacre_bleu(zh_h, zh_r, tokenize="zh"), abs=1e-9)


def test_scores_on_known_cases():
    assert T.exact_match(["a b", "c"], ["a  b", "d"]) == 0.5
    assert T.corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)
    assert T.corpus_bleu(["x y"], ["a b c d"]) == 0.0
    assert T.chrf(["vingt et un"], ["vingt et un"]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="hypotheses"):
        T.corpus_bleu(["a"], ["a", "b"])
