"""Simulated users (agenda-based, at the dialogue-act level), the dialogue loop and its metrics."""
from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from typing import Any, Sequence

from .pipeline import DialogueState, RuleBot, render
from .shop import DAYS, INTENTS, REASONS, call_tool, create_database

# --- simulated users -----------------------------------------------------------------------------

# Two phrasings sets: the rules above were written looking at "dev"; "test" is held out (written by
# the same author, so it is not independent: a real user test would be the honest next step).
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "dev": {"order_status": ("Where is my order?", "Can you check the status of my order?", "Has my order shipped yet?"),
            "return_order": ("I want to return a book.", "I'd like a refund for my order.", "How do I return my order?"),
            "opening_hours": ("When are you open?", "What are your opening hours?", "What time do you close?"),
            "book_stock": ("Do you have a book in stock?", "Is a book available?", "Do you sell a book I want?"),
            "order_id": ("The order number is {v}.", "It's order {v}.", "{v}"),
            "day": ("On {v}.", "I want to come on {v}.", "{v}"),
            "title": ("The book is {v}.", "I am looking for {v}.", "{v}"),
            "damaged": ("It arrived damaged.", "The cover is torn."), "wrong book": ("You sent the wrong book.",),
            "changed my mind": ("I changed my mind.", "I no longer want it.")},
    "test": {"order_status": ("My package still hasn't arrived, can you look into it?", "Could you track an order for me?",
                              "Any news on my delivery?", "I am still waiting for the book I bought."),
             "return_order": ("I would like to send a book back.", "Can I get my money back for a purchase?",
                              "I need to return something I bought."),
             "opening_hours": ("Are you open at the weekend?", "Until when can I come to the shop?",
                               "What hours does the store keep?"),
             "book_stock": ("Do you carry a novel I am after?", "Are there copies left of a book?",
                            "I wonder if a title is available.", "Can I buy a book from you?"),
             "order_id": ("My order number: {v}", "Sure, it is #{v}.", "order {v} please"),
             "day": ("{v} afternoon", "Probably {v}.", "This {v}."),
             "title": ("It's called {v}.", "{v}, please.", "the one titled {v}"),
             "damaged": ("The pages are ripped.", "It came broken."), "wrong book": ("It is the wrong title.",),
             "changed my mind": ("I don't want it any more.", "I just changed my mind.")},
}


@dataclass
class Goal:
    intent: str
    slots: dict[str, Any]


def sample_goals(con: sqlite3.Connection, n: int, seed: int = 0) -> list[Goal]:
    """`n` user goals over the four intents, with slot values from the database.

    >>> [g.intent for g in sample_goals(create_database(), 4, seed=1)]
    ['return_order', 'book_stock', 'return_order', 'book_stock']
    """
    rng = random.Random(seed)
    orders = [r[0] for r in con.execute("SELECT order_id FROM orders ORDER BY order_id")]
    titles = [r[0] for r in con.execute("SELECT title FROM books ORDER BY book_id")]
    goals = []
    for _ in range(n):
        intent = rng.choice(list(INTENTS))
        values = {"order_id": rng.choice(orders), "reason": rng.choice(REASONS), "day": rng.choice(DAYS),
                  "title": rng.choice(titles)}
        goals.append(Goal(intent, {s: values[s] for s in INTENTS[intent]}))
    return goals


