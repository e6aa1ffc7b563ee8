"""labkit.embeddings against gensim (vocabulary, subsampling, noise, evaluators) and by hand."""
import itertools

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors, Word2Vec

from labkit import embeddings as E

TOY = [["the", "cat", "sat", "on", "the", "mat"], ["the", "dog", "sat", "on", "the", "log"],
       ["a", "cat", "and", "a", "dog"], ["the", "end"]] * 3


def _gensim_vocab(sentences, min_count=1, sample=1e-3):
    m = Word2Vec(vector_size=4, min_count=min_count, sample=sample, sg=1, negative=5, workers=1, seed=0)
    m.build_vocab(sentences)
    return m


def test_vocab_equals_gensim_vocabulary_and_counts():
    v = E.Vocab.build(TOY, min_count=3)
    m = _gensim_vocab(TOY, min_count=3)
    assert set(v.words) == set(m.wv.index_to_key)
    assert {w: int(c) for w, c in zip(v.words, v.counts)} == {w: m.wv.get_vecattr(w, "count") for w in v.words}
    assert list(v.counts) == sorted(v.counts, reverse=True)
    assert [len(s) for s in v.encode([["the", "zebra", "cat"]])] == [2]  # unknown words dropped


def test_vocab_validates_input():
    with pytest.raises(TypeError, match="tokenised sentences"):
        E.Vocab.build(["a plain string"])
    with pytest.raises(ValueError, match="min_count"):
        E.Vocab.build(TOY, min_count=0)
    with pytest.raises(ValueError, match="lower min_count"):
        E.Vocab.build(TOY, min_count=1000)


def test_keep_probabilities_equal_gensim_sample_int():
    sents = [[f"w{i}"] * (i + 1) for i in range(200)] + [["the"] * 3000]
    v = E.Vocab.build(sents, min_count=1)
    m = _gensim_vocab(sents, sample=1e-3)
    ours = E.keep_probabilities(v.counts, 1e-3)
    theirs = np.array([m.wv.get_vecattr(w, "sample_int") / 2**32 for w in v.words])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert ours[0] < 0.2 and ours[-1] == 1.0  # frequent words dropped, rare kept
    np.testing.assert_array_equal(E.keep_probabilities(v.counts, 0), 1.0)
    with pytest.raises(ValueError, match="frequency threshold"):
        E.keep_probabilities(v.counts, 5)


def test_noise_distribution_equals_gensim_cum_table():
    sents = [[f"w{i}"] * (i + 1) for i in range(100)]
    v = E.Vocab.build(sents, min_count=1)
    m = _gensim_vocab(sents)
    gensim_p = np.diff(np.concatenate([[0], m.cum_table])) / m.cum_table[-1]
    order = [m.wv.key_to_index[w] for w in v.words]
    np.testing.assert_allclose(E.noise_distribution(v.counts), gensim_p[order], atol=1e-8)


def test_skipgram_pairs_window_and_boundaries():
    docs = [np.array([0, 1, 2, 3]), np.array([4, 5])]
    c, x = E.skipgram_pairs(docs, window=5, rng=np.random.default_rng(0))
    pairs = set(zip(c.tolist(), x.tolist()))
    assert (3, 4) not in pairs and (4, 3) not in pairs  # never across documents
    assert all((b, a) in pairs for a, b in pairs if abs(a - b) == 1)  # neighbours always seen
    # The shrunk window b ~ U{1..w} sees offset d with probability (w - d + 1) / w.
    rng = np.random.default_rng(1)
    n, w = 20000, 4
    c, x = E.skipgram_pairs([np.arange(n)], window=w, rng=rng)
    freq = np.bincount(np.abs(c - x), minlength=w + 1)[1:] / (2 * n)
    np.testing.assert_allclose(freq, [(w - d + 1) / w for d in range(1, w + 1)], atol=0.01)


