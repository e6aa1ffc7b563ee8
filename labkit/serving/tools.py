"""Tools for a language model and an agent loop: think, call a tool, observe, answer.

A *tool call* (工具调用) here is one JSON object the model writes, `{"tool": NAME, "input": TEXT}`;
the program runs the tool and shows the result back to the model as an observation; the tool
"answer" ends the loop. Three things keep this safe and finite:

- the model's text is never run as code: the calculator parses it with `ast` and evaluates only a
  whitelist of node types (numbers, + - * / // % **, parentheses, unary minus), with size limits;
- arguments are validated before a tool runs (type, length), and a bad call is an observation the
  model sees, not a crash;
- the loop stops after `max_steps` calls, and a call repeated word for word is reported as a loop.

    >>> calculate("2 * (3 + 4) ** 2")
    98
    >>> calculate("__import__('os')")
    Traceback (most recent call last):
    ...
    labkit.serving.tools.ToolError: calculator: Call is not allowed; use numbers, + - * / // % ** and parentheses
"""
from __future__ import annotations

import ast
import json
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .constrained import extract_json

__all__ = ["ToolError", "calculate", "Tool", "calculator_tool", "search_tool", "call_schema", "parse_call",
           "run_agent", "run_agents", "AgentTrace", "system_prompt", "example_turns"]


