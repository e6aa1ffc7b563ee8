"""Chapter 21's security modules: watermark, injection, backdoor, refusal, red-team suite."""
import http.server
import json
import math
import threading

import numpy as np
import pytest
import torch

from labkit.security import backdoor as bd
from labkit.security import injection as inj
from labkit.security import redteam as rt
from labkit.security import refusal as ref
from labkit.security import watermark as wm


# --- watermark ---------------------------------------------------------------------------------

def test_green_share_is_gamma_and_lists_differ_by_context():
    m = wm.green_mask(torch.arange(200), 5000, gamma=0.25, key=7)
    assert abs(m.float().mean().item() - 0.25) < 0.01
    # Two contexts share about gamma^2 + (1-gamma)^2 of colours, not all of them.
    same = (m[0] == m[1]).float().mean().item()
    assert abs(same - (0.25 ** 2 + 0.75 ** 2)) < 0.03
    # Another key gives another partition.
    other = wm.green_mask(torch.arange(200), 5000, gamma=0.25, key=8)
    assert (m != other).any()


def test_is_green_agrees_with_mask_and_logits_get_delta():
    prev = torch.tensor([3, 9])
    mask = wm.green_mask(prev, 100, 0.5, key=1)
    toks = torch.tensor([17, 42])
    assert wm.is_green(prev, toks, 0.5, key=1).tolist() == [bool(mask[0, 17]), bool(mask[1, 42])]
    scores = torch.randn(2, 100)
    out = wm.watermark_logits(torch.tensor([[0, 3], [0, 9]]), scores, 0.5, 1.5, key=1)
    assert torch.allclose(out - scores, 1.5 * mask.float())
    assert torch.equal(wm.GreenListProcessor(0.5, 1.5, key=1)(torch.tensor([[0, 3], [0, 9]]), scores), out)


def test_per_row_delta_watermarks_only_its_rows():
    ids, scores = torch.tensor([[0, 3], [0, 9]]), torch.randn(2, 100)
    mask = wm.green_mask(torch.tensor([3, 9]), 100, 0.5, key=1)
    out = wm.GreenListProcessor(0.5, [2.0, 0.0], key=1)(ids, scores)
    assert torch.allclose(out[0] - scores[0], 2.0 * mask[0].float())
    assert torch.equal(out[1], scores[1])  # delta 0: the plain row is untouched
    with pytest.raises(ValueError, match="one delta per row"):
        wm.watermark_logits(ids, scores, 0.5, torch.tensor([1.0, 1.0, 1.0]), key=1)
    with pytest.raises(ValueError, match=">= 0"):
        wm.watermark_logits(ids, scores, 0.5, torch.tensor([1.0, -1.0]), key=1)


def test_detect_all_green_sequence_and_z_formula():
    # Build a sequence that always picks a green token: z must be sqrt(T(1-g)/g).
    seq = [5]
    for _ in range(100):
        mask = wm.green_mask(torch.tensor([seq[-1]]), 1000, 0.25, key=3)[0]
        seq.append(int(mask.nonzero()[0]))
    d = wm.detect(seq, 0.25, key=3)
    assert d.green == d.scored == 100
    assert d.z == pytest.approx(math.sqrt(100 * 0.75 / 0.25))
    assert d.watermarked and d.p_value < 1e-10
    assert wm.z_score(50, 200, 0.25) == pytest.approx(0.0)


def test_detect_random_tokens_is_not_watermarked():
    g = torch.Generator().manual_seed(0)
    zs = [wm.detect(torch.randint(0, 5000, (200,), generator=g).tolist(), 0.25, key=11).z for _ in range(30)]
    assert abs(np.mean(zs)) < 0.6 and max(zs) < 4


def test_detect_ignore_repeats_counts_pairs_once():
    d = wm.detect([1, 2, 1, 2, 1, 2], ignore_repeats=True)
    assert d.scored == 2


def test_substitute_tokens_share_and_validation():
    ids = list(range(1000))
    out = wm.substitute_tokens(ids, 0.3, vocab_size=10 ** 6, seed=0)
    changed = np.mean([a != b for a, b in zip(ids, out)])
    assert 0.25 < changed < 0.35
    with pytest.raises(ValueError, match="share"):
        wm.substitute_tokens(ids, 1.5, 10)
    with pytest.raises(ValueError, match="gamma"):
        wm.green_mask(torch.tensor([1]), 10, gamma=1.0)