def test_subsampling_drops_frequent_words():
    # Word 0 is 8% of the text (subsampled), word 1 is rare (always kept), the rest are fillers.
    ids = np.concatenate([[0] * 9000, [1] * 100, np.arange(2, 100_002)])
    keep = E.keep_probabilities(np.bincount(ids), 1e-3)
    assert keep[0] < 0.15 and keep[1] == 1.0
    # With window 1 every kept token is the centre of two pairs (one at each document end).
    c, _ = E.skipgram_pairs([np.random.default_rng(0).permutation(ids)], 1, np.random.default_rng(0), keep)
    assert (c == 1).sum() in (199, 200)
    assert (c == 0).sum() / 2 == pytest.approx(9000 * keep[0], rel=0.1)


def test_sgns_loss_and_gradient_by_hand():
    torch.manual_seed(0)
    m = E.SkipGramNS(7, 5, sparse=False)
    torch.nn.init.normal_(m.out.weight)
    c, o, neg = torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([[5, 6, 0], [1, 1, 3]])
    loss = m(c, o, neg)
    u, v, vn = m.inp.weight[c], m.out.weight[o], m.out.weight[neg]
    sig = torch.sigmoid
    by_hand = -torch.log(sig((u * v).sum(-1))) - torch.log(sig(-(vn @ u.unsqueeze(-1)).squeeze(-1))).sum(-1)
    torch.testing.assert_close(loss, by_hand)
    loss.sum().backward()
    # d loss / d u_c = (sigma(u.v) - 1) v + sum_k sigma(u.v_k) v_k
    g0 = (sig(u[0] @ v[0]) - 1) * v[0] + (sig(vn[0] @ u[0])[:, None] * vn[0]).sum(0)
    torch.testing.assert_close(m.inp.weight.grad[1], g0.detach())


def test_train_sgns_learns_two_topics():
    rng = np.random.default_rng(0)
    animals, tools = ["cat", "dog", "cow", "pig", "hen"], ["saw", "axe", "drill", "nail", "screw"]
    sents = [list(rng.choice(animals if i % 2 else tools, 12)) for i in range(400)]
    v = E.Vocab.build(sents, min_count=1)
    threads = torch.get_num_threads()
    res = E.train_sgns(v.encode(sents), v, dim=16, window=3, negative=3, epochs=3, sample=0,
                       batch_size=256, progress=False, seed=0)
    assert torch.get_num_threads() == threads  # training runs on one thread, then restores
    wv = res.vectors
    within = np.mean([wv.similarity(a, b) for a, b in itertools.combinations(animals, 2)])
    across = np.mean([wv.similarity(a, b) for a in animals for b in tools])
    assert res.losses[-1] < res.losses[0] and within > across + 0.5


def test_cooccurrence_equals_a_plain_loop():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 6, size=n) for n in (15, 3, 9)]
    x = E.cooccurrence(docs, 6, window=3).toarray()
    ref = np.zeros((6, 6))
    for d in docs:
        for i in range(len(d)):
            for j in range(max(0, i - 3), min(len(d), i + 4)):
                if j != i:
                    ref[d[i], d[j]] += 1 / abs(i - j)
    np.testing.assert_allclose(x, ref)
    np.testing.assert_allclose(E.cooccurrence(docs, 6, 3, distance_weighting=False).sum(),
                               sum(2 * sum(min(3, len(d) - 1 - i) for i in range(len(d))) for d in docs))
    with pytest.raises(ValueError, match="ids must lie"):
        E.cooccurrence(docs, 3)


