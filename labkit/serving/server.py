"""An OpenAI-compatible HTTP server on the continuous-batching engine, with a chat page.

Routes (the subset of OpenAI's API that chat clients use):

- `GET /v1/models`: the one model served;
- `POST /v1/chat/completions` and `POST /v1/completions`: `max_tokens`, `temperature`, `top_p`, `stop`,
  `seed`, and `stream: true` for server-sent events (SSE: lines `data: {json}` ending in `data: [DONE]`);
- `GET /` (and `/chat`): a plain HTML+JavaScript chat page (`static/chat.html`).

Every bad request gets a 4xx with OpenAI's error shape `{"error": {"message", "type", "param", "code"}}`:
malformed JSON or fields (400), a missing or wrong API key (401), an unknown model (404), a prompt
or `max_tokens` over the limits (400). A client that goes away mid-stream has its request cancelled,
which frees its batch slot and cache blocks. The server binds 127.0.0.1 unless told otherwise.

    >>> app = create_app(engine, tokenizer, api_key="secret")   # doctest: +SKIP
    >>> main(["--port", "8000"])                                 # doctest: +SKIP
"""
import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from .engine import Engine, Request

__all__ = ["create_app", "main", "ApiError", "parse_params", "CHAT_PAGE"]

CHAT_PAGE = Path(__file__).parent / "static" / "chat.html"


class ApiError(Exception):
    """A client error, answered as OpenAI does: a status code and {"error": {...}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def _number(body: dict, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"'{name}' must be a number, got {type(v).__name__}", name)
    if v > hi or v < lo or (lo_open and v == lo):
        raise ApiError(400, f"'{name}' must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}", name)
    return float(v)


def parse_params(body: Any, max_tokens_limit: int, default_max_tokens: int = 128) -> dict[str, Any]:
    """Check the sampling fields of a request body; raise ApiError(400) with the field named.

    >>> parse_params({"max_tokens": 5, "stop": "\\n"}, 64)["stop"]
    ['\\n']
    >>> parse_params({"max_tokens": 500}, 64)
    Traceback (most recent call last):
    ...
    labkit.serving.server.ApiError: 'max_tokens' is 500 but this server allows at most 64 new tokens; lower it
    """
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if mt is None:
        mt = min(default_max_tokens, max_tokens_limit)
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        raise ApiError(400, f"'max_tokens' must be a positive integer, got {mt!r}", "max_tokens")
    if mt > max_tokens_limit:
        raise ApiError(400, f"'max_tokens' is {mt} but this server allows at most {max_tokens_limit} new tokens; "
                            "lower it", "max_tokens")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(400, "'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"'seed' must be an integer, got {seed!r}", "seed")
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, "this server returns one choice per request: 'n' must be 1", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"'stream' must be true or false, got {stream!r}", "stream")
    return {"max_tokens": mt, "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
            "top_p": _number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True), "stop": stop, "seed": seed,
            "stream": stream}


def _messages(body: dict) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty list of {\"role\": ..., \"content\": ...}", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{i}] needs a 'role' of system, user or assistant", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI's content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string", f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    return out


class _Detokenizer:
    """Turns a growing list of token ids into text deltas, holding back what a stop string may still match."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tok, self.stop, self.ids, self.sent, self.stopped = tokenizer, stop, [], 0, False

    def push(self, token: int | None) -> str:
        if token is not None:
            self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        final = token is None
        if text.endswith("\ufffd") and not final:
            return ""  # half of a multi-byte character: wait for the rest
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, text, final = True, text[:cut], True
        end = len(text)
        if not final:  # keep back a tail that could be the start of a stop string
            for s in self.stop:
                for k in range(min(len(s) - 1, len(text)), 0, -1):
                    if text.endswith(s[:k]):
                        end = min(end, len(text) - k)
                        break
        delta, self.sent = text[self.sent:end], max(self.sent, end)
        return delta


