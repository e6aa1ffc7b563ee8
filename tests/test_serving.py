"""labkit.serving: paged cache, continuous batching (= one-at-a-time generate), the OpenAI-compatible server
(driven by the official openai client), constrained JSON decoding and the tools."""
import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
from transformers import LlamaConfig as HFConfig, LlamaForCausalLM

from labkit import llama
from labkit.serving import constrained as C, engine as E, paged, tools as T
from labkit.serving.server import ApiError, create_app, parse_params

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- paged
def test_allocator_reuses_and_refuses_double_free():
    a = paged.BlockAllocator(2)
    b0, b1 = a.allocate(), a.allocate()
    with pytest.raises(paged.OutOfBlocks):
        a.allocate()
    a.release([b0])
    assert a.allocate() == b0  # the freed block is handed out again
    with pytest.raises(ValueError, match="double free"):
        a.release([b1, b1])


def test_paged_cache_round_trip_through_block_tables():
    c = paged.PagedKVCache(num_layers=2, num_kv_heads=1, head_dim=3, num_blocks=5, block_size=2)
    c.add("x"), c.add("y")
    assert c.grow("x", 3) and c.grow("y", 2)
    assert c.tables == {"x": [0, 1], "y": [2]}
    k = torch.arange(9.).reshape(3, 1, 3)
    c.write(1, c.slots("x", 0, 3), k, -k)
    kk, vv = c.read(1, c.slots("x", 0, 3))
    assert torch.equal(kk, k) and torch.equal(vv, -k)
    assert not c.grow("y", 100)           # 50 blocks: refused, nothing allocated
    assert c.tables["y"] == [2] and c.allocator.num_free == 2
    c.free("x")
    assert c.allocator.num_free == 4 and c.memory_used() == c.bytes_per_block
    with pytest.raises(IndexError, match="grow"):
        c.slots("y", 0, 3)


# ---------------------------------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer llama over SmolLM2's full vocabulary (so its tokenizer works), peaked by a large init."""
    cfg = HFConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.3, tie_word_embeddings=True,
                   eos_token_id=2, bos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    return hf, llama.from_hf(hf)


def _prompts(n=5):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, 49152, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


def _generate(hf, p, n):
    with torch.no_grad():
        out = hf.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=n,
                          min_new_tokens=n, do_sample=False, pad_token_id=2)
    return out[0, len(p):].tolist()


@pytest.mark.parametrize("policy,blocks", [("continuous", 64), ("static", 64), ("continuous", 7)])
def test_engine_greedy_equals_generate(tiny, policy, blocks):
    hf, model = tiny
    prompts, lengths = _prompts(), [3, 9, 5, 12, 1]
    eng = E.Engine(model, num_blocks=blocks, block_size=4, max_batch=3, policy=policy)
    reqs = [E.Request(p, max_new_tokens=n) for p, n in zip(prompts, lengths)]
    eng.run(reqs)
    for p, n, r in zip(prompts, lengths, reqs):
        assert r.output == _generate(hf, p, n)
        assert r.finish_reason == "length"
    assert eng.cache.allocator.num_free == blocks and not eng.cache.tables
    if blocks == 7:  # 7 blocks of 4 cannot hold 3 growing sequences: someone was preempted and recomputed
        assert sum(r.preemptions for r in reqs) > 0


def test_continuous_batching_takes_fewer_steps_than_static(tiny):
    _, model = tiny
    lengths = [2, 12, 2, 12, 2, 12]
    steps = {}
    for policy in ("continuous", "static"):
        eng = E.Engine(model, num_blocks=64, block_size=4, max_batch=2, policy=policy)
        eng.run([E.Request(p, max_new_tokens=n) for p, n in zip(_prompts(6), lengths)])
        steps[policy] = eng.steps
    # static: 3 batches of (2, 12) run 12 steps each; continuous refills the short slot as it frees up
    assert steps["static"] == 36 and steps["continuous"] < 30


