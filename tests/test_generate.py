"""labkit.generate: our processors and decoding loops give exactly what transformers gives."""
import threading

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TextIteratorStreamer
from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from labkit import generate as G


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tok):
    """A random 2-layer llama over SmolLM2's first 1,000 token ids; a large init makes it peaked."""
    cfg = LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, initializer_range=0.3,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 2
    return model


def prompts(n=4, vocab=1000):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, vocab, (1, int(torch.randint(2, 9, (1,), generator=g))), generator=g) for _ in range(n)]


def hf(model, ids, **kw):
    with torch.inference_mode():
        return model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=2, **kw)


def test_processors_equal_transformers():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 500, generator=g) * 3
    ids = torch.randint(0, 500, (64, 30), generator=g)
    assert torch.equal(G.apply_temperature(scores, 0.7), TemperatureLogitsWarper(0.7)(ids, scores))
    for k in (1, 5, 50, 600):
        assert torch.equal(G.top_k_filter(scores, k), TopKLogitsWarper(k)(ids, scores))
    for p in (0.05, 0.5, 0.9, 0.99, 1.0):
        assert torch.equal(G.top_p_filter(scores, p), TopPLogitsWarper(p)(ids, scores))
    assert torch.equal(G.top_p_filter(scores, 0.01, min_tokens_to_keep=3),
                       TopPLogitsWarper(0.01, min_tokens_to_keep=3)(ids, scores))
    for pen in (0.8, 1.3):
        assert torch.equal(G.apply_repetition_penalty(scores, ids, pen),
                           RepetitionPenaltyLogitsProcessor(pen)(ids, scores.clone()))


def test_processors_values_and_errors():
    p = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    assert torch.isinf(G.top_p_filter(p, 0.7)).tolist() == [[False, False, True]]
    assert torch.isinf(G.top_p_filter(p, 0.5)).tolist() == [[False, True, True]]  # 0.5 alone reaches p
    assert torch.isinf(G.top_k_filter(torch.tensor([[1.0, 1.0, 0.0]]), 1)).tolist() == [[False, False, True]]  # ties kept
    with pytest.raises(ValueError, match="temperature"):
        G.apply_temperature(p, 0.0)
    with pytest.raises(ValueError, match="top_k"):
        G.top_k_filter(p, 0)
    with pytest.raises(ValueError, match="top_p"):
        G.top_p_filter(p, 1.5)
    with pytest.raises(ValueError, match="input_ids"):
        G.generate(None, torch.zeros(3, dtype=torch.long))


def test_greedy_equals_hf_with_and_without_cache(tiny):
    for ids in prompts():
        ref = hf(tiny, ids, max_new_tokens=16, do_sample=False)[0].tolist()
        for use_cache in (True, False):
            out = G.generate(tiny, ids, max_new_tokens=16, use_cache=use_cache)
            assert ids[0].tolist() + out.new_tokens[0] == ref


@pytest.mark.parametrize("settings", [dict(temperature=0.7), dict(top_k=10), dict(top_p=0.8),
                                      dict(temperature=1.3, top_k=20, top_p=0.9, repetition_penalty=1.3)])
def test_sampling_equals_hf_under_the_same_seed(tiny, settings):
    for i, ids in enumerate(prompts(3)):
        torch.manual_seed(i)
        # generate() fills unset knobs with defaults (top_k=50!): switch them off explicitly.
        ref = hf(tiny, ids.repeat(3, 1), max_new_tokens=12, do_sample=True, **{"top_k": 0, **settings})
        torch.manual_seed(i)
        out = G.generate(tiny, ids.repeat(3, 1), max_new_tokens=12, do_sample=True, **settings)
        assert out.sequences[:, :ref.shape[1]].tolist() == ref.tolist()


@pytest.mark.parametrize("num_beams,length_penalty,early_stopping",
                         [(2, 1.0, False), (3, 0.5, True), (4, 2.0, "never"), (4, -1.0, False)])
def test_beam_search_equals_hf(tiny, num_beams, length_penalty, early_stopping):
    for ids in prompts(3):
        ref = hf(tiny, ids, max_new_tokens=10, do_sample=False, num_beams=num_beams,
                 length_penalty=length_penalty, early_stopping=early_stopping)
        out = G.beam_search(tiny, ids, num_beams=num_beams, max_new_tokens=10, length_penalty=length_penalty,
                            early_stopping=early_stopping)
        assert out.best == ref[0].tolist()
        assert out.scores == sorted(out.scores, reverse=True)


def test_stop_strings_equal_hf(tiny, tok):
    ids = prompts(1)[0]
    free = G.generate(tiny, ids, max_new_tokens=12).new_tokens[0]
    text = tok.decode(free)
    start = len(tok.decode(free[:4]))
    stop = text[start:start + 3]  # three characters from the middle of the continuation
    assert stop
    ref = hf(tiny, ids, max_new_tokens=12, do_sample=False, stop_strings=[stop], tokenizer=tok)[0].tolist()
    out = G.generate(tiny, ids, max_new_tokens=12, stop=[stop], tokenizer=tok)
    assert ids[0].tolist() + out.new_tokens[0] == ref
    assert out.stopped_by == ["stop"] and stop in tok.decode(out.new_tokens[0])
    assert G.cut_at_stop("Paris.\nQ:", ["\n"]) == "Paris."
    with pytest.raises(ValueError, match="tokenizer"):
        G.generate(tiny, ids, stop=["x"])