def test_glove_weight_loss_and_training():
    np.testing.assert_allclose(E.glove_weight(np.array([10.0, 100.0, 1e4]), 100, 0.75), [0.1**0.75, 1, 1])
    torch.testing.assert_close(E.glove_weight(torch.tensor([50.0]), 100), torch.tensor([0.5**0.75]))
    m = E.GloVe(4, 3)
    i, j = torch.tensor([0, 1]), torch.tensor([2, 3])
    lx, f = torch.tensor([0.3, 1.2]), torch.tensor([0.5, 1.0])
    pred = (m.w.weight[i] * m.w_ctx.weight[j]).sum(-1) + m.b.weight[i, 0] + m.b_ctx.weight[j, 0]
    torch.testing.assert_close(m(i, j, lx, f), f * (pred - lx) ** 2)
    # A tiny corpus: the fit must drive the weighted loss down.
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 20, 50) for _ in range(20)]
    v = E.Vocab.build([[str(t) for t in d] for d in docs], min_count=1)
    docs = v.encode([[str(t) for t in d] for d in docs])
    res = E.train_glove(E.cooccurrence(docs, len(v), 5), v, dim=8, epochs=15, x_max=10, progress=False)
    assert res.losses[-1] < 0.5 * res.losses[0]


def _planted_vectors(seed=0):
    """Vectors where country -> capital is roughly one offset: some analogies right, some wrong."""
    rng = np.random.default_rng(seed)
    countries = ["greece", "france", "japan", "china", "egypt", "peru", "chile", "spain"]
    capitals = ["athens", "paris", "tokyo", "beijing", "cairo", "lima", "santiago", "madrid"]
    offset = rng.normal(size=20)
    words = countries + capitals + [f"x{i}" for i in range(30)]
    vec = rng.normal(size=(len(words), 20))
    for k in range(len(countries)):
        vec[len(countries) + k] = vec[k] + offset + rng.normal(scale=1.2, size=20)
    quads = [(capitals[i], countries[i], capitals[j], countries[j])
             for i in range(8) for j in range(8) if i != j]
    return words, vec.astype(np.float32), quads


def test_analogies_equal_gensim_evaluate_word_analogies(tmp_path):
    words, vec, quads = _planted_vectors()
    kv = KeyedVectors(vector_size=vec.shape[1])
    kv.add_vectors(words, vec)
    quads = quads + [("athens", "greece", "berlin", "germany")]  # out of vocabulary: skipped
    f = tmp_path / "q.txt"
    f.write_text(": capital-common-countries\n" + "\n".join(" ".join(q).title() for q in quads) + "\n")
    score, sections = kv.evaluate_word_analogies(str(f))
    a, b, c, d = zip(*quads)
    ours = E.evaluate_analogies(E.WordVectors.from_gensim(kv), a, b, c, d)
    assert 0 < ours["accuracy"] < 1 and ours["n"] == len(quads) - 1
    assert ours["accuracy"] == pytest.approx(score)
    assert ours["correct"] == len(sections[-1]["correct"])


