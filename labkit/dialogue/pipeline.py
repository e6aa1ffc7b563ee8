"""The bot's pipeline: rule-based understanding, state tracking, policy, replies; and a chat model
as the policy, writing JSON tool calls that are parsed safely.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .shop import DAYS, INTENTS, SLOTS, TODAY, clean_slot

# --- understanding, state, policy, replies --------------------------------------------------------

INTENT_KEYWORDS: dict[str, tuple[str, ...]] = {  # checked in this order: "return my order" is a return
    "return_order": ("return", "refund", "send it back", "send back", "money back"),
    "order_status": ("where is", "status", "track", "arrive", "shipped", "delivery", "deliver", "my order", "package"),
    "opening_hours": ("open", "hours", "close", "closing"),
    "book_stock": ("in stock", "available", "copies", "copy", "do you have", "do you sell", "carry"),
    "goodbye": ("bye", "thank", "that's all", "that is all"),
}
REASON_KEYWORDS = {"damaged": ("damaged", "torn", "broken", "ripped", "stained"), "wrong book": ("wrong",),
                   "changed my mind": ("changed my mind", "don't want", "do not want", "no longer")}


def find_title(text: str, titles: Sequence[str], cutoff: float = 0.85) -> str | None:
    """The catalogue title named in `text`: exact (any case) first, then the closest word window
    (difflib ratio >= cutoff), which forgives small typos.

    >>> find_title("do you have the silent rivr?", ["The Silent River", "The Lost Clock"])
    'The Silent River'
    """
    low = " ".join(re.findall(r"[a-z0-9']+", text.lower()))
    for t in sorted(titles, key=len, reverse=True):
        if t.lower() in low:
            return t
    words, best, best_score = low.split(), None, cutoff
    for t in titles:
        n = len(t.split())
        for i in range(len(words) - n + 1):
            score = difflib.SequenceMatcher(None, " ".join(words[i:i + n]), t.lower()).ratio()
            if score >= best_score:
                best, best_score = t, score
    return best


def understand(text: str, titles: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
    """Rule-based NLU: (intent or None, slots found in `text`).

    >>> understand("I want to return order 12345, it arrived damaged", [])
    ('return_order', {'order_id': 12345, 'reason': 'damaged'})
    """
    low = text.lower()
    intent = next((i for i, kws in INTENT_KEYWORDS.items() if any(k in low for k in kws)), None)
    slots: dict[str, Any] = {}
    if m := re.search(r"(?<!\d)(\d{5})(?!\d)", low):
        slots["order_id"] = int(m.group(1))
    if m := re.search(r"\b(" + "|".join(DAYS) + r")\b", low):
        slots["day"] = m.group(1)
    elif re.search(r"\b(today|tomorrow)\b", low):
        slots["day"] = DAYS[(TODAY.weekday() + ("tomorrow" in low)) % 7]
    if reason := next((r for r, kws in REASON_KEYWORDS.items() if any(k in low for k in kws)), None):
        slots["reason"] = reason
    if title := find_title(text, titles):
        slots["title"] = title
    return intent, slots


@dataclass
class DialogueState:
    """What the bot remembers: the active intent, slot values (kept across intents, so an order number
    given for a status check is reused for a return), the last tool result and the transcript."""
    intent: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    last_result: dict[str, Any] | None = None
    history: list[tuple[str, str]] = field(default_factory=list)


def track(state: DialogueState, intent: str | None, slots: dict[str, Any]) -> DialogueState:
    """Update the state with one user turn's NLU output (new values overwrite old ones).

    >>> s = track(DialogueState(), "order_status", {"order_id": 12345}); s = track(s, "return_order", {})
    >>> s.intent, s.slots
    ('return_order', {'order_id': 12345})
    """
    if intent is not None:
        state.intent = intent
    state.slots.update({k: v for k, v in slots.items() if v is not None})
    return state


def rule_policy(state: DialogueState) -> dict[str, Any]:
    """Next system act: greet-and-ask, request a missing slot, call the intent's tool, or say goodbye.

    >>> rule_policy(DialogueState(intent="return_order", slots={"order_id": 12345}))
    {'act': 'request', 'slot': 'reason'}
    """
    if state.intent is None:
        return {"act": "request", "slot": "intent"}
    if state.intent == "goodbye":
        return {"act": "bye"}
    missing = [s for s in INTENTS[state.intent] if s not in state.slots]
    if missing:
        return {"act": "request", "slot": missing[0]}
    return {"act": "call", "tool": state.intent, "args": {s: state.slots[s] for s in INTENTS[state.intent]}}


_ASK = {"intent": "How can I help? I can check an order, start a return, tell you our opening hours or look up a book.",
        "order_id": "What is your order number? It has five digits.",
        "reason": "Why would you like to return it: damaged, wrong book, or changed your mind?",
        "day": "Which day would you like to visit?", "title": "Which book are you looking for?"}


def render(action: dict[str, Any], result: dict[str, Any] | None = None) -> str:
    """The reply text for a system act (template-based generation: every fact comes from the tool result).

    >>> render({"act": "call", "tool": "opening_hours"}, {"day": "sunday", "opens": None, "closes": None})
    'We are closed on Sunday.'
    """
    act = action.get("act")
    if act == "request":
        return _ASK.get(action.get("slot"), "Could you tell me more?")
    if act == "bye":
        return "Thank you for visiting the bookshop. Goodbye!"
    if act != "call" or result is None:
        return "Sorry, I did not understand that. Could you rephrase?"
    if "error" in result:
        return f"Sorry, I could not do that: {result['error']}."
    tool = action["tool"]
    if tool == "order_status":
        when = f", delivered on {result['delivered_date']}" if result["delivered_date"] else ""
        return f"Order {result['order_id']} ({result['title']}) is {result['status']}{when}."
    if tool == "return_order":
        verdict = "I have started the return" if result["accepted"] else "I am sorry, I cannot accept a return"
        return f"{verdict} for order {result['order_id']}: {result['why']}."
    if tool == "opening_hours":
        day = result["day"].capitalize()
        return f"We are closed on {day}." if result["opens"] is None else \
            f"On {day} we are open from {result['opens']} to {result['closes']}."
    return (f"{result['title']} by {result['author']} costs {result['price']:.2f}; "
            + (f"we have {result['stock']} in stock." if result["stock"] else "it is out of stock right now."))


_PAIR = re.compile(r'"(\w+)":\s*"((?:[^"\\]|\\.)*)"')


def parse_action(text: str) -> dict[str, Any] | None:
    """A model's reply as a system act: the first JSON object in `text`, `{"tool": name, <args>}` or
    `{"ask": slot}`. json.loads only (never eval); a reply cut off by the token limit keeps its complete
    "key": "string" pairs; anything else is None.

    >>> parse_action('Sure! {"tool": "order_status", "order_id": "12345"} ok')
    {'act': 'call', 'tool': 'order_status', 'args': {'order_id': 12345}}
    >>> parse_action('{"ask": "order_id"}'), parse_action("__import__('os')")
    ({'act': 'request', 'slot': 'order_id'}, None)
    >>> parse_action('{"tool": "book_stock", "title": "The Lost River", "extra": "and so on, and')
    {'act': 'call', 'tool': 'book_stock', 'args': {'title': 'The Lost River'}}
    """
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        # A small model often rambles on (extra keys, no closing brace) until the token limit: keep the
        # complete "key": "string" pairs it wrote, first occurrence of each key, and nothing else.
        obj = {}
        for k, v in _PAIR.findall(text[start:]):
            try:
                obj.setdefault(k, json.loads(f'"{v}"'))
            except ValueError:  # a bad escape such as "\x"
                continue
    if not isinstance(obj, dict):
        return None
    if obj.get("ask") in SLOTS or obj.get("ask") == "intent":
        return {"act": "request", "slot": obj["ask"]}
    tool = obj.get("tool")
    if tool not in INTENTS:
        return None
    args = obj.get("args") if isinstance(obj.get("args"), dict) else obj
    return {"act": "call", "tool": tool, "args": {s: clean_slot(s, args.get(s)) for s in INTENTS[tool]}}


def truncate_history(lines: Sequence[str], max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """The most recent lines whose token counts fit in `max_tokens` (the newest line is always kept).

    >>> truncate_history(["User: a b c", "Bot: d e", "User: f"], 5, lambda s: len(s.split()))
    ['Bot: d e', 'User: f']
    """
    kept, used = [], 0
    for line in reversed(lines):
        n = count(line)
        if kept and used + n > max_tokens:
            break
        kept.append(line)
        used += n
    return kept[::-1]


# --- bots ----------------------------------------------------------------------------------------

class RuleBot:
    """NLU rules + state tracker + rule policy; one `DialogueState` per conversation."""

    def __init__(self, con: sqlite3.Connection):
        self.titles = [r[0] for r in con.execute("SELECT title FROM books")]

    def act(self, states: Sequence[DialogueState]) -> list[dict[str, Any]]:
        out = []
        for s in states:
            track(s, *understand(s.history[-1][1], self.titles))
            out.append(rule_policy(s))
        return out


LLM_SYSTEM = ("You are the assistant of a bookshop. Choose the tool that answers the customer and reply with JSON only.\n"
              "order_status(order_id): where an order is, whether it shipped or arrived.\n"
              "return_order(order_id, reason): return a book or get a refund; reason is damaged, wrong book or "
              "changed my mind.\n"
              "opening_hours(day): when the shop opens or closes.\n"
              "book_stock(title): whether a book is available or in stock.\n"
              'Reply {"tool": NAME, ARGUMENTS} or, if an argument is missing, {"ask": ARGUMENT}.')


def llm_messages(history: Sequence[tuple[str, str]], max_tokens: int, count: Callable[[str], int]) -> list[dict]:
    """Chat messages for the model: the system text (tools and the reply format), then the conversation
    so far cut to the most recent lines that fit in `max_tokens` tokens (its only memory).

    >>> m = llm_messages([("user", "Hi"), ("bot", "Hello"), ("user", "Bye")], 3, lambda s: len(s.split()))
    >>> len(m), m[-1]["content"]
    (2, 'User: Bye')
    """
    lines = [f"{'User' if who == 'user' else 'Bot'}: {text}" for who, text in history]
    return [{"role": "system", "content": LLM_SYSTEM},
            {"role": "user", "content": "\n".join(truncate_history(lines, max_tokens, count))}]


# Constrained decoding (约束解码): after '{"' the reply must begin with one of these, so the model can
# only pick a real tool (and name its first argument) or ask for a real slot; values are its own.
LLM_SKELETONS = (tuple(f'tool": "{t}", "{slots[0]}": "' for t, slots in INTENTS.items())
                 + tuple(f'ask": "{s}"}}' for s in ("intent",) + SLOTS))


def branch_points(tokenizer, skeletons: Sequence[str]) -> dict[tuple[int, ...], list[int]]:
    """Token prefixes of the skeletons after which more than one token may follow, with those tokens
    (the places where the model makes a choice: tool or ask, which tool, which slot).

    >>> len(branch_points(tok, LLM_SKELETONS))  # doctest: +SKIP
    3
    """
    out: dict[tuple[int, ...], set[int]] = {}
    for k in skeletons:
        p = tuple(tokenizer(k, add_special_tokens=False)["input_ids"])
        for i in range(len(p)):
            out.setdefault(p[:i], set()).add(p[i])
    return {k: sorted(v) for k, v in out.items() if len(v) > 1}


def calibration_bias(model, tokenizer, conversations: Sequence[list[dict]], skeletons: Sequence[str],
                     prefix: str = '{"', only_after: str = 'tool": "') -> dict[tuple[int, ...], dict[int, float]]:
    """Contextual calibration (Zhao et al. 2021): at each branch point after `only_after`, minus the mean
    log-probability of each choice on content-free conversations (the user says "N/A"), so a choice the
    model prefers whatever the user says loses that head start. Pass the result to `chat_json_batch(bias=...)`.
    Only the choice of tool is calibrated by default: for "tool or ask?" a content-free message is not
    neutral (an empty message *should* make a bot ask).

    >>> bias = calibration_bias(model, tok, [[{"role": "user", "content": "N/A"}]], LLM_SKELETONS)  # doctest: +SKIP
    """
    import torch

    dev = next(model.parameters()).device
    bias = {}
    start = tuple(tokenizer(only_after, add_special_tokens=False)["input_ids"])
    for pre, choices in branch_points(tokenizer, skeletons).items():
        if pre[:len(start)] != start:
            continue
        logps = []
        for c in conversations:
            text = tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False) + prefix
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + list(pre)
            with torch.inference_mode():
                logits = model(torch.tensor([ids], device=dev)).logits[0, -1].float()
            logps.append(torch.log_softmax(logits[choices], -1))
        mean = torch.stack(logps).mean(0)
        bias[pre] = {t: -float(v) for t, v in zip(choices, mean)}
    return bias


def chat_json_batch(model, tokenizer, conversations: Sequence[list[dict]], prefix: str = '{"',
                    max_new_tokens: int = 40, batch_size: int = 16, skeletons: Sequence[str] | None = None,
                    bias: dict[tuple[int, ...], dict[int, float]] | None = None) -> list[str]:
    """Greedy replies to many chat conversations, each reply started with `prefix` (so the model writes
    JSON) and stopped at the first "}" (through `labkit.generate.generate_batch`). With `skeletons`,
    the first tokens after the prefix are restricted to follow one of them, token by token (a prefix
    tree over their tokenizations); `bias` (from `calibration_bias`) is added to the scores of the
    choices at each branch point.

    >>> chat_json_batch(model, tok, [[{"role": "user", "content": "Hours on Monday?"}]])  # doctest: +SKIP
    ['{"tool": "opening_hours", "day": "monday"}']
    """
    from transformers import LogitsProcessor, LogitsProcessorList

    from ..generate import generate_batch

    class _BranchBias(LogitsProcessor):
        def __init__(self, bias, width):
            self.bias, self.width = bias, width

        def __call__(self, input_ids, scores):
            for row in range(len(input_ids)):
                for t, b in self.bias.get(tuple(input_ids[row, self.width:].tolist()), {}).items():
                    scores[row, t] += b
            return scores

    paths = [tokenizer(k, add_special_tokens=False)["input_ids"] for k in skeletons or ()]
    everything = list(range(len(tokenizer)))

    def before_batch(_, width):
        def allowed(_, ids):
            done = ids[width:].tolist()
            nxt = {p[len(done)] for p in paths if len(p) > len(done) and p[:len(done)] == done}
            return sorted(nxt) if nxt else everything  # past the skeleton: free
        return {"prefix_allowed_tokens_fn": allowed if paths else None,
                "logits_processor": LogitsProcessorList([_BranchBias(bias, width)] if bias else [])}

    return generate_batch(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          progress=False, prefix=prefix, stop=["}"], before_batch=before_batch)


class LLMBot:
    """A chat model as NLU + tracker + policy in one: it reads the (truncated) transcript and writes a
    JSON act; `generate(conversations)` answers a batch of chat conversations (e.g. `chat_json_batch`)."""

    def __init__(self, generate: Callable[[list[list[dict]]], list[str]], count: Callable[[str], int],
                 max_tokens: int = 256):
        self.generate, self.count, self.max_tokens = generate, count, max_tokens
        self.raw: list[str] = []  # every model output, for the reader to inspect

    def act(self, states: Sequence[DialogueState]) -> list[dict[str, Any]]:
        outs = self.generate([llm_messages(s.history, self.max_tokens, self.count) for s in states])
        self.raw += outs
        acts = []
        for o in outs:
            a = parse_action(o) or {"act": "fail"}
            missing = [k for k, v in a.get("args", {}).items() if v is None]
            # an incomplete or invalid call is not run: the bot asks for the first missing argument
            acts.append({"act": "request", "slot": missing[0]} if missing else a)
        return acts
