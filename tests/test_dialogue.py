"""labkit.dialogue: the bookshop database and tools, NLU, state tracking, policy, safe parsing, simulation."""
import random
import sqlite3

import pytest

from labkit import dialogue as D


@pytest.fixture(scope="module")
def con():
    return D.create_database(seed=0, n_books=30, n_orders=80)


def test_database_is_reproducible_and_consistent(con):
    other = D.create_database(seed=0, n_books=30, n_orders=80)
    q = "SELECT * FROM orders ORDER BY order_id"
    assert con.execute(q).fetchall() == other.execute(q).fetchall()
    assert con.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 80
    # every order points at a book; delivered orders (and only they) have a delivery date
    assert con.execute("SELECT COUNT(*) FROM orders WHERE book_id NOT IN (SELECT book_id FROM books)").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM orders WHERE (status = 'delivered') != (delivered_date IS NOT NULL)"
                       ).fetchone()[0] == 0
    with pytest.raises(sqlite3.IntegrityError):  # the schema's CHECK constraint holds
        con.execute("INSERT INTO orders VALUES (1, 'x', 1, 'lost', '2026-01-01', NULL)")
    with pytest.raises(ValueError, match="n_books"):
        D.create_database(n_books=0)


def test_return_rule(con):
    d = D.TODAY.isoformat()
    assert D.return_decision({"status": "delivered", "delivered_date": d}) == (True, "it was delivered 0 days ago")
    old = (D.TODAY.replace(day=1).replace(month=1)).isoformat()  # 2026-01-01: 73 days before TODAY
    assert D.return_decision({"status": "delivered", "delivered_date": old})[0] is False
    fresh = D.create_database(seed=0, n_books=30, n_orders=80)
    oid, ddate = fresh.execute("SELECT order_id, delivered_date FROM orders WHERE status = 'delivered' "
                               "ORDER BY delivered_date DESC").fetchone()
    res = D.return_order(fresh, oid, "damaged")
    assert res["accepted"] is True
    assert fresh.execute("SELECT reason FROM returns WHERE order_id = ?", (oid,)).fetchone() == ("damaged",)


def test_tools_validate_arguments(con):
    assert D.call_tool(con, "order_status", {"order_id": "12"}) == {"error": "missing or invalid order_id"}
    assert D.call_tool(con, "opening_hours", {"day": "funday"}) == {"error": "missing or invalid day"}
    assert D.call_tool(con, "book_stock", {"title": "x'; DROP TABLE books; --"})["error"].startswith("no book")
    assert con.execute("SELECT COUNT(*) FROM books").fetchone()[0] == 30  # parameterised SQL: nothing dropped
    assert D.call_tool(con, "opening_hours", {"day": "MONDAY"}) == {"day": "monday", "opens": "09:00", "closes": "19:00"}
    assert D.clean_slot("order_id", 123456) is None and D.clean_slot("order_id", " #54321 ") == 54321


def test_understand():
    titles = ["The Silent River", "The Lost Clock", "The Lost Clock Tower"]
    assert D.understand("Where is my order 54321?", titles) == ("order_status", {"order_id": 54321})
    assert D.understand("Do you have the lost clock tower?", titles) == ("book_stock", {"title": "The Lost Clock Tower"})
    assert D.understand("Are you open tomorrow?", titles) == ("opening_hours", {"day": "monday"})  # TODAY is a Sunday
    assert D.understand("The cover is torn.", titles) == (None, {"reason": "damaged"})
    assert D.understand("123456 is not an order id", titles) == (None, {})
    assert D.find_title("I want the silnt river", titles) == "The Silent River"
    assert D.find_title("something else entirely", titles) is None


def test_state_tracking_and_policy():
    s = D.DialogueState()
    assert D.rule_policy(s) == {"act": "request", "slot": "intent"}
    D.track(s, "return_order", {})
    assert D.rule_policy(s) == {"act": "request", "slot": "order_id"}
    D.track(s, None, {"order_id": 54321})
    D.track(s, None, {"reason": "wrong book"})
    assert D.rule_policy(s) == {"act": "call", "tool": "return_order", "args": {"order_id": 54321, "reason": "wrong book"}}
    D.track(s, "order_status", {})  # the order number is remembered across intents
    assert D.rule_policy(s)["args"] == {"order_id": 54321}