def create_app(engine: Engine, tokenizer, model_name: str = "smollm2-135m-instruct", api_key: str | None = None,
               max_prompt_tokens: int = 1024, max_tokens_limit: int = 256):
    """A FastAPI app serving `engine` (started here, stopped on shutdown) under the name `model_name`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request as HttpRequest
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

    eos = tokenizer.eos_token_id
    capacity = engine.cache.allocator.num_blocks * engine.cache.block_size

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="labkit serve", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    def check_key(request: HttpRequest) -> None:
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    async def read_body(request: HttpRequest) -> dict:
        check_key(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if body.get("model") != model_name:
            raise ApiError(404, f"the model {body.get('model')!r} does not exist; this server has {model_name!r}",
                           "model", "model_not_found")
        return body

    def check_prompt(ids: list[int], params: dict) -> None:
        if len(ids) > max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(ids)} tokens, more than the {max_prompt_tokens} this server "
                                "accepts; shorten it", "messages", "context_length_exceeded")
        if len(ids) + params["max_tokens"] > capacity:
            raise ApiError(400, f"prompt + max_tokens = {len(ids) + params['max_tokens']} tokens exceeds the cache "
                                f"({capacity}); lower max_tokens", "max_tokens", "context_length_exceeded")

    async def tokens(http: HttpRequest, ids: list[int], params: dict) -> AsyncIterator[tuple[str, str | None, Request]]:
        """Submit to the engine; yield (text delta, finish_reason or None, request) as tokens arrive."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        req = Request(ids, max_new_tokens=params["max_tokens"], temperature=params["temperature"],
                      top_p=params["top_p"], seed=params["seed"], stop_token_ids=(eos,),
                      on_token=lambda r, t: loop.call_soon_threadsafe(queue.put_nowait, t))
        detok = _Detokenizer(tokenizer, params["stop"])
        engine.submit(req)
        try:
            while True:
                try:
                    tok = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await http.is_disconnected():
                        return
                    continue
                delta = detok.push(tok)
                if detok.stopped:
                    yield delta, "stop", req
                    return
                if tok is None:
                    yield delta, "stop" if req.finish_reason == "stop" else "length", req
                    return
                if delta:
                    yield delta, None, req
        finally:
            if req.finish_reason is None:  # client gone, stop string hit, or server shutting down
                engine.cancel(req.id)

    def respond(http: HttpRequest, ids: list[int], params: dict, chat: bool):
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"

        def choice(text: str, finish: str | None, delta: bool) -> dict:
            if not chat:
                return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            body = {"role": "assistant", "content": text} if not delta or text else {}
            return {"index": 0, ("delta" if delta else "message"): body, "finish_reason": finish}

        if params["stream"]:
            async def sse():
                if chat:  # OpenAI's first chunk carries the role
                    first = {"id": rid, "object": obj + ".chunk", "created": created, "model": model_name,
                             "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}]}
                    yield f"data: {json.dumps(first)}\n\n"
                async for delta, finish, _ in tokens(http, ids, params):
                    chunk = {"id": rid, "object": obj + ".chunk" if chat else obj, "created": created,
                             "model": model_name, "choices": [choice(delta, finish, True)]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        async def whole():
            text, finish, req = "", "length", None
            async for delta, fin, req in tokens(http, ids, params):
                text += delta
                finish = fin or finish
            n_out = len(req.output) if req else 0
            return JSONResponse({"id": rid, "object": obj, "created": created, "model": model_name,
                                 "choices": [choice(text, finish, False)],
                                 "usage": {"prompt_tokens": len(ids), "completion_tokens": n_out,
                                           "total_tokens": len(ids) + n_out}})
        return whole()

    @app.get("/v1/models")
    async def models(request: HttpRequest):
        check_key(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "labkit"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HttpRequest):
        body = await read_body(request)
        params = parse_params(body, max_tokens_limit)
        msgs = _messages(body)
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        check_prompt(ids, params)
        out = respond(request, ids, params, chat=True)
        return await out if asyncio.iscoroutine(out) else out

    @app.post("/v1/completions")
    async def completions(request: HttpRequest):
        body = await read_body(request)
        params = parse_params(body, max_tokens_limit)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be a non-empty string", "prompt")
        ids = tokenizer(prompt).input_ids
        check_prompt(ids, params)
        out = respond(request, ids, params, chat=False)
        return await out if asyncio.iscoroutine(out) else out

    @app.get("/", response_class=HTMLResponse)
    @app.get("/chat", response_class=HTMLResponse)
    async def chat_page():
        return HTMLResponse(CHAT_PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "running": len(engine.running), "waiting": len(engine.waiting),
                "free_blocks": engine.cache.allocator.num_free}

    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit serve", description="Serve a llama model with an OpenAI-compatible "
                                "API and a chat page (continuous batching on a paged KV cache).")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="bundled asset name or a Hugging Face llama folder (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s; 0 = any free port)")
    p.add_argument("--api-key", default=os.environ.get("LABKIT_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $LABKIT_API_KEY, or no key)")
    p.add_argument("--max-batch", type=int, default=8, help="sequences decoded together (default %(default)s)")
    p.add_argument("--num-blocks", type=int, default=256, help="KV-cache blocks of 16 tokens (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=256, help="largest max_tokens a request may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=1024, help="longest prompt accepted, in tokens")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    return p


def main(argv: list[str] | None = None) -> int:
    """`labkit serve`: load the model, start the engine, serve until Ctrl-C."""
    args = build_parser().parse_args(argv)
    if not 0 <= args.port < 65536:
        print(f"labkit serve: --port must be in 0..65535, got {args.port}", file=sys.stderr)
        return 2
    import socket

    import torch
    import uvicorn

    from ..llama import load

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load(args.model)
    engine = Engine(model, num_blocks=args.num_blocks, block_size=16, max_batch=args.max_batch)
    name = Path(args.model).name if Path(args.model).exists() else args.model
    app = create_app(engine, tok, model_name=name, api_key=args.api_key, max_prompt_tokens=args.max_prompt_tokens,
                     max_tokens_limit=args.max_tokens)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    print(f"labkit serve: {name} at http://{args.host}:{port}/v1 (chat page: http://{args.host}:{port}/)"
          + (" [API key required]" if args.api_key else ""), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
