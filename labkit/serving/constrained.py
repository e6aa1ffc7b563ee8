"""Constrained decoding: JSON that follows a schema, by masking tokens, written by hand.

A small model asked for JSON often writes prose around it, forgets a quote or invents a key. A
*constrained decoder* (约束解码) never lets it: at each step it keeps only the tokens after which the
text is still the beginning of some valid document, and picks the best of those. What is valid is
given by a *grammar*, here a JSON schema (a subset: objects with required properties in order,
strings with a maximum length, integers, numbers, booleans, enums, arrays).

`check(schema, text)` reads text as far as it goes and answers "complete" (a whole valid document),
"partial" (a valid beginning) or "fail". Greedy constrained decoding tries the tokens from the most
to the least likely and takes the first one that does not fail: that is exactly the arg-max over
the masked vocabulary, without scoring all 49,152 tokens every step. Libraries (outlines, xgrammar)
compile the grammar into an automaton over the vocabulary instead; the result is the same idea.

    >>> schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    >>> check(schema, '{"n": 4'), check(schema, '{"n": 42}'), check(schema, '{"n": x')
    ('partial', 'complete', 'fail')
"""
from __future__ import annotations

import json
import re
from typing import Any

import torch

__all__ = ["check", "conforms", "vocab_strings", "generate_json", "extract_json", "SchemaError"]

PARTIAL, FAIL = "partial", "fail"
_MAX_WS = 1          # spaces allowed between JSON tokens: enough for a model's ' "' tokens, not for loops
_MAX_DIGITS = 12


class SchemaError(ValueError):
    """The schema uses something this hand-written checker does not support."""


def _ws(s: str, i: int) -> int:
    j = i
    while j < len(s) and s[j] == " " and j - i < _MAX_WS:
        j += 1
    return j


def _lit(lit: str, s: str, i: int):
    rest = s[i:i + len(lit)]
    if s.startswith(lit, i):
        return "done", i + len(lit)
    if lit.startswith(rest) and i + len(rest) == len(s):
        return PARTIAL, len(s)
    return FAIL, i


def _string(schema: dict, s: str, i: int):
    st, i = _lit('"', s, i)
    if st != "done":
        return st, i
    n, limit = 0, schema.get("maxLength", 10**9)
    while i < len(s):
        c = s[i]
        if c == '"':
            return ("done", i + 1) if n >= schema.get("minLength", 0) else (FAIL, i)
        # No escapes and no control characters: a small model's strings do not need them, and it
        # keeps every valid prefix a valid prefix.
        if c == "\\" or ord(c) < 0x20 or n >= limit:
            return FAIL, i
        n, i = n + 1, i + 1
    return PARTIAL, i


def _number(schema: dict, s: str, i: int):
    m = re.compile(r"-?(0|[1-9]\d*)?" + ("" if schema["type"] == "integer" else r"(\.\d*)?")).match(s, i)
    text = m.group(0)
    digits = sum(c.isdigit() for c in text)
    if digits > _MAX_DIGITS:
        return FAIL, i
    j = m.end()
    if j == len(s):
        return PARTIAL, j  # the number may go on
    if not text or text == "-" or text.endswith("."):
        return FAIL, i
    return "done", j


def _enum(schema: dict, s: str, i: int):
    options = [json.dumps(v) for v in schema["enum"]]
    results = [_lit(o, s, i) for o in options]
    done = [r for r in results if r[0] == "done"]
    if done:
        return max(done, key=lambda r: r[1])
    if any(r[0] == PARTIAL for r in results):
        return PARTIAL, len(s)
    return FAIL, i


def _object(schema: dict, s: str, i: int):
    props = schema.get("properties", {})
    required = schema.get("required", list(props))
    if list(required) != list(props)[:len(required)] or len(required) != len(props):
        raise SchemaError("this checker needs every property required, listed in 'required' in property order")
    st, i = _lit("{", s, i)
    if st != "done":
        return st, i
    for k, (name, sub) in enumerate(props.items()):
        i = _ws(s, i)
        if k:
            st, i = _lit(",", s, i)
            if st != "done":
                return st, i
            i = _ws(s, i)
        st, i = _lit(json.dumps(name) + ":", s, i)
        if st != "done":
            return st, i
        st, i = _value(sub, s, _ws(s, i))
        if st != "done":
            return st, i
    return _lit("}", s, _ws(s, i))


def _array(schema: dict, s: str, i: int):
    st, i = _lit("[", s, i)
    if st != "done":
        return st, i
    n, most = 0, schema.get("maxItems", 10**9)
    i = _ws(s, i)
    while True:
        if n >= schema.get("minItems", 0):
            st, j = _lit("]", s, i)
            if st != FAIL:
                return st, j
        if n >= most:
            return FAIL, i
        if n:
            st, i = _lit(",", s, i)
            if st != "done":
                return st, i
            i = _ws(s, i)
        st, i = _value(schema["items"], s, i)
        if st != "done":
            return st, i
        n += 1
        i = _ws(s, i)


_KINDS = ("object", "array", "string", "integer", "number", "boolean")