class SimulatedUser:
    """An agenda-based user: opens with its intent (each slot given up front with probability
    `p_upfront`), answers the slot the bot asks for, restates the whole goal when the bot misfires,
    and leaves when a tool call matches its goal. It reacts to the bot's act, not its wording.

    >>> u = SimulatedUser(Goal("opening_hours", {"day": "friday"}), random.Random(0), "dev", p_upfront=1.0)
    >>> u.first(), u.respond({"act": "call", "tool": "opening_hours", "args": {"day": "friday"}})
    ('What are your opening hours? I want to come on Friday.', None)
    """

    def __init__(self, goal: Goal, rng: random.Random, phrases: str = "test", p_upfront: float = 0.5,
                 p_typo: float = 0.0):
        if phrases not in PHRASES:
            raise ValueError(f"phrases must be one of {list(PHRASES)}, got {phrases!r}")
        self.goal, self.rng, self.p, self.p_upfront, self.p_typo = goal, rng, PHRASES[phrases], p_upfront, p_typo
        self.success = False

    def _value(self, slot: str) -> str:
        v = self.goal.slots[slot]
        if slot == "title" and self.rng.random() < self.p_typo:  # drop one letter: the NLU must forgive it
            i = self.rng.randrange(4, len(v))
            return (v[:i] + v[i + 1:]).lower()
        return v.capitalize() if slot == "day" and self.rng.random() < 0.5 else str(v)

    def say_slot(self, slot: str) -> str:
        if slot == "reason":
            return self.rng.choice(self.p[self.goal.slots["reason"]])
        return self.rng.choice(self.p[slot]).format(v=self._value(slot))

    def first(self, everything: bool = False) -> str:
        parts = [self.rng.choice(self.p[self.goal.intent])]
        parts += [self.say_slot(s) for s in self.goal.slots if everything or self.rng.random() < self.p_upfront]
        return " ".join(parts)

    def respond(self, action: dict[str, Any]) -> str | None:
        """The user's next utterance, or None when the goal is met."""
        if action.get("act") == "call" and action.get("tool") == self.goal.intent and \
                action.get("args") == self.goal.slots:
            self.success = True
            return None
        if action.get("act") == "request" and action.get("slot") in self.goal.slots:
            return self.say_slot(action["slot"])
        return "No, that is not what I asked. " + self.first(everything=True)


def run_dialogues(bot: Any, users: Sequence[SimulatedUser], con: sqlite3.Connection, max_turns: int = 6,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Run one dialogue per user in lock step (all bot turns of a round in one `bot.act` call).

    A dialogue ends when the user's goal is met or after `max_turns` bot turns.

    >>> con = create_database(); users = [SimulatedUser(g, random.Random(0)) for g in sample_goals(con, 5)]
    >>> [r["success"] for r in run_dialogues(RuleBot(con), users, con)]
    [True, True, True, True, True]
    """
    from tqdm.auto import tqdm

    states = [DialogueState(history=[("user", u.first())]) for u in users]
    calls: list[list[dict[str, Any]]] = [[] for _ in users]
    active = list(range(len(users)))
    for _ in tqdm(range(max_turns), desc="turns", disable=not progress, leave=False):
        if not active:
            break
        actions = bot.act([states[i] for i in active])
        still = []
        for i, action in zip(active, actions):
            result = call_tool(con, action["tool"], action["args"]) if action["act"] == "call" else None
            if action["act"] == "call":
                calls[i].append(action)
                states[i].last_result = result
                if "error" in result:  # a wrong value must not stick in memory: ask for it again
                    for s in INTENTS[action["tool"]]:
                        states[i].slots.pop(s, None)
            states[i].history.append(("bot", render(action, result)))
            reply = users[i].respond(action)
            if reply is not None:
                states[i].history.append(("user", reply))
                still.append(i)
        active = still
    out = []
    for u, s, c in zip(users, states, calls):
        final = next((a["args"] for a in reversed(c) if a["tool"] == u.goal.intent), {})
        out.append({"intent": u.goal.intent, "success": u.success, "turns": sum(w == "user" for w, _ in s.history),
                    "slots_right": sum(final.get(k) == v for k, v in u.goal.slots.items()),
                    "slots": len(u.goal.slots), "transcript": s.history})
    return out


def dialogue_metrics(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Task success rate, user turns per dialogue (all, and successful only) and slot accuracy (the share
    of goal slot values that the bot's last call for the goal's intent got right; no call counts as wrong).

    >>> dialogue_metrics([{"success": True, "turns": 2, "slots_right": 1, "slots": 1},
    ...                   {"success": False, "turns": 6, "slots_right": 1, "slots": 2}])
    {'success_rate': 0.5, 'turns': 4.0, 'turns_success': 2.0, 'slot_accuracy': 0.6666666666666666}
    """
    if not results:
        raise ValueError("no dialogues to score")
    ok = [r for r in results if r["success"]]
    return {"success_rate": len(ok) / len(results), "turns": sum(r["turns"] for r in results) / len(results),
            "turns_success": sum(r["turns"] for r in ok) / len(ok) if ok else float("nan"),
            "slot_accuracy": sum(r["slots_right"] for r in results) / sum(r["slots"] for r in results)}
