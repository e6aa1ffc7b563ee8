"""Tests of labkit.text: values checked against real references (unicodedata, sklearn, tokenizers,
transformers) where one exists."""
from __future__ import annotations

import json
import random
import unicodedata

import pytest

from labkit import text as T

# --- cleaning ------------------------------------------------------------------------------------


def test_fullwidth_matches_nfkc_on_the_whole_block():
    block = [chr(c) for c in range(0xFF01, 0xFF5F)] + ["\u3000"]
    for ch in block:
        assert T.fullwidth_to_halfwidth(ch) == unicodedata.normalize("NFKC", ch)
    assert T.fullwidth_to_halfwidth("ＧＰＴ－４，１２３！　ok") == "GPT-4,123! ok"
    assert T.fullwidth_to_halfwidth("中文不变") == "中文不变"


def test_normalize_and_clean():
    assert T.normalize("ＡＩ ﬁnds ①²", lower=True) == "ai finds 12"
    with pytest.raises(ValueError, match="NFKC"):
        T.normalize("x", form="NFX")
    assert T.clean("<b>Visit</b> https://x.org ,ＮＯＷ！！  I said…") == "visit now i said"
    assert T.clean("今天，天气很好！") == "今天 天气很好"
    assert T.remove_punctuation("a,b。c「d」", replace="") == "abcd"
    assert T.remove_punctuation("1+1=2 $", symbols=False) == "1+1=2 $"
    with pytest.raises(TypeError):
        T.clean(None)


def test_stopwords():
    en, zh = T.english_stopwords(), T.chinese_stopwords()
    assert len(en) == 318 and {"the", "not", "of"} <= en
    assert {"的", "了"} <= zh
    assert all(any("\u4e00" <= c <= "\u9fff" for c in w) for w in zh)
    assert T.remove_stopwords(["The", "cat", "sat", "on", "the", "mat"], en) == ["cat", "sat", "mat"]


def test_lemmatize():
    lex = {"study", "run", "stop", "city", "box", "make", "wolf", "happy"}
    assert T.lemmatize("studies", lex) == "study"
    assert T.lemmatize("running", lex) == "run"
    assert T.lemmatize("stopped", lex) == "stop"
    assert T.lemmatize("cities", lex) == "city"
    assert T.lemmatize("boxes", lex) == "box"
    assert T.lemmatize("making", lex) == "make"
    assert T.lemmatize("wolves", lex) == "wolf"
    assert T.lemmatize("happier", lex) == "happy"
    assert T.lemmatize("was") == "be" and T.lemmatize("mice") == "mouse"
    assert T.lemmatize("glass", lex) == "glass"  # no rule yields a known word: unchanged
    assert T.lemmatize("cats") == "cat" and T.lemmatize("glass") == "glass"


# --- segmentation --------------------------------------------------------------------------------

DICT = {"研究", "研究生", "生命", "起源", "结婚", "的", "和", "尚未", "和尚", "未", "结婚的"}


def test_max_match_directions():
    assert T.max_match("研究生命起源", DICT) == ["研究生", "命", "起源"]
    assert T.max_match("研究生命起源", DICT, direction="backward") == ["研究", "生命", "起源"]
    assert T.max_match("研究生命起源", DICT, direction="bidirectional") == ["研究", "生命", "起源"]
    assert T.max_match("结婚的和尚未结婚的", DICT, 3) == ["结婚的", "和尚", "未", "结婚的"]
    assert T.max_match("结婚的和尚未结婚的", DICT, 3, "bidirectional") == ["结婚的", "和", "尚未", "结婚的"]
    # unknown characters come out one by one, and the words always spell the text
    assert T.max_match("甲乙研究", DICT) == ["甲", "乙", "研究"]
    assert T.max_match("", DICT) == []
    # max_len caps the window: with 1 only single characters remain
    assert T.max_match("研究生", DICT, max_len=1) == ["研", "究", "生"]
    with pytest.raises(ValueError, match="direction"):
        T.max_match("x", DICT, direction="sideways")
    with pytest.raises(ValueError, match="max_len"):
        T.max_match("x", DICT, max_len=0)


