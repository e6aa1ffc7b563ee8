"""Tests of labkit.align: the losses against their formulas (and TRL), the data builders, the toy RL loop."""
import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F

from labkit.align import arithmetic as ar
from labkit.align import lm as alm
from labkit.align.objectives import (bradley_terry_loss, dpo_loss, first_scored, group_advantages, grpo_loss, kl_k3,
                                     kl_penalised_rewards, pass_at_k, ppo_loss, sequence_logprobs, token_logprobs)
from labkit.align.preferences import build_pairs, capital_questions, is_correct, normalise
from labkit.gpt import GPT, GPTConfig, to_hf


def tiny_gpt(seed=0, vocab=14):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()


# --- objectives -----------------------------------------------------------------------------------

def test_bradley_terry_is_minus_log_sigmoid_of_margin():
    rc, rr = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    expected = -sum(math.log(1 / (1 + math.exp(-(c - r)))) for c, r in zip(rc.tolist(), rr.tolist())) / 3
    assert float(bradley_terry_loss(rc, rr)) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="must match"):
        bradley_terry_loss(rc, rr[:2])


def test_dpo_loss_formula_and_rewards():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, generator=g) for _ in range(4))
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.3)
    z = 0.3 * ((pc - rc) - (pr - rr))
    assert float(loss) == pytest.approx(float(-torch.log(torch.sigmoid(z)).mean()), abs=1e-6)
    assert torch.allclose(chosen - rejected, z)
    zero = torch.zeros(3)
    assert float(dpo_loss(zero, zero, zero, zero)[0]) == pytest.approx(math.log(2), abs=1e-7)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(zero, zero, zero, zero, beta=0)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    adv = group_advantages(r, 4)
    g1 = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert torch.allclose(adv[:4], (g1 - 0.75) / (g1.std() + 1e-4))
    assert torch.all(adv[4:] == 0)  # a group with equal rewards carries no signal
    assert torch.allclose(group_advantages(r, 4, scale=False)[:4], g1 - 0.75)
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(r, 3)


