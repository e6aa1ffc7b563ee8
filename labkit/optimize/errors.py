"""The error every optimization helper raises on bad input."""
from __future__ import annotations


class OptimizeError(ValueError):
    """Bad input to an optimization helper; the message says what was wrong and what to do."""