def test_segmentation_prf_against_sklearn():
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    rng = random.Random(0)
    gold, pred = [], []
    for _ in range(200):
        s = "".join(rng.choice("甲乙丙丁戊") for _ in range(rng.randint(1, 12)))
        cut = lambda: [w for w in _random_cut(s, rng)]  # noqa: E731
        gold.append(cut())
        pred.append(cut())
    ours = T.segmentation_prf(gold, pred)
    lab = lambda sents: [[f"{a}-{b}" for a, b in T.word_spans(x)] for x in sents]  # noqa: E731
    mlb = MultiLabelBinarizer().fit(lab(gold) + lab(pred))
    p, r, f, _ = precision_recall_fscore_support(mlb.transform(lab(gold)), mlb.transform(lab(pred)),
                                                 average="micro")
    assert ours["precision"] == pytest.approx(p, abs=1e-12)
    assert ours["recall"] == pytest.approx(r, abs=1e-12)
    assert ours["f1"] == pytest.approx(f, abs=1e-12)
    assert T.segmentation_prf([["ab", "c"]], [["ab", "c"]]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def _random_cut(s, rng):
    out, i = [], 0
    while i < len(s):
        k = rng.randint(1, 3)
        out.append(s[i:i + k])
        i += k
    return out


def test_segmentation_prf_rejects_mismatched_text():
    with pytest.raises(ValueError, match="same text"):
        T.segmentation_prf([["ab"]], [["ac"]])
    with pytest.raises(ValueError, match="sentences"):
        T.segmentation_prf([["a"]], [])
    with pytest.raises(TypeError):
        T.segmentation_prf(["ab"], ["ab"])


@pytest.mark.slow
def test_max_match_on_peoples_daily_sample():
    from labkit import data

    ds = data.load("peoples-daily").select(range(2000))
    words = ds["words"]
    dictionary = {w for ws in words[:1800] for w in ws}
    gold, texts = words[1800:], ds["text"][1800:]
    f1 = {d: T.segmentation_prf(gold, [T.max_match(t, dictionary, 8, d) for t in texts])["f1"]
          for d in ("forward", "backward", "bidirectional")}
    assert all(0.80 < v < 0.95 for v in f1.values()), f1
    # with the test sentences' own words in the dictionary the matcher is almost perfect
    full = dictionary | {w for ws in gold for w in ws}
    assert T.segmentation_prf(gold, [T.max_match(t, full, 8, "bidirectional") for t in texts])["f1"] > 0.97


# --- byte-level BPE against tokenizers -----------------------------------------------------------

def _hf_bpe(texts, vocab_size, min_frequency):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(tok.to_str())["model"]
    return tok, model["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def test_byte_level_pretokenize_matches_tokenizers():
    from tokenizers import pre_tokenizers

    bl = pre_tokenizers.ByteLevel(add_prefix_space=False)
    for s in ["Hello world's  2024 年中国\n\n  x", "Byte-level BPE, 中文 and 🙂!", "  lead", "tabs\tand\r\nlines ",
              "it's we'll they've I'm", "数字１２３ and ½ ²", ""]:
        assert T.byte_level_pretokenize(s) == [w for w, _ in bl.pre_tokenize_str(s)]


def test_bytes_to_unicode_is_a_bijection():
    m = T.bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ" and m[ord("a")] == "a"


def test_train_bpe_tie_rule():
    # ("a", "a") and ("a", "b") both occur 3 times: the pair with smaller ids wins, (a, a)
    bpe = T.train_bpe(["aaab aab ab"], vocab_size=258)
    _, vocab, merges = _hf_bpe(["aaab aab ab"], 258, 0)
    assert bpe.merges == merges == [("a", "a"), ("a", "b")]
    assert bpe.vocab == vocab


@pytest.mark.slow
def test_train_bpe_equals_tokenizers_on_english_text():
    from labkit import data

    train, val = data.wiki_char_text()
    texts = [p for p in train[:300_000].split("\n") if p.strip()]
    tok, vocab, merges = _hf_bpe(texts, 1000, 2)
    bpe = T.train_bpe(texts, 1000, 2)
    assert bpe.vocab == vocab
    assert bpe.merges == merges
    held = val[:20_000]
    ids = bpe.encode(held)
    assert ids == tok.encode(held).ids
    assert bpe.decode(ids) == held


@pytest.mark.slow
def test_train_bpe_equals_tokenizers_on_chinese_text():
    from labkit import data

    texts = data.load("peoples-daily")["text"][:1500]
    tok, vocab, merges = _hf_bpe(texts, 1200, 2)
    bpe = T.train_bpe(texts, 1200, 2)
    assert bpe.vocab == vocab and bpe.merges == merges
    probe = "".join(data.load("peoples-daily")["text"][-20:])
    assert bpe.encode(probe) == tok.encode(probe).ids
    assert bpe.decode(bpe.encode(probe)) == probe


def test_train_bpe_equals_tokenizers_on_random_small_corpora():
    """Tiny alphabets force ties, repeated symbols ('aaaa') and two pairs that spell the same
    token: the corner cases of the trainer's bookkeeping."""
    rng = random.Random(0)
    for _ in range(60):
        alphabet = rng.choice(["ab", "abc", "aab", "ab c", "abc de"])
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(rng.randint(1, 15))]
        vocab_size, min_frequency = rng.randint(256, 300), rng.choice([0, 1, 2, 3])
        tok, vocab, merges = _hf_bpe(texts, vocab_size, min_frequency)
        bpe = T.train_bpe(texts, vocab_size, min_frequency)
        assert (bpe.vocab, bpe.merges) == (vocab, merges), texts
        probe = "".join(rng.choice(alphabet) for _ in range(40))
        assert bpe.encode(probe) == tok.encode(probe).ids


def test_bpe_roundtrip_and_errors():
    bpe = T.train_bpe(["low lower lowest"] * 3, vocab_size=260)
    for s in ["lowest low", "中文 🙂 ünïcödé", "", "\n\n  x"]:
        assert bpe.decode(bpe.encode(s)) == s
    with pytest.raises(ValueError, match="vocab_size"):
        T.train_bpe(["x"], vocab_size=0)
    with pytest.raises(TypeError, match="iterable"):
        T.train_bpe("just a string", vocab_size=300)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        bpe.decode([10_000])


# --- augmentation --------------------------------------------------------------------------------

SYN = {"quick": ["fast", "rapid"], "big": ["large"], "film": ["movie"]}
SENT = "the quick film was big and quick".split()


def test_synonym_replace_replaces_every_occurrence():
    out = T.synonym_replace(SENT, 1, {"quick": ["fast"]}, random.Random(0))
    assert out == "the fast film was big and fast".split()
    out = T.synonym_replace(SENT, 10, SYN, random.Random(0), stopwords={"film"})
    assert "film" in out and "quick" not in out and "big" not in out
    assert T.synonym_replace(SENT, 0, SYN, random.Random(0)) == SENT


def test_insert_swap_delete_properties():
    rng = random.Random(1)
    ins = T.random_insert(SENT, 3, SYN, rng)
    assert len(ins) == len(SENT) + 3
    added = list(ins)
    for w in SENT:
        added.remove(w)
    assert all(w in {"fast", "rapid", "large", "movie"} for w in added)
    assert T.random_insert(SENT, 2, SYN, rng, stopwords=set(SYN)) == SENT  # nothing to draw from
    sw = T.random_swap(SENT, 3, rng)
    assert sorted(sw) == sorted(SENT) and len(sw) == len(SENT)
    assert T.random_delete(SENT, 0.0, rng) == SENT
    kept = T.random_delete(SENT, 1.0, rng)
    assert len(kept) == 1 and kept[0] in SENT
    d = T.random_delete(SENT, 0.5, random.Random(3))
    assert all(w in SENT for w in d)
    with pytest.raises(ValueError):
        T.random_delete(SENT, 1.5)


def test_eda_is_deterministic_given_the_seed():
    a = T.eda(SENT, SYN, n_aug=8, alpha=0.2, rng=random.Random(5))
    b = T.eda(SENT, SYN, n_aug=8, alpha=0.2, rng=random.Random(5))
    assert a == b and len(a) == 8
    assert sorted(a[2]) == sorted(SENT)  # the third variant is a swap
    with pytest.raises(ValueError):
        T.eda(SENT, SYN, n_aug=-1)


@pytest.mark.slow
def test_cedict_synonyms():
    zh, en = T.cedict_synonyms("zh"), T.cedict_synonyms("en")
    assert "喜爱" in zh["喜欢"] and "fast" in en["quick"]
    assert all(w not in syns for w, syns in list(zh.items())[:500])
    with pytest.raises(ValueError):
        T.cedict_synonyms("fr")


# --- batching ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_pad_collate_equals_datacollator_with_padding():
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from labkit import assets

    tok = AutoTokenizer.from_pretrained(str(assets.path("minilm-l6")))
    texts = ["a short one", "a somewhat longer sentence with more words in it", "mid length text here"]
    feats = [dict(tok(t)) for t in texts]
    for f, y in zip(feats, [1, 0, 1]):
        f["label"] = y
    ref = DataCollatorWithPadding(tok)(feats)
    ours = T.pad_collate(feats, pad_id=tok.pad_token_id)
    assert set(ours) == set(ref)
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k
    ref16 = DataCollatorWithPadding(tok, padding="max_length", max_length=16)(feats)
    ours16 = T.pad_collate(feats, pad_id=tok.pad_token_id, max_length=16)
    for k in ref16:
        assert torch.equal(ours16[k], ref16[k]), k
    ref8 = DataCollatorWithPadding(tok, pad_to_multiple_of=8)(feats)
    ours8 = T.pad_collate(feats, pad_id=tok.pad_token_id, pad_to_multiple_of=8)
    for k in ref8:
        assert torch.equal(ours8[k], ref8[k]), k


def test_pad_collate_left_padding_and_errors():
    b = T.pad_collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], pad_id=9, padding_side="left")
    assert b["input_ids"].tolist() == [[5, 6, 7], [9, 9, 8]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert T.padding_share(b) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="max_length"):
        T.pad_collate([{"input_ids": [1, 2, 3]}], max_length=2)
    with pytest.raises(ValueError, match="empty"):
        T.pad_collate([])
    with pytest.raises(KeyError, match="input_ids"):
        T.pad_collate([{"text": "x"}])
    with pytest.raises(ValueError, match="padding_side"):
        T.pad_collate([{"input_ids": [1]}], padding_side="middle")
