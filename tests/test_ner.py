"""labkit.ner: spans and BIO from People's Daily tags, entity-level scores, HMM pieces, reader files."""
import itertools
import json

import numpy as np
import pytest

from labkit import ner


def test_person_runs_merge_and_places_stay_apart():
    words = ["江", "泽民", "会见", "北京", "上海", "新华社", "记者"]
    tags = ["nr", "nr", "v", "ns", "ns", "nt", "n"]
    spans = ner.word_spans(words, tags)
    assert spans == [(0, 3, "PER"), (5, 7, "LOC"), (7, 9, "LOC"), (9, 12, "ORG")]
    text = "".join(words)
    labels = ner.bio(len(text), spans)
    assert labels[:5] == ["B-PER", "I-PER", "I-PER", "O", "O"]
    assert labels[5:9] == ["B-LOC", "I-LOC", "B-LOC", "I-LOC"]  # two adjacent places stay two entities
    assert ner.bio_spans(labels) == spans
    assert ner.entities(text, labels) == [("江泽民", "PER"), ("北京", "LOC"), ("上海", "LOC"), ("新华社", "ORG")]


def test_sentences_split_and_cut():
    words = ["我", "在", "北京", "。", "他", "，", "好", "。"]
    tags = ["r", "p", "ns", "w", "r", "w", "a", "w"]
    out = ner.sentences(words, tags)
    assert [s["text"] for s in out] == ["我在北京。", "他，好。"]
    assert out[0]["spans"] == [(2, 4, "LOC")]
    cut = ner.sentences(["一二三", "，", "四五六七", "。"], ["m", "w", "m", "w"], max_chars=6)
    assert [s["text"] for s in cut] == ["一二三，", "四五六七。"]  # cut after the comma, nothing longer kept


def test_entity_prf_counts_exact_matches_only():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "B-LOC"]]  # LOC boundary wrong, one spurious LOC
    r = ner.entity_prf(gold, pred)
    assert r["micro"]["precision"] == pytest.approx(2 / 4)
    assert r["micro"]["recall"] == pytest.approx(2 / 3)
    assert r["LOC"]["f1"] == 0.0 and r["PER"]["f1"] == 1.0
    with pytest.raises(ValueError, match="sequence 0"):
        ner.entity_prf([["O"]], [["O", "O"]])


def test_entity_prf_matches_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(0)
    gold = [[str(rng.choice(ner.LABELS)) for _ in range(12)] for _ in range(50)]
    pred = [[t if rng.random() < 0.7 else str(rng.choice(ner.LABELS)) for t in g] for g in gold]
    ours = ner.entity_prf(gold, pred)
    ref = seqeval.classification_report(gold, pred, output_dict=True, zero_division=0)
    for t in ner.TYPES:
        assert ours[t]["f1"] == pytest.approx(ref[t]["f1-score"] if "f1-score" in ref[t] else ref[t]["f1"], abs=1e-12)
    assert ours["micro"]["f1"] == pytest.approx(seqeval.f1_score(gold, pred), abs=1e-12)


def test_multiset_prf_counts_repeats():
    r = ner.multiset_prf([[("北京", "LOC"), ("北京", "LOC"), ("王芳", "PER")]], [[("北京", "LOC"), ("王芳", "ORG")]])
    assert (r["precision"], r["recall"]) == (0.5, pytest.approx(1 / 3))


def test_hmm_counts_are_smoothed_probabilities():
    m = ner.hmm_counts([("北京好", ["B-LOC", "I-LOC", "O"]), ("好", ["O"])], states=["O", "B-LOC", "I-LOC"], alpha=1.0)
    assert np.allclose(np.exp(m["log_trans"]).sum(1), 1) and np.allclose(np.exp(m["log_emit"]).sum(1), 1)
    # starts: O once, B-LOC once, I-LOC never, plus alpha = 1 each -> (2, 2, 1) / 5
    assert np.allclose(np.exp(m["log_start"]), [2 / 5, 2 / 5, 1 / 5])
    assert ner.encode(m, "京x").tolist() == [m["vocab"]["京"], 0]


def test_viterbi_equals_brute_force():
    rng = np.random.default_rng(1)
    S, V = 3, 4
    ls = np.log(rng.dirichlet(np.ones(S)))
    lt = np.log(rng.dirichlet(np.ones(S), size=S))
    le = np.log(rng.dirichlet(np.ones(V), size=S))
    obs = [0, 3, 1, 2, 2]
    best = max(itertools.product(range(S), repeat=len(obs)),
               key=lambda p: ls[p[0]] + sum(lt[a, b] for a, b in zip(p, p[1:])) + sum(le[s, o] for s, o in zip(p, obs)))
    path, lp = ner.viterbi(ls, lt, le, obs)
    assert path == list(best)
    assert lp == pytest.approx(ls[best[0]] + sum(lt[a, b] for a, b in zip(best, best[1:]))
                               + sum(le[s, o] for s, o in zip(best, obs)))
    assert ner.viterbi(ls, lt, le, []) == ([], 0.0)


