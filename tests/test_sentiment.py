"""labkit.sentiment: metrics against scikit-learn / scipy / pandas, the CSV loader's errors, baselines."""
import numpy as np
import pytest

from labkit import sentiment as S


def test_binary_report_matches_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.7, y, 1 - y)
    r = S.binary_report(y, p)
    assert r.accuracy == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert r.macro_f1 == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    np.testing.assert_array_equal(r.confusion, confusion_matrix(y, p))
    with pytest.raises(ValueError, match="0/1"):
        S.binary_report([0, 2], [0, 1])


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    x = rng.integers(0, 10, 300).astype(float)  # many ties
    y = x + rng.normal(0, 3, 300)
    assert S.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_reliability_and_ece():
    y = [1, 0, 1, 1, 0, 0]
    p = [0.9, 0.1, 0.8, 0.4, 0.6, 0.3]
    conf, acc, n = S.reliability(y, p, n_bins=5)
    assert n.sum() == 6
    # By hand: confidences 0.9, 0.9, 0.8, 0.6, 0.6, 0.7; correct 1, 1, 1, 0, 0, 1.
    ece = S.expected_calibration_error(y, p, n_bins=5)
    by_hand = (2 / 6) * abs(0 - 0.6) + (1 / 6) * abs(1 - 0.7) + (1 / 6) * abs(1 - 0.8) + (2 / 6) * abs(1 - 0.9)
    assert ece == pytest.approx(by_hand, abs=1e-12)
    assert S.expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0


def test_rolling_mean_matches_pandas():
    import pandas as pd

    v = np.random.default_rng(2).normal(size=50)
    np.testing.assert_allclose(S.rolling_mean(v, 7), pd.Series(v).rolling(7, min_periods=1).mean(), atol=1e-12)


def test_change_points_finds_known_shifts():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(0.7, 0.1, 60), rng.normal(0.3, 0.1, 60), rng.normal(0.6, 0.1, 60)])
    pts = S.change_points(v, max_points=5)
    assert len(pts) == 2
    assert abs(pts[0] - 60) <= 3 and abs(pts[1] - 120) <= 3
    assert S.change_points(rng.normal(0, 0.1, 100)) == []


def test_review_stream_follows_regimes():
    texts = [f"t{i}" for i in range(20)]
    labels = [i % 2 for i in range(20)]
    df = S.review_stream(texts, labels, days=100, per_day=20, regimes=[(0, 0.9), (50, 0.1)], seed=0)
    assert len(df) == 2000 and df["date"].is_monotonic_increasing
    assert df[df.day < 50].label.mean() > 0.8 and df[df.day >= 50].label.mean() < 0.2
    assert all(int(t[1:]) % 2 == lab for t, lab in zip(df.text, df.label))
    with pytest.raises(ValueError, match="day 0"):
        S.review_stream(texts, labels, regimes=[(5, 0.5)])


def _write(tmp_path, content, name="r.csv"):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return p


def test_load_eval_csv_good_and_bad(tmp_path):
    texts, labels = S.load_eval_csv(_write(tmp_path, "\ufefftext,label\n\"Great, really\",1\nbad,0\n"))
    assert texts == ["Great, really", "bad"] and labels == [1, 0]
    with pytest.raises(S.EvalFileError, match="no file"):
        S.load_eval_csv(tmp_path / "missing.csv")
    with pytest.raises(S.EvalFileError, match=r"lacks column\(s\) \['label'\]"):
        S.load_eval_csv(_write(tmp_path, "text,score\nok,1\n"))
    with pytest.raises(S.EvalFileError, match="no rows"):
        S.load_eval_csv(_write(tmp_path, "text,label\n"))
    with pytest.raises(S.EvalFileError, match="line 3: 'pos'"):
        S.load_eval_csv(_write(tmp_path, "text,label\nok,1\nfine,pos\n"))
    with pytest.raises(S.EvalFileError, match="empty text"):
        S.load_eval_csv(_write(tmp_path, "text,label\n ,1\n"))
    with pytest.raises(S.EvalFileError, match="language"):
        S.load_eval_csv(_write(tmp_path, "text,label\nok,1\n"), language="fr")


def test_vader_and_tfidf_baselines():
    v = S.vader_compound(["A great, moving film.", "Dull and far too long."])
    assert v[0] > 0.5 and v[1] < 0
    assert S.vader_lexicon()["good"] == pytest.approx(1.9)
    clf = S.tfidf_classifier("words+chars", language="zh").fit(
        ["质量很好", "非常满意", "很喜欢", "太差了", "很失望", "质量差"], [1, 1, 1, 0, 0, 0])
    assert clf.predict(["很满意很好"])[0] == 1 and clf.predict(["太失望了"])[0] == 0
    with pytest.raises(ValueError, match="features"):
        S.tfidf_classifier("bigrams")


def test_best_model():
    assert S.best_model({"a": 0.8, "b": 0.9, "c": 0.9}) == "b"