def _value(schema: dict, s: str, i: int):
    if "enum" not in schema and schema.get("type") not in _KINDS:
        raise SchemaError(f"type {schema.get('type')!r} is not supported here (object, array, string, integer, "
                          "number, boolean, enum)")
    if i >= len(s):
        return PARTIAL, i
    if "enum" in schema:
        return _enum(schema, s, i)
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, s, i)
    if kind == "array":
        return _array(schema, s, i)
    if kind == "string":
        return _string(schema, s, i)
    if kind in ("integer", "number"):
        return _number(schema, s, i)
    t, f = _lit("true", s, i), _lit("false", s, i)  # the only kind left: boolean
    return t if t[0] != FAIL else f


def check(schema: dict, text: str) -> str:
    """'complete', 'partial' or 'fail': is `text` a whole document of the schema, a valid beginning, or neither?

    >>> s = {"type": "object", "properties": {"ok": {"type": "boolean"}, "tags": {"type": "array",
    ...      "items": {"enum": ["a", "b"]}, "maxItems": 2}}, "required": ["ok", "tags"]}
    >>> check(s, '{"ok": tr'), check(s, '{"ok": true, "tags": ["a", "b"]}'), check(s, '{"ok": true, "tags": ["c"')
    ('partial', 'complete', 'fail')
    """
    st, i = _value(schema, text, 0)
    if st == "done":
        return "complete" if i == len(text) else FAIL
    return st


def conforms(schema: dict, obj: Any) -> bool:
    """Whether a parsed JSON value follows the schema (types, required keys, enums, lengths).

    >>> conforms({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, {"n": 3})
    True
    """
    if "enum" in schema:
        return obj in schema["enum"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return (isinstance(obj, dict) and all(k in obj for k in schema.get("required", props))
                and all(conforms(props[k], v) for k, v in obj.items() if k in props))
    if kind == "array":
        return (isinstance(obj, list) and schema.get("minItems", 0) <= len(obj) <= schema.get("maxItems", 10**9)
                and all(conforms(schema["items"], v) for v in obj))
    if kind == "string":
        return isinstance(obj, str) and schema.get("minLength", 0) <= len(obj) <= schema.get("maxLength", 10**9)
    if kind == "integer":
        return isinstance(obj, int) and not isinstance(obj, bool)
    if kind == "number":
        return isinstance(obj, (int, float)) and not isinstance(obj, bool)
    if kind == "boolean":
        return isinstance(obj, bool)
    return False


def extract_json(text: str) -> Any:
    """Parse a model's free answer as JSON: the whole text, or failing that a ```json fenced block.

    Returns the value, or None when it does not parse (what a program reading the answer would face).

    >>> extract_json('```json\\n{"a": 1}\\n```'), extract_json('Sure! {"a": 1}')
    ({'a': 1}, None)
    """
    t = text.strip()
    m = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", t, flags=re.S)
    if m:
        t = m.group(1)
    try:
        return json.loads(t)
    except json.JSONDecodeError:
        return None


def vocab_strings(tokenizer) -> list[str]:
    """The text of every token id alone ('' for special tokens; U+FFFD for a partial UTF-8 byte).

    >>> vocab_strings(tok)[tok.convert_tokens_to_ids("Ġthe")]   # doctest: +SKIP
    ' the'
    """
    toks = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_tokens)
    return ["" if t in special else tokenizer.convert_tokens_to_string([t]) for t in toks]


def generate_json(model, tokenizer, prompt_ids: list[int], schema: dict, max_new_tokens: int = 64,
                  vocab: list[str] | None = None, max_candidates: int = 50_000) -> dict[str, Any]:
    """Greedy decoding where every token keeps `check(schema, text)` from failing; stops when complete.

    model: a Hugging Face causal LM (uses its KV cache). Returns {"text", "complete", "steps", "tried"}
    where tried counts the candidate tokens checked (1 per step when the model already agrees).

    >>> out = generate_json(model, tok, ids, {"type": "object", "properties": {"n": {"type": "integer"}}})  # doctest: +SKIP
    >>> json.loads(out["text"])                                                                            # doctest: +SKIP
    """
    from ..generate import new_cache

    check(schema, "")  # fail early on an unsupported schema
    vocab = vocab or vocab_strings(tokenizer)
    dev = next(model.parameters()).device
    cache = new_cache(model)
    ids = torch.tensor([prompt_ids], device=dev)
    text, tried, steps, state = "", 0, 0, "partial"
    with torch.inference_mode():
        for steps in range(1, max_new_tokens + 1):
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1]
            chosen = None
            for t in torch.argsort(logits, descending=True)[:max_candidates].tolist():
                tried += 1
                piece = vocab[t] if t < len(vocab) else ""
                if not piece or "\ufffd" in piece:
                    continue  # special tokens (EOS) and half characters never extend valid JSON here
                st = check(schema, text + piece)
                if st != FAIL:
                    chosen, state = t, st
                    text += piece
                    break
            if chosen is None:
                state = FAIL
                break
            if state == "complete":
                break
            ids = torch.tensor([[chosen]], device=dev)
    return {"text": text, "complete": state == "complete", "steps": steps, "tried": tried}
