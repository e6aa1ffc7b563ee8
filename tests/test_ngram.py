"""labkit.ngram: counts, smoothing and fair text scoring, checked by hand and against nltk.lm."""
import math
from collections import Counter

import numpy as np
import pytest

from labkit.ngram import BOS, UNICODE_SIZE, UNK, NGramLM, Speller, Vocab, char_nats, word_nats, word_tokenize

TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat; "
        "the cat ran, the dog sat.\nthen the log rolled off the mat and the cat sat again.\n") * 3


@pytest.fixture(scope="module")
def char_data():
    vocab = Vocab.build(TEXT)
    return vocab, vocab.encode(TEXT)


def test_word_tokenize_is_lossless():
    text = "Aikidō  (合気道) is\n\n* a  martial art, 1920s–1930s!\tEnd "
    toks = word_tokenize(text)
    assert "".join(toks) == text
    assert word_tokenize("The cat, 2 mats.") == ["The", " cat", ",", " 2", " mats", "."]


def test_vocab_ids_and_errors():
    v = Vocab.build("abracadabra")
    assert v.itos[:2] == ["<s>", "<unk>"] and v.itos[2] == "a"  # most frequent first
    assert v.encode("abz").tolist() == [2, 3, UNK]
    assert v.decode([2, 3]) == ["a", "b"] and "a" in v and "<unk>" not in v
    assert len(Vocab.build(["x", "x", "y"], min_count=2)) == 3
    with pytest.raises(ValueError, match="min_count"):
        Vocab.build("ab", min_count=0)