def test_parse_action_is_safe():
    assert D.parse_action('{"tool": "book_stock", "args": {"title": "The Lost Clock"}}') == \
        {"act": "call", "tool": "book_stock", "args": {"title": "The Lost Clock"}}
    assert D.parse_action('{"tool": "order_status", "order_id": "abc"}')["args"] == {"order_id": None}
    for bad in ("", "no json", "{'tool': 'x'}", '{"tool": "os.system"}', "[1, 2]", '{"ask": "password"}',
                '{"tool": "order_st', '{"tool": "order_status", "order_id": "\\x12"'):
        assert D.parse_action(bad) is None or D.parse_action(bad)["args"] == {"order_id": None}, bad
    # cut off by the token limit: the complete pairs are kept, the rest ignored
    assert D.parse_action('{"tool": "order_status", "order_id": "12345", "reason": "I am so') == \
        {"act": "call", "tool": "order_status", "args": {"order_id": 12345}}
    assert D.parse_action('{"tool": "order_status"')["args"] == {"order_id": None}  # the bot then asks for it


def test_render_uses_the_tool_result():
    r = D.render({"act": "call", "tool": "book_stock"}, {"title": "T", "author": "A", "price": 9.5, "stock": 0})
    assert r == "T by A costs 9.50; it is out of stock right now."
    assert D.render({"act": "fail"}).startswith("Sorry")


def test_truncate_history():
    lines = ["a " * 5, "b " * 3, "c " * 2]
    count = lambda s: len(s.split())  # noqa: E731
    assert D.truncate_history(lines, 5, count) == lines[1:]
    assert D.truncate_history(lines, 1, count) == lines[2:]  # the newest line is always kept
    assert D.truncate_history([], 5, count) == []


def test_rule_bot_on_dev_phrasings_and_metrics(con):
    goals = D.sample_goals(con, 40, seed=2)
    users = [D.SimulatedUser(g, random.Random(i), "dev", p_upfront=0.5) for i, g in enumerate(goals)]
    res = D.run_dialogues(D.RuleBot(con), users, con, max_turns=5)
    m = D.dialogue_metrics(res)
    assert m["success_rate"] == 1.0 and m["slot_accuracy"] == 1.0  # the rules were written on these phrasings
    assert 1.0 <= m["turns"] <= 3.0
    assert all(r["transcript"][0][0] == "user" for r in res)


def test_llm_bot_loop_with_a_scripted_model(con):
    """The LLM bot's loop with a fake model that answers from a script: parsing, tools, failures."""
    goal = D.Goal("opening_hours", {"day": "friday"})
    script = iter(['not json at all', '{"ask": "day"}', '{"tool": "opening_hours", "day": "Friday"}'])
    bot = D.LLMBot(lambda convs: [next(script) for _ in convs], count=len, max_tokens=100)
    res = D.run_dialogues(bot, [D.SimulatedUser(goal, random.Random(0), "test", p_upfront=0.0)], con, max_turns=5)
    assert res[0]["success"] and res[0]["turns"] == 3 and res[0]["slots_right"] == 1
    assert "did not understand" in res[0]["transcript"][1][1]


def test_simulated_user_validates():
    with pytest.raises(ValueError, match="phrases"):
        D.SimulatedUser(D.Goal("opening_hours", {"day": "friday"}), random.Random(0), "prod")
    with pytest.raises(ValueError, match="no dialogues"):
        D.dialogue_metrics([])


class _CharTokenizer:
    """One token per character (ids = code points): enough to test the prefix tree of the skeletons."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_branch_points_of_the_skeletons():
    b = D.branch_points(_CharTokenizer(), D.LLM_SKELETONS)
    assert b[()] == [ord("a"), ord("t")]  # "ask" or "tool"
    after_tool = tuple(ord(c) for c in 'tool": "')
    assert b[after_tool] == sorted({ord(t[0]) for t in D.INTENTS})  # b, o (order and opening share it), r
    assert tuple(ord(c) for c in 'tool": "o') in b  # order_status vs opening_hours split one letter later
    assert all(len(v) > 1 for v in b.values())
