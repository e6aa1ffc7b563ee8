"""labkit: the small helper package of the LLM lab book.

A chapter starts with `labkit.setup(chapter="NN")`, records its results with
`labkit.record(name, value)` and ends with `labkit.check_targets()`. Models and data that ship
inside packages come from `labkit.assets` and `labkit.data`; `labkit run` executes chapters.
"""
from .book import check_targets, load_book, record, recorded
from .env import setup

__version__ = "0.1.0"
__all__ = ["setup", "record", "recorded", "check_targets", "load_book", "__version__"]