def test_grpo_loss_matches_per_token_formula_and_clips():
    g = torch.Generator().manual_seed(1)
    lp, old, ref = (torch.randn(3, 4, generator=g) * 0.3 for _ in range(3))
    adv = torch.tensor([1.0, -0.5, 2.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    got = grpo_loss(lp, old, adv, mask, ref, beta=0.1, kl_ratio_correction=False)
    ratio = (lp - old).exp()
    rows = []
    for i in range(3):
        terms = []
        for t in range(4):
            if mask[i, t]:
                a = adv[i]
                surr = min(ratio[i, t] * a, ratio[i, t].clamp(0.8, 1.2) * a)
                d = ref[i, t] - lp[i, t]
                terms.append(-surr + 0.1 * (d.exp() - d - 1))
        rows.append(sum(terms) / len(terms))
    assert float(got) == pytest.approx(float(sum(rows) / 3), abs=1e-6)
    # Clipping: a ratio already above 1 + eps with a positive advantage gives no gradient.
    x = torch.full((1, 1), 0.5, requires_grad=True)
    grpo_loss(x, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1)).backward()
    assert float(x.grad) == 0.0


def test_kl_k3_is_nonnegative_and_unbiased():
    assert torch.all(kl_k3(torch.randn(100), torch.randn(100)) >= 0)
    p, q = torch.tensor([0.7, 0.3]), torch.tensor([0.4, 0.6])
    exact = float((p * (p / q).log()).sum())  # KL(p || q), expectation of k3 under p
    est = float((p * kl_k3(p.log(), q.log())).sum())
    assert est == pytest.approx(exact, abs=1e-6)


def test_kl_penalised_rewards_and_ppo_loss():
    lp, ref = torch.tensor([[0.0, -1.0, -2.0]]), torch.tensor([[-0.5, -1.0, -1.0]])
    r = kl_penalised_rewards(torch.tensor([3.0]), lp, ref, torch.tensor([[1.0, 1.0, 0.0]]), kl_coef=0.2)
    assert torch.allclose(r, torch.tensor([[-0.1, 3.0, 0.0]]))
    adv = torch.tensor([[1.0, -1.0]])
    # ratio e^0.5 > 1.2 on a positive advantage is clipped at 1.2; ratio e^-0.5 < 0.8 on a negative one at 0.8.
    val = ppo_loss(torch.tensor([[0.5, -0.5]]), torch.zeros(1, 2), adv, torch.ones(1, 2))
    assert float(val) == pytest.approx(-(1.2 - 0.8) / 2, abs=1e-6)


def test_pass_at_k_matches_combinatorics():
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


@pytest.mark.slow  # imports transformers' GPT-2 (seconds on a busy machine)
def test_sequence_logprobs_gpt_and_hugging_face_agree():
    model = tiny_gpt()
    ids = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]])
    logits, _ = model(ids)
    lp = F.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    expected = (lp * mask[:, 1:]).sum(1)
    with torch.no_grad():
        assert torch.allclose(sequence_logprobs(model, ids, mask), expected, atol=1e-5)
        hf = to_hf(model)  # the same weights in Hugging Face's GPT-2: the HF code path of token_logprobs
        assert torch.allclose(sequence_logprobs(hf, ids, mask, torch.ones_like(ids)), expected, atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        sequence_logprobs(model, ids, mask[:, :3])


# --- preference data --------------------------------------------------------------------------------

def test_capital_split_is_fixed_and_disjoint():
    splits = {s: capital_questions(s) for s in ("train", "validation", "test")}
    names = [set(q["country"] for q in qs) for qs in splits.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    total = sum(map(len, names))
    assert 0.5 < len(names[0]) / total < 0.7
    assert capital_questions("test") == splits["test"]
    with pytest.raises(ValueError, match="unknown split"):
        capital_questions("dev")


def test_is_correct_and_normalise():
    assert normalise("São Tomé") == "sao tome"
    assert is_correct("It is Bogotá.", "Bogota") and not is_correct("Parisian", "Paris")


def test_build_pairs_kinds():
    qs = [{"prompt": f"What is the capital of {c}?", "answer": a, "country": c}
          for c, a in [("Peru", "Lima"), ("Chad", "N'Djamena"), ("Mali", "Bamako")]]
    pairs = build_pairs(qs, ["Lima.", "It is Paris.", ""], seed=0, padded_share=1.0)
    kinds = [p["kind"] for p in pairs]
    assert kinds == ["swapped", "padded", "own_wrong", "padded", "swapped", "padded"]
    for p in pairs:
        assert is_correct(p["chosen"], p["answer"]) and p["chosen"] != p["rejected"]
        if p["kind"] != "padded":
            assert not is_correct(p["rejected"], p["answer"])
    with pytest.raises(ValueError, match="model answers"):
        build_pairs(qs, ["x"])


# --- toy RL on arithmetic ---------------------------------------------------------------------------

def test_arith_tokenizer_split_and_corpus():
    tok = ar.ArithTokenizer()
    assert tok.decode(tok.encode("12+30=42!;")) == "12+30=42!;"
    with pytest.raises(ValueError, match="not in the arithmetic vocabulary"):
        tok.encode("1-2")
    s = ar.split_problems(49)
    assert len(s["train"]) + len(s["test"]) == 2500 and not set(s["train"]) & set(s["test"])
    lines = ar.corpus(s["train"], 50, 0.0, random.Random(0), bang_share=0.0)
    for line in lines:
        a, b, c = int(line[:2]), int(line[3:5]), int(line[6:-1])
        assert a + b == c


def test_correct_reward_and_sample_mask():
    assert ar.correct_reward([(1, 2), (5, 5)], ["3;", "10!!;"]).tolist() == [1.0, 1.0]
    assert ar.correct_reward([(1, 2)], ["3"]).tolist() == [0.0]  # unfinished answer
    model = tiny_gpt()
    ids, mask, texts = ar.sample(model, [(1, 2), (3, 4)], n=3, max_new=6, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (6, 12) and mask[:, :ar.PROMPT_LEN].sum() == 0
    for row, m, text in zip(ids, mask, texts):
        k = int(m.sum())
        assert len(text) == k and (";" not in text[:-1])


def test_grpo_step_improves_a_trivial_task():
    # One problem, reward for the right sum: GRPO must raise the reward of a model that already has it sometimes.
    torch.manual_seed(0)
    model, _ = ar.pretrain(ar.corpus([(1, 2)], 64, 0.5, random.Random(0)), steps=40, batch_size=32, progress=False,
                           config=GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=2, n_embd=16))
    ref = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    first = [ar.grpo_step(model, ref, opt, [(1, 2)] * 4, group_size=8, generator=g)["reward"] for _ in range(3)]
    last = [ar.grpo_step(model, ref, opt, [(1, 2)] * 4, group_size=8, generator=g)["reward"] for _ in range(12)][-3:]
    assert sum(last) / 3 > sum(first) / 3


def test_reward_model_learns_the_labeller():
    torch.manual_seed(0)
    pairs = ar.labeller_pairs([(1, 2), (3, 4)], 64, bang_weight=0.0, rng=random.Random(0))
    assert all(int(c[6:].split("!")[0].rstrip(";")) == int(c[:2]) + int(c[3:5]) for c, _ in pairs)
    rm = ar.GPTRewardModel(tiny_gpt())
    losses = ar.train_reward_model(rm, pairs, steps=60, batch_size=32, lr=3e-3, progress=False)
    assert losses[-1] < losses[0] and ar.reward_accuracy(rm, pairs) > 0.8


def test_train_reward_head_separates_features():
    g = torch.Generator().manual_seed(0)
    good, bad = torch.randn(40, 5, generator=g) + 1.0, torch.randn(40, 5, generator=g) - 1.0
    head, losses = alm.train_reward_head(good, bad, epochs=100)
    assert losses[-1] < 0.2 and float((head(good) > head(bad)).float().mean()) > 0.95
    with pytest.raises(ValueError):
        alm.train_reward_head(good, bad[:, :3])


def test_token_logprobs_rejects_bad_shapes():
    with pytest.raises(ValueError, match="batch, length"):
        token_logprobs(tiny_gpt(), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="start must be in 0..2"):
        token_logprobs(tiny_gpt(), torch.zeros(1, 4, dtype=torch.long), start=3)


def test_start_skips_prompt_logits_without_changing_scores():
    model, g = tiny_gpt(), torch.Generator().manual_seed(0)
    ids = torch.randint(0, 14, (3, 9), generator=g)
    mask = torch.zeros_like(ids)
    mask[0, 4:], mask[1, 6:8], mask[2, 5:] = 1, 1, 1
    assert first_scored(mask) == 3 and first_scored(torch.zeros_like(ids)) == 0
    with torch.no_grad():
        full = token_logprobs(model, ids)
        assert torch.allclose(token_logprobs(model, ids, start=3), full[:, 3:], atol=1e-6)
        assert torch.allclose(sequence_logprobs(model, ids, mask), (full * mask[:, 1:]).sum(1), atol=1e-5)


@pytest.mark.slow  # builds TRL trainers and needs SmolLM2's tokenizer (converted once, ~20 s on an empty cache)
def test_dpo_and_grpo_losses_match_trl():
    import tempfile

    import datasets
    import transformers
    from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

    from labkit import assets

    tok = transformers.AutoTokenizer.from_pretrained(str(assets.path("smollm2-135m-instruct")))
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                   tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    pol = transformers.LlamaForCausalLM(cfg).eval()
    torch.manual_seed(1)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": f"Capital of C{i}?"}],
                                      "chosen": [{"role": "assistant", "content": f"It is X{i}."}],
                                      "rejected": [{"role": "assistant", "content": "I do not know."}]}
                                     for i in range(3)])
    args = DPOConfig(output_dir=tempfile.mkdtemp(), beta=0.1, report_to=[], use_cpu=True, bf16=False,
                     per_device_train_batch_size=3, logging_strategy="no", save_strategy="no")
    tr = DPOTrainer(model=pol, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    b = tr.data_collator([tr.train_dataset[i] for i in range(3)])
    tr.model.eval()
    with torch.no_grad():
        theirs = float(tr.compute_loss(tr.model, b))
        lp = [sequence_logprobs(m, b["input_ids"], b["completion_mask"], b["attention_mask"]).chunk(2)
              for m in (tr.model, tr.ref_model)]
    assert float(dpo_loss(lp[0][0], lp[0][1], lp[1][0], lp[1][1], 0.1)[0]) == pytest.approx(theirs, abs=1e-5)
    tr.loss_types, tr.loss_weights = ["sigmoid", "sft"], [1.0, 0.5]  # DPO + 0.5 * NLL of the chosen tokens
    with torch.no_grad():
        theirs_sft = float(tr.compute_loss(tr.model, b))
    nll = float(-lp[0][0].sum() / b["completion_mask"].chunk(2)[0][:, 1:].sum())
    assert theirs_sft - theirs == pytest.approx(0.5 * nll, abs=1e-5) and nll > 1.0

    folder = tempfile.mkdtemp()
    pol.save_pretrained(folder)
    tok.save_pretrained(folder)
    gargs = GRPOConfig(output_dir=tempfile.mkdtemp(), beta=0.04, loss_type="grpo", bf16=False, num_generations=2,
                       per_device_train_batch_size=2, report_to=[], use_cpu=True, logging_strategy="no",
                       save_strategy="no")
    gtr = GRPOTrainer(model=folder, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=gargs,
                      train_dataset=datasets.Dataset.from_list([{"prompt": "1+1="}] * 2), processing_class=tok)
    gtr.model.eval()
    g = torch.Generator().manual_seed(0)
    prompt, completion = torch.randint(0, 500, (4, 3), generator=g), torch.randint(0, 500, (4, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    with torch.no_grad():
        lp = token_logprobs(gtr.model, torch.cat([prompt, completion], 1))[:, -5:]
    old, ref_lp = lp + 0.3 * torch.randn(4, 5, generator=g), lp + 0.3 * torch.randn(4, 5, generator=g)
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 2)
    inputs = {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
              "completion_mask": mask, "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref_lp}
    with torch.no_grad():
        theirs = float(gtr._compute_loss(gtr.model, inputs))
    assert float(grpo_loss(lp, old, adv, mask.float(), ref_lp, beta=0.04)) == pytest.approx(theirs, abs=1e-5)


def _tiny_lora(tok, seed=0):
    import transformers
    from peft import LoraConfig, get_peft_model

    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                   tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    base = transformers.LlamaForCausalLM(cfg)
    torch.manual_seed(seed)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                           task_type="CAUSAL_LM"))


def test_dpo_train_sft_term_is_the_mean_nll_of_the_chosen_tokens(tok):
    pairs = [{"prompt": f"Capital of C{i}?", "chosen": f"It is X{i}.", "rejected": "I do not know, sorry."}
             for i in range(4)]
    model = _tiny_lora(tok)
    batch = alm.chat_batch(tok, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    with torch.no_grad():
        nll = float(-sequence_logprobs(model, batch["input_ids"], batch["completion_mask"], batch["attention_mask"]).sum()
                    / batch["completion_mask"].sum())
    steps = []
    hist = alm.dpo_train(model, tok, pairs, steps=2, beta=0.1, lr=1e-2, batch_size=4, sft_weight=0.5, progress=False,
                         on_step=lambda step, h: steps.append((step, len(h))))
    # Step 1: the adapter is still the reference (B = 0), so the DPO part is log 2 and the rest is 0.5 * NLL.
    assert hist[0]["dpo_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert hist[0]["loss"] - hist[0]["dpo_loss"] == pytest.approx(0.5 * nll, abs=1e-5)
    assert steps == [(1, 1), (2, 2)]  # on_step sees the history so far
    plain = alm.dpo_train(_tiny_lora(tok), tok, pairs, steps=2, beta=0.1, lr=1e-2, batch_size=4, progress=False)
    assert [h["loss"] for h in plain] == [h["dpo_loss"] for h in plain]  # sft_weight 0: DPO alone
    with pytest.raises(ValueError, match="sft_weight"):
        alm.dpo_train(model, tok, pairs, steps=1, sft_weight=-1.0)