def test_crf_features_window():
    f = ner.crf_features("北京")
    assert f[0]["c-1"] == "<s>" and f[1]["c1"] == "</s>" and f[0]["c0c1"] == "北京" and f[0]["kind"] == "han"


def _write(tmp_path, text):
    p = tmp_path / "ner.jsonl"
    p.write_text(text, encoding="utf-8")
    return p


def test_read_ner_jsonl_good(tmp_path):
    rows = ner.read_ner_jsonl(_write(tmp_path, json.dumps({"text": "王芳在北京，北京。", "entities": [["王芳", "PER"],
                                                               ["北京", "LOC"], ["北京", "LOC"]]}, ensure_ascii=False)
                                     + "\n\n"))
    assert rows[0]["entities"] == [("王芳", "PER"), ("北京", "LOC"), ("北京", "LOC")]


@pytest.mark.parametrize("content, message", [
    ('{"text": "王芳", "entities": []}\n{"text": "x", \n', "line 2: not valid JSON"),
    ('{"text": "王芳"}\n', "line 1: missing field 'entities'"),
    ('{"text": 3, "entities": []}\n', "line 1: field 'text' must be a non-empty string"),
    ('{"text": "王芳", "entities": "王芳"}\n', "line 1: field 'entities' must be a list"),
    ('{"text": "王芳", "entities": [["王芳", "PERSON"]]}\n', "line 1: entity 0 has type 'PERSON'"),
    ('{"text": "王芳", "entities": [["李明", "PER"]]}\n', "does not occur in the text"),
    ('{"text": "王芳", "entities": [["王芳"]]}\n', "entity 0 must be a [surface, type] pair"),
    ('[1, 2]\n', "expected a JSON object"),
    ("\n\n", "has no JSON lines"),
])
def test_read_ner_jsonl_bad(tmp_path, content, message):
    with pytest.raises(ner.NerFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ner.read_ner_jsonl(_write(tmp_path, content))


def test_read_ner_jsonl_missing_and_not_utf8(tmp_path):
    with pytest.raises(ner.NerFileError, match="no file"):
        ner.read_ner_jsonl(tmp_path / "nope.jsonl")
    p = tmp_path / "gbk.jsonl"
    p.write_bytes('{"text": "王芳", "entities": []}'.encode("gbk"))
    with pytest.raises(ner.NerFileError, match="not UTF-8"):
        ner.read_ner_jsonl(p)


@pytest.mark.slow
def test_token_classifier_round_trip():
    """A tiny character BERT learns to tag one sentence, and tags map back to characters."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    text = "王芳在北京"
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(text))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex("."), behavior="isolated")])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16, num_labels=len(ner.LABELS))
    import torch

    torch.manual_seed(0)
    model = transformers.BertForTokenClassification(cfg)
    gold = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    batch = ner.encode_chars(fast, [text], [gold])
    assert batch["labels"][0, 0].item() == -100 and batch["labels"][0, 1].item() == ner.LABELS.index("B-PER")
    seen = []  # on_epoch runs after each epoch (one batch each here), with the model in eval mode
    losses = ner.train_token_classifier(model, fast, [text] * 8, [gold] * 8, epochs=40, lr=1e-2, batch_size=8,
                                        progress=False, on_epoch=lambda e: seen.append((e, model.training)))
    assert len(losses) == 40 and seen == [(e, False) for e in range(1, 41)] and not model.training
    assert losses[-1] < losses[0] / 4
    with pytest.raises(ValueError, match="epochs >= 1"):
        ner.train_token_classifier(model, fast, [text], [gold], epochs=0)
    assert ner.predict_tags(model, fast, [text]) == [gold]


def test_bio_constraints_make_viterbi_return_valid_tags():
    ls, lt = ner.bio_constraints()
    # emissions alone say O, I-PER, I-PER (invalid: I- after O); the constrained decode must start the entity with B-
    lp = np.full((3, len(ner.LABELS)), np.log(0.01))
    o, b, i = (ner.LABELS.index(t) for t in ("O", "B-PER", "I-PER"))
    lp[0, o], lp[1, i], lp[1, b], lp[2, i] = np.log(0.9), np.log(0.6), np.log(0.3), np.log(0.9)
    assert [ner.LABELS[k] for k in lp.argmax(1)] == ["O", "I-PER", "I-PER"]
    path, _ = ner.viterbi(ls, lt, lp.T, range(3))
    assert [ner.LABELS[k] for k in path] == ["O", "B-PER", "I-PER"]
    assert np.isneginf(lt[ner.LABELS.index("B-LOC"), i]) and lt[b, i] == 0.0
