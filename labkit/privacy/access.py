"""Access control for a deployed model: `ModelAPI`, an API-key, rate-limit and audit wrapper, and its
errors `AccessDenied`, `RateLimited`.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Callable

import numpy as np


class AccessDenied(PermissionError):
    """The API key is unknown, or its role may not call this action."""


class RateLimited(RuntimeError):
    """The client sent more requests than its quota allows in the current window."""


class ModelAPI:
    """A model behind an API: keys with roles, a sliding-window rate limit, rounded outputs, an audit log.

    >>> api = ModelAPI(lambda texts: np.full((len(texts), 2), 0.5), keys={"k1": "user"}, max_requests=2, window_s=60)
    >>> api.predict("k1", ["hello"]).shape
    (1, 2)
    """

    ROLES = {"user": {"predict"}, "admin": {"predict", "audit"}}

    def __init__(self, predict_proba: Callable[[list[str]], np.ndarray], keys: dict[str, str],
                 max_requests: int | None = None, window_s: float = 3600.0, decimals: int | None = None,
                 labels_only: bool = False, clock: Callable[[], float] = time.monotonic):
        bad = {k: r for k, r in keys.items() if r not in self.ROLES}
        if bad:
            raise ValueError(f"unknown roles {bad}; valid roles: {', '.join(self.ROLES)}")
        if max_requests is not None and max_requests < 1:
            raise ValueError(f"max_requests must be >= 1 or None (no limit); got {max_requests}")
        self._predict, self.keys = predict_proba, dict(keys)
        self.max_requests, self.window_s, self.decimals, self.labels_only = max_requests, window_s, decimals, labels_only
        self.clock = clock
        self._seen: dict[str, deque] = defaultdict(deque)
        self.log: list[dict] = []

    def _authorise(self, key: str, action: str, n: int) -> None:
        role = self.keys.get(key)
        if role is None or action not in self.ROLES[role]:
            self.log.append({"t": self.clock(), "key": key[:4] + "...", "action": action, "ok": False, "why": "denied"})
            raise AccessDenied(f"key may not call {action!r}" if role else "unknown API key")
        if self.max_requests is not None and action == "predict":
            now, seen = self.clock(), self._seen[key]
            while seen and seen[0] <= now - self.window_s:  # forget requests older than the window
                seen.popleft()
            if len(seen) + n > self.max_requests:
                self.log.append({"t": now, "key": key[:4] + "...", "action": action, "ok": False, "why": "rate"})
                raise RateLimited(f"quota of {self.max_requests} texts per {self.window_s:g} s used up "
                                  f"({len(seen)} used, {n} asked)")
            seen.extend([now] * n)
        self.log.append({"t": self.clock(), "key": key[:4] + "...", "action": action, "ok": True, "n": n})

    def predict(self, key: str, texts: list[str]) -> np.ndarray:
        """Class probabilities (or one-hot labels, or rounded probabilities) for `texts`."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        self._authorise(key, "predict", len(texts))
        p = np.asarray(self._predict(list(texts)), float)
        if self.labels_only:
            return np.eye(p.shape[1])[p.argmax(1)]
        return p.round(self.decimals) if self.decimals is not None else p

    def audit(self, key: str) -> list[dict]:
        """The audit log (admins only)."""
        self._authorise(key, "audit", 0)
        return list(self.log)