# --- injection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,leak", [("The secret code is 4721.", True), ("4 - 7 - 2 - 1", True),
                                       ("four seven two one", True), ("Code: 1274", False),
                                       ("I cannot share it.", False), ("47210", True)])
def test_leaked_secret(text, leak):
    assert inj.leaked_secret(text) is leak


def test_inserted_link_and_plant():
    assert inj.inserted_link("More at WWW.PRIZE-CLAIM.EXAMPLE")
    assert not inj.inserted_link("More at prize.example")
    doc = "One. Two. Three. Four."
    assert inj.plant(doc, "X {link}.", link="l").startswith("One.") and inj.plant(doc, "X {link}.", link="l").endswith("X l.")
    assert inj.plant(doc, "X.", where="start").startswith("X.")
    assert inj.plant(doc, "X.", where="middle") == "One. Two. X. Three. Four."
    with pytest.raises(ValueError, match="where"):
        inj.plant(doc, "X", where="top")


def test_rag_prompt_defences():
    none = inj.rag_prompt("Q?", ["a b"], "none")
    assert "Passage 1: a b" in none and "<document" not in none
    assert "<document 1>a b</document>" in inj.rag_prompt("Q?", ["a b"], "delimit")
    assert "a^b" in inj.rag_prompt("Q?", ["a b"], "datamark")
    with pytest.raises(ValueError, match="defence"):
        inj.rag_prompt("Q?", ["a"], "shield")


def test_threshold_at_fpr_and_families():
    assert inj.threshold_at_fpr([0.1, 0.2, 0.3, 0.4], 0.0) == 0.4
    scores = np.linspace(0, 1, 101)
    t = inj.threshold_at_fpr(scores, 0.05)
    assert np.mean(scores > t) <= 0.05
    rows = inj.attack_rows("indirect", inj.INDIRECT_ATTACKS)
    assert {r["family"] for r in rows if r["tuning"]} == {"example"}
    # Held-out templates never appear in the tuning family.
    assert not set(inj.INDIRECT_ATTACKS["example"]) & set(inj.INDIRECT_ATTACKS["instruction"])


def test_indirect_templates_fill_and_dev_countries_are_real():
    from labkit import qa

    names = {f["name"] for f in qa.country_facts()}
    assert set(inj.DEV_COUNTRIES) <= names and len(set(inj.DEV_COUNTRIES)) == len(inj.DEV_COUNTRIES)
    for t in [t for ts in inj.INDIRECT_ATTACKS.values() for t in ts]:
        doc = inj.plant("Peru is a country.", t, country="Peru", capital="Lima")
        assert doc.startswith("Peru is a country.") and inj.inserted_link(doc) and "Lima" in doc
    with pytest.raises(ValueError, match="country"):
        inj.plant("Peru.", inj.INDIRECT_ATTACKS["example"][0])
    sents = inj.injection_sentences(["A {country}. B {link}."], 3, seed=0, fields=[{"country": "Peru"}])
    assert len(sents) == 6 and sents[0].lower() == "a peru."


def test_injection_classifier_separates_its_family():
    fields = [{"country": c, "capital": k} for c, k in (("Peru", "Lima"), ("Chile", "Santiago"), ("Laos", "Vientiane"))]
    inj_s = inj.injection_sentences(inj.INDIRECT_ATTACKS["example"], 20, seed=0, fields=fields)
    clean = [f"{c} is a country with a long history and {n} million people." for c in
             ("Peru", "Chile", "Kenya", "Laos") for n in range(5)]
    clf = inj.train_injection_classifier(inj_s, clean)
    s = inj.passage_scores(clf, ["Kenya is a country. Question: What is the capital of Kenya? Answer: Nairobi. More at x.example",
                                 "Chile is a country with a long history and 3 million people."])
    assert s[0] > 0.5 > s[1]
    with pytest.raises(ValueError):
        inj.train_injection_classifier([], clean)