def test_bigram_kneser_ney_by_hand():
    # "abab": bigrams <s>a, ab, ba, ab; continuation counts N1+(.a)=2 (<s>, b), N1+(.b)=1 (a).
    v = Vocab(["a", "b"])  # a=2, b=3
    lm = NGramLM(2, discount=[0.5, 0.5]).fit(v.encode("abab"), len(v))
    # unigram: p1(w) = max(N1+(.w) - .5, 0)/3 + .5*2/3 * 1/3 (3 predictable ids: <unk>, a, b)
    p1 = {"a": 1.5 / 3 + 1 / 9, "b": 0.5 / 3 + 1 / 9, "<unk>": 1 / 9}
    # context "a": seen twice, followed by b both times: p = max(2 - .5, 0)/2 + .5*1/2 * p1
    want_b = 1.5 / 2 + 0.25 * p1["b"]
    got = lm.distribution([2])
    assert got[3] == pytest.approx(want_b, abs=1e-12)
    assert got[2] == pytest.approx(0.25 * p1["a"], abs=1e-12)
    assert got[BOS] == 0 and got.sum() == pytest.approx(1, abs=1e-12)
    # an unseen context falls back to the unigram level
    assert lm.distribution([UNK])[2] == pytest.approx(p1["a"], abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("smoothing", ["kn", "add-k"])
def test_distributions_sum_to_one(char_data, order, smoothing):
    vocab, ids = char_data
    lm = NGramLM(order, smoothing=smoothing, k=0.05).fit(ids, len(vocab))
    for ctx in ["", "the c", "t sat", "zzzz", "\nthen"]:
        p = lm.distribution(vocab.encode(ctx))
        assert p[BOS] == 0 and (p[1:] > 0).all()
        assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_estimated_discounts_follow_ney(char_data):
    vocab, ids = char_data
    lm = NGramLM(3).fit(ids, len(vocab))
    for m in (1, 2, 3):
        c = lm.counts[m]
        n1, n2 = (c == 1).sum(), (c == 2).sum()
        assert lm.discounts[m] == pytest.approx(n1 / (n1 + 2 * n2))


def test_derive_equals_fresh_fit(char_data):
    vocab, ids = char_data
    big = NGramLM(5).fit(ids, len(vocab))
    test = vocab.encode("the dog ran on a log.\n")
    for order in (1, 2, 3, 4):
        for smoothing, k in (("kn", 1.0), ("add-k", 0.3)):
            fresh = NGramLM(order, smoothing=smoothing, k=k).fit(ids, len(vocab))
            derived = big.derive(order=order, smoothing=smoothing, k=k)
            np.testing.assert_allclose(derived.sequence_logprobs(test), fresh.sequence_logprobs(test), atol=1e-12)
    with pytest.raises(ValueError, match="lower the order"):
        big.derive(order=6)


def _nltk_grams(text, n):
    from nltk.util import everygrams

    padded = ["<s>"] * (n - 1) + list(text)
    return [g for g in everygrams(padded, max_len=n) if g[-1] != "<s>"]  # n-grams that end in padding are never events


@pytest.mark.parametrize("n", [2, 3])
def test_matches_nltk(char_data, n):
    nltk_lm = pytest.importorskip("nltk.lm")
    vocab, ids = char_data
    train = TEXT
    test = "the cat met the log on a mat.\n"
    tp = ["<s>"] * (n - 1) + list(test)
    kn_ref = nltk_lm.KneserNeyInterpolated(n, discount=0.1, vocabulary=nltk_lm.Vocabulary(train, unk_cutoff=1))
    kn_ref.fit([_nltk_grams(train, n)])
    lid_ref = nltk_lm.Lidstone(0.1, n, vocabulary=nltk_lm.Vocabulary(train, unk_cutoff=1))
    lid_ref.fit([_nltk_grams(train, n)])
    # nltk's Kneser-Ney has no uniform floor at the unigram level: discount 0 there matches it.
    kn = NGramLM(n, discount=[0.0] + [0.1] * (n - 1)).fit(ids, len(vocab)).sequence_logprobs(vocab.encode(test))
    lid = NGramLM(n, smoothing="add-k", k=0.1).fit(ids, len(vocab)).sequence_logprobs(vocab.encode(test))
    for i, ch in enumerate(test):
        ctx = kn_ref.vocab.lookup(tuple(tp[i:i + n - 1]))  # nltk maps the <s> padding to <UNK>
        assert math.log(kn_ref.unmasked_score(ch, ctx)) == pytest.approx(kn[i], abs=1e-12)
        assert math.log(lid_ref.unmasked_score(ch, ctx)) == pytest.approx(lid[i], abs=1e-12)


def test_char_nats_spell_unknown_characters(char_data):
    vocab, ids = char_data
    lm = NGramLM(2).fit(ids, len(vocab))
    nats = char_nats(lm, vocab, "a€")
    p_unk = lm.distribution(vocab.encode("a"))[UNK]
    assert nats[1] == pytest.approx(-math.log(p_unk) + math.log(UNICODE_SIZE - (len(vocab) - 2)))
    assert nats[0] == pytest.approx(-lm.sequence_logprobs(vocab.encode("a"))[0])


def test_speller_is_a_distribution():
    sp = Speller(["cat", "dog", "emu"])
    p_end = math.exp(-sp.end_nats)
    known = sum(math.exp(-v) for v in sp.char_nats.values())
    other = math.exp(-sp.other_nats) * (UNICODE_SIZE - len(sp.char_nats))
    assert p_end + known + other == pytest.approx(1.0, abs=1e-12)
    assert sp.nats("cat") == pytest.approx(sum(sp.char_nats[c] for c in "cat") + sp.end_nats)


def test_word_nats_cover_every_character():
    toks = word_tokenize(TEXT)
    counts = Counter(toks)
    vocab = Vocab.build(toks, min_count=2)
    speller = Speller(t for t in toks if counts[t] < 2)
    lm = NGramLM(3).fit(vocab.encode(toks), len(vocab))
    text = "the cat sat on the zebra."
    nats, tokens = word_nats(lm, vocab, speller, text)
    assert "".join(tokens) == text and len(nats) == len(tokens)
    i = tokens.index(" zebra")
    base = -lm.sequence_logprobs(vocab.encode(tokens))[i]
    assert nats[i] == pytest.approx(base + speller.nats(" zebra"))


def test_sampling_follows_the_counts():
    v = Vocab(["a", "b", "c"])
    lm = NGramLM(3).fit(v.encode("abc" * 50), len(v))
    out = lm.sample(30, context=v.encode("ab"), rng=np.random.default_rng(0))
    assert "".join(v.decode(out)).startswith("cabcabc")  # a deterministic text is reproduced
    assert UNK not in out


def test_input_validation(char_data):
    vocab, ids = char_data
    with pytest.raises(ValueError, match="order"):
        NGramLM(0)
    with pytest.raises(ValueError, match="unknown smoothing"):
        NGramLM(2, smoothing="good-turing")
    with pytest.raises(ValueError, match="k > 0"):
        NGramLM(2, smoothing="add-k", k=0)
    with pytest.raises(ValueError, match="discount"):
        NGramLM(2, discount=[0.5])
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramLM(2).distribution([])
    with pytest.raises(ValueError, match="ids must lie"):
        NGramLM(2).fit(np.array([0, 2, 3]), len(vocab))
    with pytest.raises(ValueError, match="vocab_size"):
        char_nats(NGramLM(2).fit(ids, len(vocab) + 1), vocab, "abc")


def test_context_order_counts_seen_contexts(char_data):
    vocab, ids = char_data
    lm = NGramLM(4).fit(ids, len(vocab))
    test = vocab.encode("the qat")
    got = lm.context_order(test)
    # position 0 follows the padding, seen at the start of training ("<s><s><s>" before "t")
    assert got[0] == 4
    assert got[4] == 4 and got[5] == 1 and got[6] == 2  # "the" then "q" unseen: "q" resets the context
    assert (got >= 1).all() and (got <= 4).all()
