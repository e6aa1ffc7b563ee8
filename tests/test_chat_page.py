"""The chat page in a real browser: type, send, see the streamed answer, continue the conversation, stop.

Serves `labkit/serving/static/chat.html` from the OpenAI-compatible server (a tiny random llama with
SmolLM2's tokenizer, uvicorn in a thread on a free 127.0.0.1 port) and drives Debian's Chromium
headless through Playwright (`executable_path`, no browser download), as tests/test_browser.py does.
Skipped where Chromium or Playwright is missing; `make system` installs Chromium on Debian.
"""
import json
import shutil
import socket
import threading
import time

import pytest
import torch
from transformers import LlamaConfig as HFConfig, LlamaForCausalLM

from labkit import llama
from labkit.serving.engine import Engine
from labkit.serving.server import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium, "
                                                          "or make system)")]


@pytest.fixture(scope="module")
def served(tok):
    import uvicorn

    cfg = HFConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, initializer_range=0.3, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = llama.from_hf(LlamaForCausalLM(cfg).eval())
    # Every request is recorded, so the test can check what the page sent.
    eng = Engine(model, num_blocks=64, block_size=16, max_batch=4)
    app = create_app(eng, tok, model_name="tiny", max_prompt_tokens=400, max_tokens_limit=256)
    bodies = []

    @app.middleware("http")
    async def record(request, call_next):
        if request.method == "POST":
            bodies.append(json.loads(await request.body()))
        return await call_next(request)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", eng, bodies
    srv.should_exit = True
    th.join(timeout=10)


def test_chat_page_streams_and_keeps_the_conversation(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, eng, bodies = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_default_timeout(60_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
        page.fill("#max_tokens", "12")

        page.fill("#input", "Hello there")
        page.click("#send")
        page.wait_for_selector(".msg.assistant[data-done='1']")
        first = page.locator(".msg.assistant").first.inner_text()
        assert first.strip(), "the streamed answer must appear"
        assert page.locator(".msg.user").first.inner_text() == "Hello there"

        page.fill("#input", "And then?")
        page.press("#input", "Enter")
        page.wait_for_function("document.querySelectorAll(\".msg.assistant[data-done='1']\").length === 2")
        assert page.locator(".msg").count() == 4
        # The second request carried the whole conversation, with the first streamed answer in it.
        sent = bodies[-1]
        assert sent["stream"] is True and [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][1]["content"] == first

        # Stop: a long answer is aborted; the server frees the request's slot and blocks.
        page.fill("#max_tokens", "250")
        page.fill("#input", "Tell me everything.")
        page.click("#send")
        page.wait_for_function("!document.getElementById('stop').disabled")
        page.wait_for_function("document.querySelectorAll('.msg.assistant')[2] && "
                               "document.querySelectorAll('.msg.assistant')[2].textContent.length > 0")
        # A DOM click: while tokens stream in, the page scrolls and Playwright's pointer click can wait on a
        # moving button until the answer has ended and the button is disabled again.
        stopped = page.evaluate("() => { const b = document.getElementById('stop'); "
                                "if (b.disabled) return false; b.click(); return true; }")
        page.wait_for_function("document.getElementById('send').disabled === false")
        assert stopped or page.locator(".msg.assistant").nth(2).get_attribute("data-done") == "1"
        browser.close()
    assert not errors, errors
    for _ in range(100):
        if not eng.running and eng.cache.allocator.num_free == 64:
            break
        time.sleep(0.05)
    assert not eng.running and eng.cache.allocator.num_free == 64
