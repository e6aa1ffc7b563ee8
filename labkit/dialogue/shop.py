"""The bookshop's SQLite database and the tools (database API) a bot may call.

`create_database(seed)` builds and fills it; `call_tool(con, name, args)` is the only door a bot uses:
arguments are validated (`clean_slot`) and every query is parameterised SQL, so neither a user's text
nor a model's output is ever executed.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import sqlite3
from typing import Any, Callable

TODAY = dt.date(2026, 3, 15)  # a fixed "today" keeps the return rule (30 days) reproducible
RETURN_DAYS = 30
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
REASONS = ("damaged", "wrong book", "changed my mind")
INTENTS: dict[str, tuple[str, ...]] = {  # intent -> slots the tool needs, in the order the bot asks
    "order_status": ("order_id",), "return_order": ("order_id", "reason"),
    "opening_hours": ("day",), "book_stock": ("title",)}
SLOTS = ("order_id", "reason", "day", "title")

_ADJ = "Silent Golden Hidden Broken Last Winter Distant Secret Burning Quiet Lost Crimson Northern Endless".split()
_NOUN = "River Garden Empire Lantern Harbour Orchard Mirror Compass Forest Island Tower Letter Voyage Clock".split()
_FIRST = "Ana Ben Chen Dara Eli Fatima Grace Hiro Ivan Jia Kofi Lena Mei Nora Omar Priya".split()
_LAST = "Smith Wang Garcia Okafor Kim Novak Silva Haddad Lee Rossi Khan Meyer Tan Costa".split()


def create_database(seed: int = 0, n_books: int = 40, n_orders: int = 150, path: str = ":memory:") -> sqlite3.Connection:
    """Create and fill the bookshop database; returns an open connection.

    >>> con = create_database(seed=0); con.execute("SELECT COUNT(*) FROM books").fetchone()[0]
    40
    >>> con.execute("SELECT opens, closes FROM hours WHERE day = 'sunday'").fetchone()
    (None, None)
    """
    if not 1 <= n_books <= len(_ADJ) * len(_NOUN):
        raise ValueError(f"n_books must be between 1 and {len(_ADJ) * len(_NOUN)}, got {n_books}")
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.executescript("""
        DROP TABLE IF EXISTS returns; DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS books; DROP TABLE IF EXISTS hours;
        CREATE TABLE books (book_id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL, author TEXT NOT NULL,
                            price REAL NOT NULL, stock INTEGER NOT NULL);
        CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer TEXT NOT NULL,
                             book_id INTEGER NOT NULL REFERENCES books(book_id),
                             status TEXT NOT NULL CHECK (status IN ('processing', 'shipped', 'delivered', 'cancelled')),
                             order_date TEXT NOT NULL, delivered_date TEXT);
        CREATE TABLE returns (return_id INTEGER PRIMARY KEY, order_id INTEGER UNIQUE NOT NULL REFERENCES orders(order_id),
                              reason TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE hours (day TEXT PRIMARY KEY, opens TEXT, closes TEXT);
    """)
    titles = rng.sample([f"The {a} {n}" for a in _ADJ for n in _NOUN], n_books)
    con.executemany("INSERT INTO books VALUES (?, ?, ?, ?, ?)",
                    [(i + 1, t, f"{rng.choice(_FIRST)} {rng.choice(_LAST)}", round(rng.uniform(6, 30), 2),
                      rng.choice([0, 0, 1, 2, 3, 5, 8, 12])) for i, t in enumerate(titles)])
    ids = rng.sample(range(10000, 100000), n_orders)
    rows = []
    for oid in ids:
        ordered = TODAY - dt.timedelta(days=rng.randint(0, 70))
        status = rng.choices(["processing", "shipped", "delivered", "cancelled"], [2, 3, 6, 1])[0]
        delivered = ordered + dt.timedelta(days=rng.randint(2, 6)) if status == "delivered" else None
        if delivered and delivered > TODAY:
            delivered = TODAY
        rows.append((oid, f"{rng.choice(_FIRST)} {rng.choice(_LAST)}", rng.randint(1, n_books), status,
                     ordered.isoformat(), delivered.isoformat() if delivered else None))
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO hours VALUES (?, ?, ?)",
                    [(d, "09:00", "19:00") for d in DAYS[:5]] + [("saturday", "10:00", "18:00"), ("sunday", None, None)])
    con.commit()
    return con


# --- tools: the database API a bot may call --------------------------------------------------------

def order_status(con: sqlite3.Connection, order_id: int) -> dict[str, Any]:
    """An order with its book title, or {"error": ...}.

    >>> con = create_database(); oid = con.execute("SELECT MIN(order_id) FROM orders").fetchone()[0]
    >>> sorted(order_status(con, oid))
    ['delivered_date', 'order_date', 'order_id', 'status', 'title']
    """
    row = con.execute("SELECT o.order_id, b.title, o.status, o.order_date, o.delivered_date FROM orders o "
                      "JOIN books b USING (book_id) WHERE o.order_id = ?", (order_id,)).fetchone()
    if row is None:
        return {"error": f"no order {order_id}"}
    return dict(zip(("order_id", "title", "status", "order_date", "delivered_date"), row))


def return_decision(order: dict[str, Any]) -> tuple[bool, str]:
    """The shop's return rule: delivered orders, within RETURN_DAYS days of delivery.

    >>> return_decision({"status": "shipped", "delivered_date": None})
    (False, 'the order has not been delivered yet (status: shipped)')
    """
    if order["status"] != "delivered":
        return False, f"the order has not been delivered yet (status: {order['status']})"
    days = (TODAY - dt.date.fromisoformat(order["delivered_date"])).days
    if days > RETURN_DAYS:
        return False, f"it was delivered {days} days ago, more than {RETURN_DAYS}"
    return True, f"it was delivered {days} days ago"


def return_order(con: sqlite3.Connection, order_id: int, reason: str) -> dict[str, Any]:
    """Apply the return rule; an accepted return is written to the `returns` table.

    >>> con = create_database(); return_order(con, 1, "damaged")
    {'error': 'no order 1'}
    """
    order = order_status(con, order_id)
    if "error" in order:
        return order
    ok, why = return_decision(order)
    if ok:
        con.execute("INSERT OR IGNORE INTO returns (order_id, reason, created) VALUES (?, ?, ?)",
                    (order_id, reason, TODAY.isoformat()))
        con.commit()
    return {"order_id": order_id, "title": order["title"], "accepted": ok, "why": why}


def opening_hours(con: sqlite3.Connection, day: str) -> dict[str, Any]:
    """Opening hours of one weekday.

    >>> opening_hours(create_database(), "saturday")
    {'day': 'saturday', 'opens': '10:00', 'closes': '18:00'}
    """
    row = con.execute("SELECT day, opens, closes FROM hours WHERE day = ?", (day,)).fetchone()
    return dict(zip(("day", "opens", "closes"), row)) if row else {"error": f"no day {day!r}"}


def book_stock(con: sqlite3.Connection, title: str) -> dict[str, Any]:
    """A book by title (case-insensitive): author, price, copies in stock.

    >>> book_stock(create_database(), "no such book")
    {'error': "no book titled 'no such book'"}
    """
    row = con.execute("SELECT title, author, price, stock FROM books WHERE lower(title) = lower(?)", (title,)).fetchone()
    return dict(zip(("title", "author", "price", "stock"), row)) if row else {"error": f"no book titled {title!r}"}


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {"order_status": order_status, "return_order": return_order,
                                                   "opening_hours": opening_hours, "book_stock": book_stock}


def clean_slot(slot: str, value: Any) -> Any:
    """A slot value in canonical form, or None when it is not valid (a model may write anything).

    >>> clean_slot("order_id", "#12345"), clean_slot("day", "Monday"), clean_slot("reason", "broken")
    (12345, 'monday', None)
    """
    if value is None:
        return None
    if slot == "order_id":
        m = re.fullmatch(r"#?\s*(\d{5})", str(value).strip())
        return int(m.group(1)) if m else None
    if slot == "day":
        return str(value).strip().lower() if str(value).strip().lower() in DAYS else None
    if slot == "reason":
        return str(value).strip().lower() if str(value).strip().lower() in REASONS else None
    if slot == "title":
        return str(value).strip() or None if isinstance(value, str) else None
    return None


def call_tool(con: sqlite3.Connection, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run tool `name` with validated arguments; an unknown tool or a bad argument is an error result.

    >>> call_tool(create_database(), "opening_hours", {"day": "Sunday"})
    {'day': 'sunday', 'opens': None, 'closes': None}
    >>> call_tool(create_database(), "drop_table", {})
    {'error': "unknown tool 'drop_table'"}
    """
    if name not in TOOLS:
        return {"error": f"unknown tool {name!r}"}
    clean = {s: clean_slot(s, args.get(s)) for s in INTENTS[name]}
    bad = [s for s, v in clean.items() if v is None]
    if bad:
        return {"error": f"missing or invalid {', '.join(bad)}"}
    return TOOLS[name](con, **clean)
