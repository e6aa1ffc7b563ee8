"""labkit: the small helper package of the LLM lab book.

A chapter starts with `labkit.setup(chapter="NN")`, records its results with
`labkit.record(name, value)` and ends with `labkit.check_targets()`. Models and data that ship
inside packages come from `labkit.assets` and `labkit.data`; `labkit run` executes chapters.
"""
import os

# PyTorch's OpenMP threads spin while they wait; on a laptop that is doing other work this makes CPU
# training many times slower. Passive waiting costs little when the machine is idle. (Read when the
# OpenMP runtime starts, so it must be set before the first torch operation.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .book import check_targets, load_book, record, recorded, setup  # noqa: E402

__version__ = "0.1.0"
__all__ = ["setup", "record", "recorded", "check_targets", "load_book", "__version__"]