def test_engine_stop_token_sampling_seed_and_validation(tiny):
    _, model = tiny
    p = _prompts(1)[0]
    eng = E.Engine(model, num_blocks=32, block_size=4)
    first = E.Request(p, max_new_tokens=6)
    eng.run([first])
    stop = E.Request(p, max_new_tokens=6, stop_token_ids=(first.output[2],))
    a, b = (E.Request(p, max_new_tokens=6, temperature=1.0, seed=7) for _ in range(2))
    eng.run([stop, a, b])
    assert stop.output == first.output[:2] and stop.finish_reason == "stop"
    assert a.output == b.output  # same seed, same sample, even in the same batch
    with pytest.raises(ValueError, match="cache"):
        eng.submit(E.Request(p, max_new_tokens=10_000))
    with pytest.raises(ValueError, match="max_new_tokens"):
        E.Request(p, max_new_tokens=0)
    with pytest.raises(ValueError, match="policy"):
        E.Engine(model, policy="fifo")


def test_summarize_and_arrivals():
    reqs = []
    for i, (first, done) in enumerate([(0.1, 0.5), (0.3, 0.9)]):
        r = E.Request([1], arrival=0.1 * i)
        r.output, r.t_first, r.t_done = [1] * 4, first, done
        reqs.append(r)
    s = E.summarize(reqs)
    assert s["tokens"] == 8 and abs(s["throughput"] - 8 / 0.9) < 1e-9
    assert abs(s["ttft_p50_ms"] - 150.0) < 1e-6
    gaps = E.poisson_arrivals(2000, 4.0, seed=0)
    assert abs(gaps[-1] / 2000 - 0.25) < 0.02  # mean gap 1/rate
    with pytest.raises(ValueError):
        E.summarize([E.Request([1])])


# ---------------------------------------------------------------------------------------------- server
def test_parse_params_names_the_field():
    assert parse_params({"temperature": 0, "stop": ["a", "b"]}, 64)["stop"] == ["a", "b"]
    for body, field in [({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 65}, "max_tokens"),
                        ({"temperature": "hot"}, "temperature"), ({"top_p": 0}, "top_p"), ({"stop": 3}, "stop"),
                        ({"seed": 1.5}, "seed"), ({"n": 2}, "n"), ({"stream": "yes"}, "stream")]:
        with pytest.raises(ApiError) as e:
            parse_params(body, 64)
        assert e.value.status == 400 and e.value.param == field


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny, tok):
    """The app on the tiny model, served by uvicorn in a thread on a free 127.0.0.1 port."""
    import uvicorn

    _, model = tiny
    eng = E.Engine(model, num_blocks=64, block_size=16, max_batch=4)
    app = create_app(eng, tok, model_name="tiny", api_key="k", max_prompt_tokens=300, max_tokens_limit=64)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", eng
    srv.should_exit = True
    th.join(timeout=10)


@pytest.mark.slow
def test_openai_client_streams_and_completes(server):
    import openai

    base, eng = server
    client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    msgs = [{"role": "user", "content": "hello"}]
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, stream=True, max_tokens=8, temperature=0))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "length"
    whole = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    assert whole.choices[0].message.content == text and whole.usage.completion_tokens == 8
    s1, s2 = (client.completions.create(model="tiny", prompt="Once", max_tokens=6, temperature=0.9, top_p=0.9,
                                        seed=3).choices[0].text for _ in range(2))
    assert s1 == s2
    stop = text[len(text) // 2:][:3]
    if stop.strip():
        cut = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0, stop=[stop])
        assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].message.content
        assert text.startswith(cut.choices[0].message.content)
    assert eng.cache.allocator.num_free == 64