class ToolError(ValueError):
    """A tool refused its input; the message is shown to the model as the observation."""


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def calculate(expression: str, max_length: int = 200, max_abs: float = 1e15) -> int | float:
    """Evaluate arithmetic safely: parse with `ast`, walk only whitelisted nodes, bound the sizes.

    >>> calculate("7 / 2"), calculate("-3 + 10 % 4")
    (3.5, -1)
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("calculator: give an arithmetic expression such as '12 * (3 + 4)'")
    if len(expression) > max_length:
        raise ToolError(f"calculator: the expression is {len(expression)} characters; at most {max_length}")
    try:
        tree = ast.parse(expression.replace("^", "**").replace("×", "*").replace(",", ""), mode="eval")
    except SyntaxError:
        raise ToolError(f"calculator: {expression!r} is not an arithmetic expression") from None

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e6):
                raise ToolError("calculator: powers are limited to |exponent| <= 64 and |base| <= 1e6")
            try:
                out = _BINOPS[type(node.op)](a, b)
            except ZeroDivisionError:
                raise ToolError("calculator: division by zero") from None
            if isinstance(out, complex) or abs(out) > max_abs:
                raise ToolError(f"calculator: result out of range (|x| <= {max_abs:g})")
            return out
        raise ToolError(f"calculator: {type(node).__name__} is not allowed; use numbers, + - * / // % ** and "
                        "parentheses")

    out = ev(tree)
    return int(out) if isinstance(out, float) and out.is_integer() and abs(out) < 2**53 else out


@dataclass
class Tool:
    """A named function of one text input, with a description the model reads and a length limit."""
    name: str
    description: str
    fn: Callable[[str], str]
    max_input: int = 120

    def __call__(self, text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ToolError(f"{self.name}: 'input' must be a non-empty string")
        if len(text) > self.max_input:
            raise ToolError(f"{self.name}: 'input' has {len(text)} characters; at most {self.max_input}")
        return self.fn(text)


def calculator_tool() -> Tool:
    """The safe calculator as a tool.

    >>> calculator_tool()("12*12")
    '144'
    """
    return Tool("calculator", "evaluates arithmetic, e.g. 37 * 91", lambda s: str(calculate(s)))


_STOP = {"a", "an", "the", "of", "in", "is", "are", "what", "which", "who", "and", "to", "its", "it", "does"}


def search_tool(passages: Sequence[dict[str, str]], max_words: int = 40) -> Tool:
    """Chapter 11's BM25 retriever over `passages` ({"title", "text"}) as a tool.

    It returns the best passage's title and its sentence that shares most words with the query (a
    small model reads one sentence better than a paragraph), cut to `max_words`.

    >>> t = search_tool([{"title": "Peru", "text": "Peru is in South America. Its capital is Lima."},
    ...                  {"title": "Chad", "text": "The capital of Chad is N'Djamena."}])
    >>> t("capital of Peru")
    'Peru: Its capital is Lima.'
    """
    import re

    from ..qa import BM25, tokenize

    index = BM25([p["title"] + " " + p["text"] for p in passages])

    def search(query: str) -> str:
        hits = index.search(query, k=1)
        if not hits or hits[0][1] <= 0:
            return "no result"
        p = passages[hits[0][0]]
        # Content words only; the title is said anyway.
        words = set(tokenize(query)) - set(tokenize(p["title"])) - _STOP
        sentences = re.split(r"(?<=[.!?])\s+", p["text"].strip())
        best = max(sentences, key=lambda s: len(words & set(tokenize(s))))  # first of the ties
        return f"{p['title']}: " + " ".join(best.split()[:max_words])

    return Tool("search", "finds facts about countries, e.g. capital of Peru", search)


def call_schema(tools: Sequence[Tool], max_input: int = 60, allow_answer: bool = True) -> dict:
    """The JSON schema of one call: a tool name (or "answer") and its input, for constrained decoding.

    allow_answer=False is OpenAI's tool_choice="required": the model must call one of the tools.

    >>> call_schema([calculator_tool()])["properties"]["tool"]["enum"]
    ['calculator', 'answer']
    """
    names = [t.name for t in tools] + (["answer"] if allow_answer else [])
    return {"type": "object", "properties": {"tool": {"enum": names},
                                             "input": {"type": "string", "maxLength": max_input}},
            "required": ["tool", "input"]}


def parse_call(text: str, tools: Sequence[Tool]) -> tuple[dict | None, str | None]:
    """(call, None) for a well-formed call, else (None, what is wrong): malformed, unknown tool, bad input.

    >>> parse_call('{"tool": "calculator", "input": "2+2"}', [calculator_tool()])
    ({'tool': 'calculator', 'input': '2+2'}, None)
    >>> parse_call('{"tool": "python", "input": "x"}', [calculator_tool()])[1]
    "wrong tool: 'python' is not one of calculator, answer"
    """
    obj = extract_json(text)
    if obj is None:
        # A free-running model often writes the JSON and then goes on talking: read the first object.
        start = text.find("{")
        if start >= 0:
            try:
                obj, _ = json.JSONDecoder().raw_decode(text[start:])
            except json.JSONDecodeError:
                obj = None
    if not isinstance(obj, dict):
        return None, "malformed call: not a JSON object"
    names = [t.name for t in tools] + ["answer"]
    if obj.get("tool") not in names:
        return None, f"wrong tool: {obj.get('tool')!r} is not one of {', '.join(names)}"
    if not isinstance(obj.get("input"), str):
        return None, "malformed call: 'input' must be a string"
    return {"tool": obj["tool"], "input": obj["input"]}, None


def system_prompt(tools: Sequence[Tool]) -> str:
    """Instructions that list the tools and the call format.

    >>> "calculator" in system_prompt([calculator_tool()])
    True
    """
    lines = ["You answer questions. Reply with exactly one JSON object per turn:",
             '{"tool": NAME, "input": TEXT}. Tools:']
    lines += [f"- {t.name}: {t.description}" for t in tools]
    lines.append('- answer: gives the final answer, e.g. {"tool": "answer", "input": "Lima"}')
    return "\n".join(lines)


def _observation(obs: str) -> str:
    return f"Observation: {obs}\nNow reply with the next JSON object."


def example_turns(examples: Sequence[tuple[str, list[tuple[str, str]]]]) -> list[dict[str, str]]:
    """Worked examples as earlier chat turns (a small model copies turns better than it reads rules).

    examples: (question, [(call JSON, observation), ...]); the last call should be an "answer".

    >>> example_turns([("What is 2+2?", [('{"tool": "answer", "input": "4"}', "")])])[1]["content"]
    '{"tool": "answer", "input": "4"}'
    """
    msgs = []
    for q, turns in examples:
        msgs.append({"role": "user", "content": f"Question: {q}"})
        for call, obs in turns:
            msgs.append({"role": "assistant", "content": call})
            if obs:
                msgs.append({"role": "user", "content": _observation(obs)})
    return msgs


@dataclass
class AgentTrace:
    """What happened in one agent run: the calls, the observations, the answer and how it ended."""
    question: str
    steps: list[dict[str, str]] = field(default_factory=list)
    answer: str | None = None
    outcome: str = "answered"     # answered | malformed | wrong tool | loop | step limit | tool error


def run_agents(llm: Callable[[list[list[dict[str, str]]], bool], list[str]], questions: Sequence[str],
               tools: Sequence[Tool], system: str, max_steps: int = 3, examples: Sequence = (),
               tool_choice: str = "auto") -> list[AgentTrace]:
    """The loop for many questions at once: ask for a call, run the tool, show the observation, until
    "answer" or `max_steps` calls; each step asks the model once for every unfinished question.

    llm(conversations, allow_answer) -> one reply text per conversation (e.g. a batch through
    `labkit.generate.generate_batch`; constrained to `call_schema(tools, allow_answer=...)` or free);
    examples: worked examples shown as earlier turns (`example_turns`); tool_choice "required": the first
    call must be a tool (OpenAI's option of that name), "auto": the model may answer at once.
    A reply that is not a call ends that question as "malformed" or "wrong tool"; a call repeated word for
    word as "loop"; running out of steps as "step limit".

    >>> replies = iter([['{"tool": "calculator", "input": "6*7"}', '{"tool": "answer", "input": "5"}'],
    ...                 ['{"tool": "answer", "input": "42"}']])
    >>> trs = run_agents(lambda convs, a: next(replies), ["What is 6*7?", "What is 2+3?"], [calculator_tool()], "sys")
    >>> [(t.answer, t.outcome, len(t.steps)) for t in trs]
    [('42', 'answered', 2), ('5', 'answered', 1)]
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if tool_choice not in ("auto", "required"):
        raise ValueError(f"tool_choice must be 'auto' or 'required', got {tool_choice!r}")
    if isinstance(questions, str):
        raise TypeError("questions must be a list of strings; wrap a single question in [...]")
    by_name = {t.name: t for t in tools}
    head = [{"role": "system", "content": system}, *example_turns(examples)]
    convs = [head + [{"role": "user", "content": f"Question: {q}"}] for q in questions]
    traces = [AgentTrace(q) for q in questions]
    seen: list[set[tuple[str, str]]] = [set() for _ in questions]
    active = list(range(len(questions)))
    for step in range(max_steps):
        if not active:
            break
        replies = llm([convs[i] for i in active], not (step == 0 and tool_choice == "required"))
        if len(replies) != len(active):
            raise ValueError(f"llm returned {len(replies)} replies for {len(active)} conversations")
        still = []
        for i, reply in zip(active, replies):
            trace = traces[i]
            call, problem = parse_call(reply, tools)
            if call is None:
                trace.steps.append({"reply": reply, "observation": problem})
                trace.outcome = "wrong tool" if problem.startswith("wrong tool") else "malformed"
                continue
            if call["tool"] == "answer":
                trace.answer = call["input"]
                trace.steps.append({"reply": reply, "observation": ""})
                continue
            key = (call["tool"], call["input"].strip().lower())
            if key in seen[i]:
                trace.steps.append({"reply": reply, "observation": "repeated call"})
                trace.outcome = "loop"
                continue
            seen[i].add(key)
            try:
                obs = by_name[call["tool"]](call["input"])
            except ToolError as e:
                obs = f"error: {e}"
            trace.steps.append({"reply": reply, "observation": obs})
            convs[i] = convs[i] + [{"role": "assistant", "content": json.dumps(call)},
                                   {"role": "user", "content": _observation(obs)}]
            still.append(i)
        active = still
    for i in active:
        traces[i].outcome = "step limit"
    return traces


def run_agent(llm: Callable[[list[dict[str, str]], bool], str], question: str, tools: Sequence[Tool],
              system: str, max_steps: int = 3, examples: Sequence = (), tool_choice: str = "auto") -> AgentTrace:
    """`run_agents` for one question, with llm(messages, allow_answer) -> the reply text.

    >>> replies = iter(['{"tool": "calculator", "input": "6*7"}', '{"tool": "answer", "input": "42"}'])
    >>> tr = run_agent(lambda m, a: next(replies), "What is 6*7?", [calculator_tool()], "sys")
    >>> tr.answer, tr.outcome, tr.steps[0]["observation"]
    ('42', 'answered', '42')
    """
    return run_agents(lambda convs, allow: [llm(c, allow) for c in convs], [question], tools, system,
                      max_steps=max_steps, examples=examples, tool_choice=tool_choice)[0]