def test_stream_equals_decode_and_text_iterator_streamer(tiny, tok):
    ids = prompts(1)[0]
    torch.manual_seed(3)
    pieces = list(G.stream(tiny, tok, ids, max_new_tokens=12, do_sample=True, temperature=0.9))
    torch.manual_seed(3)
    out = G.generate(tiny, ids, max_new_tokens=12, do_sample=True, temperature=0.9)
    assert "".join(pieces) == tok.decode(out.new_tokens[0], skip_special_tokens=True)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    torch.manual_seed(3)
    th = threading.Thread(target=hf, args=(tiny, ids), kwargs=dict(max_new_tokens=12, do_sample=True,
                                                                   temperature=0.9, top_k=0, streamer=streamer))
    th.start()
    theirs = "".join(streamer)
    th.join()
    assert "".join(pieces) == theirs


def test_shared_prefix_cache_gives_the_same_tokens(tiny):
    prefix, rest = torch.tensor([[5, 6, 7, 8, 9]]), torch.tensor([[10, 11]])
    cache = G.new_cache(tiny)
    with torch.inference_mode():
        tiny(input_ids=prefix, past_key_values=cache, use_cache=True)
    full = torch.cat([prefix, rest], dim=1)
    a = G.generate(tiny, full, max_new_tokens=8, past_key_values=cache)
    b = G.generate(tiny, full, max_new_tokens=8)
    assert a.new_tokens == b.new_tokens
    assert cache.get_seq_length() == prefix.shape[1]  # the shared cache was not changed


def test_text_measures():
    assert G.words("The sea, the SEA!") == ["the", "sea", ",", "the", "sea", "!"]
    assert G.distinct_n(["a b a b", "a b c"], 2) == pytest.approx(3 / 5)
    assert G.distinct_n(["a b c d"], 1) == 1.0
    assert G.repetition_rate(["a b a b", "a b c"], 2) == pytest.approx((1 - 2 / 3 + 0) / 2)
    assert G.repetition_rate(["x x x x"], 1) == pytest.approx(0.75)
    with pytest.raises(TypeError):
        G.distinct_n("a b c")


def test_continuation_nats_equals_hf_loss(tiny):
    prompt, new = torch.tensor([[5, 6, 7]]), [8, 9, 10, 11]
    nats, n = G.continuation_nats(tiny, prompt, new)
    full = torch.cat([prompt, torch.tensor([new])], dim=1)
    labels = full.clone()
    labels[:, :3] = -100
    with torch.inference_mode():
        loss = tiny(input_ids=full, labels=labels).loss
    assert n == 4 and nats == pytest.approx(float(loss) * 4, rel=1e-5)


@pytest.mark.slow
def test_smollm2_greedy_and_beam_equal_hf():
    from labkit import assets

    model, tok = assets.load_model("smollm2-135m-instruct")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    ref = hf(model, ids, max_new_tokens=10, do_sample=False)[0].tolist()
    assert ids[0].tolist() + G.generate(model, ids, max_new_tokens=10).new_tokens[0] == ref
    ref = hf(model, ids, max_new_tokens=8, do_sample=False, num_beams=3, length_penalty=1.0, early_stopping=False)
    assert G.beam_search(model, ids, num_beams=3, max_new_tokens=8).best == ref[0].tolist()


def test_token_logprobs_equal_continuation_nats(tiny):
    torch.manual_seed(0)
    ids = prompts(1)[0]
    out = G.generate(tiny, ids, max_new_tokens=8, do_sample=True, temperature=1.5, top_k=5)
    nats, n = G.continuation_nats(tiny, ids, out.new_tokens[0])
    assert n == len(out.token_logprobs[0]) and -sum(out.token_logprobs[0]) == pytest.approx(nats, rel=1e-4)


def test_generate_batch_equals_one_at_a_time_chat(tiny_chat, tok):
    questions = ["What is the capital of France?", "Hi", "Name three colours, please."]
    batched = G.generate_batch(tiny_chat, tok, questions, max_new_tokens=6, batch_size=3, progress=False)
    assert batched == [G.chat(tiny_chat, tok, q, max_new_tokens=6) for q in questions]
    conversations = [[{"role": "user", "content": q}] for q in questions]  # a conversation = the same prompt
    assert G.generate_batch(tiny_chat, tok, conversations, max_new_tokens=6, progress=False) == batched
    assert tok.padding_side == "right"  # restored after the left-padded batches


def test_generate_batch_prefix_stop_ids_and_sampling(tiny_chat, tok):
    q = ["What is the capital of France?", "Hi"]
    free = G.generate_batch(tiny_chat, tok, q, max_new_tokens=8, prefix='{"', progress=False)
    assert all(a.startswith('{"') for a in free)
    stop = free[0][2:5]  # a string the first reply is known to contain after the prefix
    cut = G.generate_batch(tiny_chat, tok, q, max_new_tokens=8, prefix='{"', stop=[stop], progress=False)
    assert cut[0] == free[0][:free[0].index(stop, 2) + len(stop)].strip()
    ids = G.generate_batch(tiny_chat, tok, q, max_new_tokens=8, return_ids=True, progress=False)
    assert all(isinstance(t, int) for row in ids for t in row) and all(tok.eos_token_id not in row for row in ids)
    seen = []

    def seeded(start, width):
        seen.append((start, width))
        torch.manual_seed(start)
        return {}
    runs = [G.generate_batch(tiny_chat, tok, q * 2, max_new_tokens=8, batch_size=2, progress=False, do_sample=True,
                             temperature=1.0, top_k=0, before_batch=seeded) for _ in range(2)]
    assert runs[0] == runs[1] and [s for s, _ in seen] == [0, 2, 0, 2]
    with pytest.raises(TypeError, match="list of strings"):
        G.generate_batch(tiny_chat, tok, "Hi")