@pytest.mark.parametrize("name,kwargs,status", [
    ("malformed JSON", dict(content=b'{"model": "tiny", "messages": ['), 400),
    ("no key", dict(json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]}, headers={}), 401),
    ("unknown model", dict(json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}), 404),
    ("bad role", dict(json={"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}), 400),
    ("oversized prompt", dict(json={"model": "tiny", "messages": [{"role": "user", "content": "word " * 1000}]}), 400),
    ("max_tokens too large", dict(json={"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                        "max_tokens": 10_000}), 400),
    ("body not an object", dict(json=[1, 2]), 400),
])
def test_bad_requests_get_4xx(server, name, kwargs, status):
    base, _ = server
    headers = kwargs.pop("headers", {"Authorization": "Bearer k"})
    r = httpx.post(base + "/v1/chat/completions", headers=headers, timeout=10, **kwargs)
    assert r.status_code == status, name
    assert r.json()["error"]["message"]


def test_completions_endpoint_validates_prompt(server):
    base, _ = server
    r = httpx.post(base + "/v1/completions", headers={"Authorization": "Bearer k"}, timeout=10,
                   json={"model": "tiny", "prompt": 42})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_disconnect_frees_slot_and_blocks(server):
    base, eng = server
    body = {"model": "tiny", "stream": True, "max_tokens": 64, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"},
                      timeout=10) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 4:
                break
    for _ in range(100):
        if not eng.running and eng.cache.allocator.num_free == 64:
            break
        time.sleep(0.05)
    assert not eng.running and eng.cache.allocator.num_free == 64 and not eng.cache.tables


def test_chat_page_is_served(server):
    base, _ = server
    r = httpx.get(base + "/")
    assert r.status_code == 200 and "/v1/chat/completions" in r.text and "http" not in r.text.split("<script>")[0]


@pytest.mark.slow
def test_labkit_serve_subprocess_streams_to_openai_client(tmp_path):
    """`labkit serve` (server.main) with the bundled SmolLM2, on a free port, streamed by the openai client."""
    import openai

    port = _free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "labkit.serving.server", "--port", str(port), "--threads", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        for _ in range(600):
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, (log.seek(0), log.read())
                time.sleep(0.5)
        stream = client.chat.completions.create(model="smollm2-135m-instruct", stream=True, max_tokens=8, temperature=0,
                                                messages=[{"role": "user", "content": "What is the capital of France?"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert "Paris" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_main_rejects_bad_port(capsys):
    from labkit.serving.server import main

    assert main(["--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- constrained
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "n": {"type": "integer"},
                                           "x": {"type": "number"}, "ok": {"type": "boolean"},
                                           "tags": {"type": "array", "items": {"enum": ["a", "bc"]}, "maxItems": 2}},
          "required": ["name", "n", "x", "ok", "tags"]}


@pytest.mark.parametrize("text,state", [
    ('', "partial"), ('{"name": "Al', "partial"), ('{"name": "Al", "n": -1', "partial"),
    ('{"name": "Al", "n": 01', "fail"), ('{"name": "Al", "n": 3, "x": 2.5, "ok": fa', "partial"),
    ('{"name": "Al", "n": 3, "x": 2.5, "ok": false, "tags": ["bc", "a"]}', "complete"),
    ('{"name": "Al", "n": 3, "x": 2.5, "ok": false, "tags": ["bc", "a", "a"]}', "fail"),
    ('{"name": "Alexander the Great"', "fail"), ('{"nome"', "fail"), ('{"name": "A\\n"', "fail"),
    ('{"name": "Al", "n": 3, "x": 2.5, "ok": true, "tags": []} ', "fail"),
])
def test_check_follows_schema(text, state):
    assert C.check(SCHEMA, text) == state


def test_every_complete_text_parses_and_conforms():
    text = '{"name": "Al", "n": 3, "x": 2.5, "ok": false, "tags": ["bc"]}'
    assert C.check(SCHEMA, text) == "complete" and C.conforms(SCHEMA, json.loads(text))
    assert not C.conforms(SCHEMA, {**json.loads(text), "n": "3"})
    with pytest.raises(C.SchemaError):
        C.check({"type": "null"}, "")


def test_constrained_generation_gives_valid_json_from_a_random_model(tiny, tok):
    hf, _ = tiny
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 6},
                                               "big": {"type": "boolean"}}, "required": ["city", "big"]}
    ids = tok("Answer in JSON:").input_ids
    out = C.generate_json(hf, tok, ids, schema, max_new_tokens=40)
    assert out["complete"], out
    assert C.conforms(schema, json.loads(out["text"]))


def test_extract_json():
    assert C.extract_json('```json\n{"a": [1]}\n```') == {"a": [1]}
    assert C.extract_json("Here it is: {}") is None


# ---------------------------------------------------------------------------------------------- tools
@pytest.mark.parametrize("expr,value", [("1+2*3", 7), ("(2+3)**2", 25), ("-4 / 8", -0.5), ("7 // 2 + 7 % 2", 4),
                                        ("1,000 * 3", 3000), ("2^10", 1024)])
def test_calculator(expr, value):
    assert T.calculate(expr) == value


@pytest.mark.parametrize("expr,msg", [("__import__('os').system('x')", "not allowed"), ("x + 1", "Name"),
                                      ("[1] * 3", "not allowed"), ("9 ** 9 ** 9", "powers"), ("1 / 0", "zero"),
                                      ("1 +", "not an arithmetic"), ("", "give"), ("1" * 300, "at most")])
def test_calculator_refuses(expr, msg):
    with pytest.raises(T.ToolError, match=msg):
        T.calculate(expr)


def test_parse_call_and_agent_failure_modes():
    calc = T.calculator_tool()
    assert T.parse_call('{"tool": "calculator", "input": "1+1"} and more', [calc])[0]["input"] == "1+1"
    assert T.parse_call("I think it is 4", [calc])[1].startswith("malformed")
    assert T.parse_call('{"tool": "calculator", "input": 4}', [calc])[1].startswith("malformed")
    assert T.call_schema([calc], allow_answer=False)["properties"]["tool"]["enum"] == ["calculator"]
    assert T.run_agent(lambda m, a: "no idea", "q", [calc], "s").outcome == "malformed"
    assert T.run_agent(lambda m, a: '{"tool": "shell", "input": "ls"}', "q", [calc], "s").outcome == "wrong tool"
    assert T.run_agent(lambda m, a: '{"tool": "calculator", "input": "1+1"}', "q", [calc], "s").outcome == "loop"
    calls = iter(['{"tool": "calculator", "input": "%d+1"}' % i for i in range(5)])
    tr = T.run_agent(lambda m, a: next(calls), "q", [calc], "s", max_steps=3)
    assert tr.outcome == "step limit" and len(tr.steps) == 3
    seen = []
    tr = T.run_agent(lambda m, a: seen.append(a) or '{"tool": "answer", "input": "4"}', "q", [calc], "s",
                     tool_choice="required")
    assert seen == [False] and tr.answer == "4"   # the "required" first turn may not answer
    bad = T.run_agent(lambda m, a: '{"tool": "calculator", "input": "import os"}', "q", [calc], "s", max_steps=1)
    assert bad.steps[0]["observation"].startswith("error: calculator")


def test_search_tool_uses_the_retriever():
    from labkit import qa

    search = T.search_tool(qa.countries_corpus(wikipedia=False))
    assert search("capital of Peru") == "Peru: Its capital is Lima."
    assert search("zzzz qqqq") == "no result"
    with pytest.raises(T.ToolError, match="at most"):
        search("x" * 500)


def test_run_agents_steps_many_questions_like_run_agent():
    calc = T.calculator_tool()

    def reply(conv):  # a scripted model: computes "a+b" from the question, then answers from the observation
        last = conv[-1]["content"]
        if last.startswith("Observation: "):
            return json.dumps({"tool": "answer", "input": last.split("\n")[0][len("Observation: "):]})
        expr = last[len("Question: What is "):-1]
        return {"1+1": "no idea", "2+2": '{"tool": "shell", "input": "x"}'}.get(
            expr, json.dumps({"tool": "calculator", "input": expr}))

    questions = ["What is 1+1?", "What is 3*4?", "What is 2+2?", "What is 10-7?"]
    widths = []

    def batched(convs, allow):
        widths.append(len(convs))
        return [reply(c) for c in convs]

    many = T.run_agents(batched, questions, [calc], "s")
    one = [T.run_agent(lambda m, a: reply(m), q, [calc], "s") for q in questions]
    assert [(t.answer, t.outcome, t.steps) for t in many] == [(t.answer, t.outcome, t.steps) for t in one]
    assert [(t.answer, t.outcome) for t in many] == [(None, "malformed"), ("12", "answered"), (None, "wrong tool"),
                                                     ("3", "answered")]
    assert widths == [4, 2]   # finished questions leave the batch
    with pytest.raises(ValueError, match="replies"):
        T.run_agents(lambda convs, a: [], questions, [calc], "s")


TRANSCRIPT = [{"role": "system", "content": "Tools: calculator."},
              *T.example_turns([("What is 6 * 7?", [('{"tool": "calculator", "input": "6 * 7"}', "42"),
                                                    ('{"tool": "answer", "input": "42"}', "")])])]


def test_encode_chat_learns_only_the_assistant_turns(tok):
    from labkit.serving import tooltune as TT

    ids, labels = TT.encode_chat(tok, TRANSCRIPT)
    assert ids == tok(tok.apply_chat_template(TRANSCRIPT, tokenize=False), add_special_tokens=False)["input_ids"]
    learned = [i for i, l in zip(ids, labels) if l != -100]
    assert tok.decode(learned) == ('{"tool": "calculator", "input": "6 * 7"}<|im_end|>'
                                   '{"tool": "answer", "input": "42"}<|im_end|>')
    assert all(l in (-100, i) for i, l in zip(ids, labels))
    with pytest.raises(ValueError, match="no assistant turn"):
        TT.encode_chat(tok, TRANSCRIPT[:2])


def test_assistant_loss_equals_the_models_own_loss(tiny, tok):
    from labkit.serving import tooltune as TT

    hf, _ = tiny
    other = [TRANSCRIPT[0], *T.example_turns([("Hi?", [('{"tool": "answer", "input": "hello there"}', "")])])]
    batch = TT.pad_batch([TT.encode_chat(tok, c) for c in (TRANSCRIPT, other)], tok.eos_token_id)
    with torch.no_grad():
        ours, ref = TT.assistant_loss(hf, batch), hf(**batch).loss
    # The same fp32 sums, only the vocabulary projection restricted to the labelled positions.
    assert abs(ours.item() - ref.item()) < 1e-5 * ref.item()
    stream = TT.chat_batches(tok, [TRANSCRIPT, other, TRANSCRIPT[:3]], batch_size=2, seed=0)
    first_pass = [row for b in (next(stream), next(stream)) for row, m in zip(b["input_ids"], b["attention_mask"])
                  for row in [row[m.bool()].tolist()]]
    assert sorted(first_pass) == sorted(TT.encode_chat(tok, c)[0] for c in [TRANSCRIPT, other, TRANSCRIPT[:3]])


@pytest.mark.slow
def test_fine_tuning_on_a_transcript_teaches_the_call_format(tok):
    """Through labkit.train.fit and assistant_loss: a tiny llama trained on one transcript then runs it as an agent."""
    from labkit.generate import generate_batch
    from labkit.serving import tooltune as TT
    from labkit.train import fit

    cfg = HFConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=2,
                   bos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    llm = lambda convs, a: generate_batch(model, tok, convs, max_new_tokens=24, stop=["}"], progress=False)  # noqa: E731
    before, = T.run_agents(llm, ["What is 6 * 7?"], [T.calculator_tool()], "Tools: calculator.")
    h = fit(model, TT.chat_batches(tok, [TRANSCRIPT], batch_size=1), TT.assistant_loss, steps=60, lr=1e-2,
            weight_decay=0.0, progress=False, device="cpu")
    after, = T.run_agents(llm, ["What is 6 * 7?"], [T.calculator_tool()], "Tools: calculator.")
    assert before.outcome == "malformed" and h.train_loss[-1] < 0.1 * h.train_loss[0]
    assert (after.answer, after.outcome, after.steps[0]["observation"]) == ("42", "answered", "42")
