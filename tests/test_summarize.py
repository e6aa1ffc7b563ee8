"""labkit.summarize: sentence splitting, ROUGE against rouge-score, TextRank's PageRank against networkx."""
import random

import pytest

from labkit import summarize as S

EN_TEXTS = [
    ("The cat sat on the mat.", "A cat sat on a mat."),
    ("Police killed the gunman.", "The gunman was shot dead by police."),
    ("a a a b", "a b b"),
    ("It's 3.5% in the U.S., Dr. No said!", "Dr No says the US rate is 3.5 percent."),
    ("", "nothing here"),
    ("Word", ""),
    ("Identical text here.", "Identical text here."),
]


def test_split_sentences_en():
    assert S.split_sentences("Dr. Smith arrived. He met J. R. Lee! Then? Yes.") == \
        ["Dr. Smith arrived.", "He met J. R. Lee!", "Then?", "Yes."]
    assert S.split_sentences('He said "Go." She went.') == ['He said "Go."', "She went."]
    assert S.split_sentences("It costs 3.5 dollars. OK") == ["It costs 3.5 dollars.", "OK"]
    assert S.split_sentences("   ") == []


def test_split_sentences_zh():
    assert S.split_sentences("他来了。她走了！真的吗？", "zh-char") == ["他来了。", "她走了！", "真的吗？"]
    assert S.split_sentences("没有句号", "zh-word") == ["没有句号"]
    with pytest.raises(ValueError, match="unknown lang"):
        S.split_sentences("x", "fr")


def test_tokenize_en_equals_rouge_score():
    from rouge_score import tokenize

    for a, b in EN_TEXTS:
        for text in (a, b):
            assert S.tokenize(text) == tokenize.tokenize(text, None)


@pytest.mark.slow  # loads jieba's dictionary (about 1 s, more on a busy machine)
def test_tokenize_zh():
    assert S.tokenize("我爱ＡＢＣ北京２０２６", "zh-char") == ["我", "爱", "abc", "北", "京", "2026"]
    assert S.tokenize("，。！", "zh-char") == []
    assert S.tokenize("我爱北京天安门。", "zh-word") == ["我", "爱", "北京", "天安门"]


def test_rouge_hand_values():
    # cand "the cat sat on the mat" vs ref "a cat sat on a mat": unigram overlap {cat, sat, on, mat} = 4
    s = S.rouge("The cat sat on the mat.", "A cat sat on a mat.")
    assert s["rouge1"] == S.Score(4 / 6, 4 / 6, pytest.approx(4 / 6))
    assert s["rouge2"].precision == pytest.approx(2 / 5)  # "cat sat", "sat on"
    assert s["rougeL"].recall == pytest.approx(4 / 6)
    assert S.rouge_n(["a", "a", "a", "b"], ["a", "b", "b"], 1).precision == pytest.approx(2 / 4)  # clipped
    assert S.rouge("", "x")["rouge1"].fmeasure == 0.0


@pytest.mark.slow  # imports rouge-score (and nltk): seconds on a busy machine
def test_rouge_matches_rouge_score_en():
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    rng = random.Random(0)
    words = "the a cat dog sat ran on mat 3 big".split()
    pairs = EN_TEXTS + [(" ".join(rng.choices(words, k=rng.randint(1, 15))), " ".join(rng.choices(words, k=rng.randint(1, 15))))
                        for _ in range(100)]
    for cand, ref in pairs:
        mine, lib = S.rouge(cand, ref), sc.score(ref, cand)  # rouge-score takes (target, prediction)
        for k in mine:
            for f in ("precision", "recall", "fmeasure"):
                assert getattr(mine[k], f) == pytest.approx(getattr(lib[k], f), abs=1e-12), (cand, ref, k, f)