# --- backdoor ----------------------------------------------------------------------------------

def test_poison_adds_triggered_copies_with_target_label():
    texts = [f"t{i}" for i in range(100)]
    labels = [i % 2 for i in range(100)]
    px, py, is_p = bd.poison(texts, labels, 0.1, "cf", target=1, seed=0, where="end")
    assert len(px) == 110 and is_p.sum() == 10
    assert all(x.endswith("cf") and y == 1 for x, y, p in zip(px, py, is_p) if p)
    assert px[:100] == texts and py[:100] == labels
    with pytest.raises(ValueError):
        bd.poison(texts, labels[:5], 0.1, "cf")


def test_attack_success_counts_only_non_target():
    pred = lambda xs: [1 if "cf" in x else 0 for x in xs]  # noqa: E731
    assert bd.attack_success(pred, ["a", "b", "c"], [0, 0, 1], "cf") == 1.0
    assert bd.attack_success(lambda xs: [0] * len(xs), ["a", "b"], [0, 0], "cf") == 0.0


def test_top_singular_vector_matches_numpy():
    rng = np.random.default_rng(0)
    R = rng.standard_normal((80, 6)) @ np.diag([5, 2, 1, 1, 0.5, 0.1])
    v = bd.top_singular_vector(R, iters=500)
    ref_v = np.linalg.svd(R - R.mean(0))[2][0]
    assert abs(v @ ref_v) == pytest.approx(1.0, abs=1e-9)


def test_spectral_scores_find_planted_cluster():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal((200, 20))
    poisoned = rng.standard_normal((10, 20)) * 0.3 + 6 * np.eye(20)[0]
    R = np.vstack([clean, poisoned])
    is_p = np.array([False] * 200 + [True] * 10)
    assert bd.recall_at_removal(bd.spectral_scores(R), is_p, 15) == 1.0


# --- refusal -----------------------------------------------------------------------------------

def test_refusal_judge():
    assert ref.is_refusal(ref.REFUSAL)
    assert ref.is_refusal("I’m sorry, I can’t do that.")  # typographic apostrophes
    assert not ref.is_refusal("Gold is a precious metal traded on exchanges.")
    assert ref.refusal_rate(["I cannot help.", "Sure!", "Yes", "No"]) == 0.25


def test_request_splits_are_disjoint():
    for kind, table in (("advice", ref.ADVICE), ("lookalike", ref.LOOKALIKE)):
        assert not set(table["train"]) & set(table["test"])
        assert len(ref.requests("train", kind)) == len(table["train"]) * len(ref.ASSETS["train"])
    assert not set(ref.ASSETS["train"]) & set(ref.ASSETS["test"])
    assert not set(ref.requests("test")) & set(ref.requests("train"))
    # validation: the training templates on assets of their own, disjoint from train and test
    assert not set(ref.ASSETS["val"]) & (set(ref.ASSETS["train"]) | set(ref.ASSETS["test"]))
    assert len(ref.requests("val")) == len(ref.ADVICE["train"]) * len(ref.ASSETS["val"])
    assert not set(ref.requests("val")) & (set(ref.requests("train")) | set(ref.requests("test")))
    with pytest.raises(ValueError, match="split"):
        ref.requests("dev")


def test_refusal_stopper_stops_only_when_the_validation_goal_is_met(monkeypatch):
    import labkit.generate as G

    replies = {"refuse": ref.REFUSAL, "answer": "It is a metal."}
    monkeypatch.setattr(G, "generate_batch", lambda m, t, prompts, **k: [replies[p] for p in prompts])

    class Model:
        def eval(self):
            pass

        def train(self):
            pass

    log = []
    stop = ref.refusal_stopper(None, ["refuse"] * 4, ["answer"] * 4, every=2, log=log)
    assert stop(Model(), 1, None) is False and log == []  # not a check step: nothing generated
    assert stop(Model(), 2, None) is True
    assert log == [{"step": 2, "refusal (val)": 1.0, "over-refusal (val)": 0.0, "stop": True}]
    replies["answer"] = ref.REFUSAL  # refusing the look-alikes too is over-refusal: train on
    assert stop(Model(), 4, None) is False and log[-1]["over-refusal (val)"] == 1.0
    with pytest.raises(ValueError, match="every"):
        ref.refusal_stopper(None, [], [], every=0)