def test_similarity_equals_gensim_evaluate_word_pairs(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    vec = rng.normal(size=(40, 10)).astype(np.float32)
    kv = KeyedVectors(vector_size=10)
    kv.add_vectors(words, vec)
    pairs = [(f"W{rng.integers(45)}", f"w{rng.integers(40)}", float(rng.uniform(0, 10))) for _ in range(60)]
    f = tmp_path / "pairs.tsv"
    f.write_text("\n".join(f"{a}\t{b}\t{s}" for a, b, s in pairs) + "\n")
    _, spearman, oov = kv.evaluate_word_pairs(str(f))
    a, b, s = zip(*pairs)
    ours = E.evaluate_similarity(E.WordVectors.from_gensim(kv), a, b, s)
    assert ours["spearman"] == pytest.approx(spearman.statistic, abs=1e-9)
    assert 100 * (1 - ours["coverage"]) == pytest.approx(oov)
    # Restricting to a shared vocabulary drops the pairs outside it.
    assert E.evaluate_similarity(E.WordVectors.from_gensim(kv), a, b, s, vocab=words[:20])["n"] < ours["n"]


def test_word_vectors_neighbours_and_errors():
    wv = E.WordVectors(["a", "b", "c"], np.array([[1.0, 0], [0.9, 0.1], [0, 1]]))
    assert wv.most_similar("a", topn=1)[0][0] == "b"
    assert wv.most_similar(np.array([0.0, 1.0]), topn=1)[0][0] == "c"
    assert wv.similarity("a", "c") == pytest.approx(0.0)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        wv["zebra"]
    with pytest.raises(ValueError, match="one vector per word"):
        E.WordVectors(["a"], np.zeros((2, 3)))


def test_sgd_step_equals_autograd_sgd():
    torch.manual_seed(0)
    a, b = E.SkipGramNS(9, 6, sparse=False), E.SkipGramNS(9, 6, sparse=False)
    torch.nn.init.normal_(a.out.weight)
    b.load_state_dict(a.state_dict())
    c, o = torch.tensor([1, 2, 1, 5]), torch.tensor([3, 1, 4, 1])
    neg = torch.tensor([[5, 6, 0], [1, 1, 3], [2, 7, 8], [0, 0, 1]])  # repeated words must add up
    loss_a = a.sgd_step(c, o, neg, lr=0.1)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    loss_b = b(c, o, neg)
    loss_b.sum().backward()
    opt.step()
    torch.testing.assert_close(loss_a, loss_b.detach())
    torch.testing.assert_close(a.inp.weight, b.inp.weight)
    torch.testing.assert_close(a.out.weight, b.out.weight)


def test_glove_adagrad_step_equals_torch_adagrad():
    torch.manual_seed(0)
    a, b = E.GloVe(6, 4, sparse=False), E.GloVe(6, 4, sparse=False)
    torch.nn.init.normal_(a.b.weight)
    b.load_state_dict(a.state_dict())
    i, j = torch.tensor([0, 1, 0, 5]), torch.tensor([2, 0, 3, 5])  # row 0 twice: gradients add up
    lx, f = torch.tensor([0.3, 1.2, -0.5, 2.0]), torch.tensor([0.5, 1.0, 0.2, 0.9])
    opt = torch.optim.Adagrad(b.parameters(), lr=0.1, initial_accumulator_value=1.0, eps=1e-10)
    state = {}
    for _ in range(3):
        loss_a = a.adagrad_step(i, j, lx, f, 0.1, state)
        loss_b = b(i, j, lx, f)
        opt.zero_grad()
        loss_b.sum().backward()
        opt.step()
        torch.testing.assert_close(loss_a, loss_b.detach())
    for name in ("w", "w_ctx", "b", "b_ctx"):
        torch.testing.assert_close(getattr(a, name).weight, getattr(b, name).weight)


def test_noise_table_matches_the_distribution():
    p = E.noise_distribution(np.array([1000, 300, 50, 7, 1]))
    table = E.noise_table(p, size=100_000)
    assert len(table) == 100_000
    np.testing.assert_allclose(np.bincount(table.numpy(), minlength=5) / 100_000, p, atol=1e-5)
    with pytest.raises(ValueError, match="probability vector"):
        E.noise_table(np.array([0.5, 0.6]))


def test_validation_half_is_a_fixed_disjoint_split_of_word_pairs():
    from labkit import data

    ds = data.load("simlex999")
    m = E.validation_half(ds["word1"], ds["word2"])
    assert m.dtype == bool and len(m) == len(ds["word1"]) == 999
    assert 0.4 < m.mean() < 0.6  # about half each way
    np.testing.assert_array_equal(m, E.validation_half(ds["word1"], ds["word2"]))  # the same every call
    key = lambda a, b: tuple(sorted((a.lower(), b.lower())))  # noqa: E731
    val = {key(a, b) for a, b, v in zip(ds["word1"], ds["word2"], m) if v}
    test = {key(a, b) for a, b, v in zip(ds["word1"], ds["word2"], m) if not v}
    assert val and test and not val & test
    # a pair in either order, in any case, lands in the same half
    assert E.validation_half(["Car", "automobile"], ["automobile", "car"]).tolist() == [True, True]
    with pytest.raises(ValueError, match="same length"):
        E.validation_half(["a"], [])
