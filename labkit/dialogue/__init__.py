"""A task-oriented customer-service bot for a bookshop, on a real SQLite database.

The pieces of a classic pipeline dialogue system (任务型对话系统), each small enough to read:

- `create_database(seed)`: the shop's SQLite database (books, orders, returns, opening hours), generated.
- tools (`TOOLS`, `call_tool`): the only way a bot touches the database, with validated arguments and
  parameterised SQL, so neither a user's text nor a model's output is ever executed.
- `understand(text, titles)`: rule-based natural-language understanding, intent (意图) and slots (槽位).
- `DialogueState` / `track`: dialogue state tracking (对话状态跟踪) across turns, and what is remembered.
- `rule_policy`: which act comes next (ask for a missing slot, or call a tool); `render`: the reply text.
- `parse_action`: a JSON tool call written by a language model, parsed safely (no eval).
- `SimulatedUser`: an agenda-based user simulator (用户模拟器) with a goal, at the dialogue-act level.
- `run_dialogues`: many dialogues in lock step (so an LLM bot can batch its turns), and `dialogue_metrics`.

Modules: `shop` (database and tools), `pipeline` (NLU, state, policy, replies, the LLM bot),
`simulate` (users, the dialogue loop, metrics). Everything is importable from `labkit.dialogue`.
"""
from .pipeline import (INTENT_KEYWORDS, LLM_SKELETONS, LLM_SYSTEM, REASON_KEYWORDS, DialogueState, LLMBot, RuleBot,
                       branch_points, calibration_bias, chat_json_batch, find_title, llm_messages, parse_action, render, rule_policy, track, truncate_history, understand)
from .shop import (DAYS, INTENTS, REASONS, RETURN_DAYS, SLOTS, TODAY, TOOLS, book_stock, call_tool, clean_slot,
                   create_database, opening_hours, order_status, return_decision, return_order)
from .simulate import PHRASES, Goal, SimulatedUser, dialogue_metrics, run_dialogues, sample_goals

__all__ = [n for n in dir() if not n.startswith("_")]