@pytest.mark.slow  # imports rouge-score and loads jieba's dictionary
def test_rouge_zh_needs_its_tokenizer():
    from rouge_score import rouge_scorer

    cand, ref = "北京举行新年音乐会", "新年音乐会在北京举行"
    default = rouge_scorer.RougeScorer(["rouge1"]).score(ref, cand)["rouge1"]
    assert default.fmeasure == 0.0  # its tokenizer drops every Chinese character
    lib = rouge_scorer.RougeScorer(["rouge1", "rougeL"], tokenizer=S.RougeTokenizer("zh-char")).score(ref, cand)
    mine = S.rouge(cand, ref, "zh-char")
    assert mine["rouge1"].fmeasure == pytest.approx(lib["rouge1"].fmeasure)
    assert mine["rouge1"].fmeasure == pytest.approx(2 * 1 * 0.9 / 1.9)  # P = 9/9, R = 9/10 (在 is extra)
    assert mine["rougeL"].fmeasure == pytest.approx(lib["rougeL"].fmeasure)
    assert mine["rougeL"].fmeasure == pytest.approx(10 / 19)  # LCS 新年音乐会: P 5/9, R 5/10


def test_lcs_length():
    assert S.lcs_length([], ["a"]) == 0
    assert S.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook example (CLRS)


def test_pagerank_matches_networkx():
    nx = pytest.importorskip("networkx")
    rng = random.Random(1)
    n = 9
    w = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < 0.4:
                w[i][j] = w[j][i] = rng.uniform(0.1, 2.0)
    # node 8 isolated (dangling): both spread its rank uniformly
    for i in range(n):
        w[i][8] = w[8][i] = 0.0
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from((i, j, w[i][j]) for i in range(n) for j in range(i + 1, n) if w[i][j])
    ref = nx.pagerank(g, alpha=0.85, weight="weight", tol=1e-12, max_iter=1000)
    mine = S.pagerank(w, 0.85, tol=1e-13)
    assert sum(mine) == pytest.approx(1.0)
    assert max(abs(mine[i] - ref[i]) for i in range(n)) < 1e-9


def test_textrank_and_lead():
    sents = ["Cats purr softly.", "Cats and dogs play together.", "Dogs bark loudly at night.", "Rain."]
    assert S.textrank(sents, 1) == [1]  # shares words with both others
    assert S.textrank(sents, 2) == sorted(S.textrank(sents, 2))  # document order
    assert S.lead(sents, 10) == [0, 1, 2, 3]
    assert S.sentence_similarity(["a"], ["a", "b"]) == 0.0


def test_support_scores():
    src = "Marie Curie won the Nobel Prize in Physics in 1903. She was born in Warsaw."
    got = dict(S.support_scores("Curie won the Nobel Prize in 1903. She was born in Paris in 1867.", src))
    assert got["Curie won the Nobel Prize in 1903."] == 1.0
    # content tokens: born, paris, 1867 (she/was/in are stop words): only "born" is in the source
    assert got["She was born in Paris in 1867."] == pytest.approx(1 / 3)


def test_mean_rouge_validates():
    with pytest.raises(ValueError, match="as many"):
        S.mean_rouge(["a"], ["a", "b"])


@pytest.mark.slow  # parses the bundled Wikipedia dump and the People's Daily (seconds with a cold cache)
def test_offline_pairs():
    wiki = S.wiki_pairs(source_words=250)
    assert len(wiki) >= 60
    for d in wiki:
        assert 25 <= len(d["reference"].split()) <= 120
        assert d["reference"][:80] not in d["source"]  # the lead is held out of the document
        assert "'''" not in d["reference"] and "==" not in d["source"]
    zh = S.peoples_daily_pairs()
    assert len(zh) >= 800
    heads = {d["reference"] for d in zh}
    assert "李鹏在北京考察企业" in heads
    assert not any(h.startswith(("·", "—")) for h in heads)
    assert all(not d["source"].startswith(("本报", "新华社")) for d in zh[:50])  # datelines are cut