def test_clip_middle():
    assert S.clip_middle("abcdefghij", 6) == "abchij"
    assert S.clip_middle("abcdefghij", 7) == "abchij"[:3] + "ghij"
    assert S.clip_middle("short", 10) == "short"
    assert all(len(S.clip_middle("x" * n, 9)) == min(n, 9) for n in range(20))


# --- few-shot: SetFit's pairs, loss and loop -----------------------------------------------------------

def test_contrastive_pairs_are_setfits_pairs():
    y = np.array([0] * 6 + [1] * 4)
    pairs = S.contrastive_pairs(y, n_pairs=40, seed=3)
    i, j, t = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2]
    assert pairs.shape == (40, 3) and (i <= j).all()            # i <= j: each unordered pair once
    np.testing.assert_array_equal(t, np.tile([1.0, 0.0], 20))   # interleaved same, different
    np.testing.assert_array_equal(y[i] == y[j], t == 1)          # the targets follow the labels
    # 6*7/2 + 4*5/2 = 31 same-label pairs (self-pairs included), 24 different-label: 20 of each are
    # the first 20 of the shuffled lists, so none repeats.
    assert len({tuple(p) for p in pairs[t == 1, :2]}) == 20 and len({tuple(p) for p in pairs[t == 0, :2]}) == 20
    many = S.contrastive_pairs(y, n_pairs=100, seed=3)           # 50 > 24 different-label pairs: they cycle
    np.testing.assert_array_equal(many[1::2][:24], many[1::2][24:48])
    assert S.contrastive_pairs(y, 40, seed=3).tolist() == pairs.tolist()
    assert S.contrastive_pairs(y, 40, seed=4).tolist() != pairs.tolist()
    with pytest.raises(ValueError, match="two different labels"):
        S.contrastive_pairs([1, 1, 1], 4)


@pytest.mark.slow  # importing sentence-transformers takes several seconds
def test_cosine_pair_loss_matches_sentence_transformers():
    import torch
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(7, 16, generator=g), torch.randn(7, 16, generator=g)
    t = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    ref = CosineSimilarityLoss(model=None).compute_loss_from_embeddings([u, v], t)
    assert S.cosine_pair_loss(u, v, t).item() == pytest.approx(ref.item(), abs=1e-6)


def _tiny_bert():
    import transformers as tf

    from labkit import assets

    tok = tf.AutoTokenizer.from_pretrained(assets.resolve("minilm-l6"))
    __import__("torch").manual_seed(0)
    cfg = tf.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return tf.BertModel(cfg, add_pooling_layer=False), tok


def test_freeze_below_trains_the_top_layers_only():
    model, _ = _tiny_bert()
    top = sum(p.numel() for p in model.encoder.layer[-2:].parameters())
    assert S.freeze_below(model, 2) == top
    assert not any(p.requires_grad for p in model.embeddings.parameters())
    assert S.freeze_below(model, 0) == sum(p.numel() for p in model.parameters())


def test_contrastive_finetune_separates_the_classes():
    import torch

    model, tok = _tiny_bert()
    texts = ["good great fine", "great good nice", "nice fine good", "bad awful poor", "poor bad dull", "awful dull bad"]
    labels = [1, 1, 1, 0, 0, 0]

    def gap():  # mean cosine within a class minus across classes
        with torch.no_grad():
            e = torch.nn.functional.normalize(S.mean_pool(model, tok, texts), dim=-1)
        sim = (e @ e.T).numpy()
        same = np.equal.outer(labels, labels) & ~np.eye(6, dtype=bool)
        return sim[same].mean() - sim[~np.equal.outer(labels, labels)].mean()

    before = gap()
    hist = S.contrastive_finetune(model, tok, texts, labels, S.ContrastiveConfig(pairs=160, batch_size=8, lr=3e-3),
                                  progress=False)
    assert len(hist.step_loss) == 20 and np.mean(hist.step_loss[-5:]) < np.mean(hist.step_loss[:5])
    assert gap() > before + 0.1
    assert all(p.requires_grad for p in model.parameters())  # the freezing is undone afterwards


def test_unseen_reviews_file_is_balanced_and_distinct():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data" / "en_reviews_unseen.csv"
    texts, labels = S.load_eval_csv(path)
    assert len(texts) == 100 and sum(labels) == 50 and len(set(texts)) == 100
    from labkit import data

    train = set(data.load("movie-reviews")["train"]["text"]) | set(data.load("movie-reviews")["test"]["text"])
    assert not {t.lower() for t in texts} & train


def test_dev_reviews_file_is_balanced_and_apart_from_the_unseen_file():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "data"
    dev, dev_y = S.load_eval_csv(root / "en_reviews_dev.csv")
    unseen, _ = S.load_eval_csv(root / "en_reviews_unseen.csv")
    assert len(dev) == 80 and sum(dev_y) == 40 and len(set(dev)) == 80
    assert not {t.lower() for t in dev} & {t.lower() for t in unseen}  # the validation file is not the test file