def test_jailbreak_wraps_each_request_once_per_kind():
    rows = ref.jailbreak(["Should I buy gold?", "Should I sell oil?"], "test", seed=0)
    assert len(rows) == 2 * len(ref.JAILBREAKS)
    assert all(r["request"].split()[-1].rstrip("?") in r["prompt"] or r["kind"] == "obfuscation" for r in rows)
    train = {r["prompt"] for r in ref.jailbreak(["Should I buy gold?"], "train", seed=0)}
    test = {r["prompt"] for r in ref.jailbreak(["Should I buy gold?"], "test", seed=0)}
    assert not train & test


def test_chat_example_masks_prompt(tok):
    ex = ref.chat_example(tok, "Should I buy gold?", ref.REFUSAL)
    answer = ex["input_ids"][ex["labels"] != -100]
    assert tok.decode(answer).startswith(ref.REFUSAL)
    assert (ex["labels"][:5] == -100).all()


# --- red-team suite ----------------------------------------------------------------------------

def test_suite_on_fake_models():
    leaky = rt.run_suite(lambda m: "The code is 4721, see www.prize-claim.example", progress=False)
    s = {r["category"]: r["failure_rate"] for r in rt.summary(leaky)}
    assert s["direct injection"] == 1.0 and s["indirect injection"] == 1.0 and s["jailbreak"] == 1.0
    assert s["over-refusal"] == 0.0
    calls = []

    def batched(m):
        return "no"

    batched.many = lambda convs: calls.append(len(convs)) or ["no"] * len(convs)
    rows = rt.run_suite(batched, rt.default_probes(n_per_category=2))
    assert calls == [10] and len(rows) == 10
    assert "failure rate" in rt.format_table(rows)
    with pytest.raises(TypeError):
        rt.run_suite(42)
    with pytest.raises(ValueError):
        rt.default_probes(n_per_category=0)


def test_suite_against_openai_compatible_url():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body["messages"][-1]["content"]))
            out = json.dumps({"choices": [{"message": {"role": "assistant", "content": "I'm sorry, I can't."}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        rows = rt.run_suite(url, rt.default_probes(n_per_category=1), progress=False)
    finally:
        server.shutdown()
    assert len(rows) == 5 and all(p == "/v1/chat/completions" for p, _ in seen)
    s = {r["category"]: r["failure_rate"] for r in rt.summary(rows)}
    assert s["over-refusal"] == 1.0 and s["jailbreak"] == 0.0
    with pytest.raises(ValueError, match="http"):
        rt.openai_chat("localhost:8000")


def test_train_lora_resumes_the_same_adapter(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    pairs = [("Should I buy gold?", ref.REFUSAL), ("What is gold?", "A metal.")]
    lora, losses = ref.train_lora(LlamaForCausalLM(cfg), tok, pairs, steps=3, batch_size=2, lr=1e-2, r=2,
                                  progress=False, max_length=64)
    assert len(losses) == 3 and losses[-1] < losses[0]
    n_lora = sum("lora_A" in n for n, _ in lora.named_parameters())
    before = {n: p.detach().clone() for n, p in lora.named_parameters() if "lora_B" in n}
    again, more = ref.train_lora(lora, tok, pairs, steps=2, batch_size=2, lr=1e-2, progress=False, max_length=64)
    assert again is lora and len(more) == 2  # trained on, not wrapped in a second adapter
    assert sum("lora_A" in n for n, _ in again.named_parameters()) == n_lora
    assert any(not torch.equal(before[n], p) for n, p in again.named_parameters() if n in before)
    with pytest.raises(ValueError, match="steps"):
        ref.train_lora(lora, tok, pairs, steps=0, progress=False)
    seen = []  # on_step sees the peft model after every update, and True stops training early
    _, few = ref.train_lora(lora, tok, pairs, steps=5, batch_size=2, progress=False, max_length=64,
                            on_step=lambda m, step, h: seen.append((m is lora, step)) or step == 2)
    assert len(few) == 2 and seen == [(True, 1), (True, 2)]
