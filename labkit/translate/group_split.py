"""Train/test splits that keep every group (a number, a Bible chapter) on one side, so the test
measures translation rather than memory.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any


def split_by_group(items: Sequence[dict], key: str | Callable[[dict], Any], test_fraction: float = 0.1,
                   seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split items into train and test so that no group (value of `key`) is in both.

    Random splits of translation pairs leak: the same number in another language, or the next verse
    of the same chapter, would let the test measure memory rather than translation.

    >>> tr, te = split_by_group([{"g": i % 5} for i in range(50)], "g", 0.2)
    >>> {x["g"] for x in tr} & {x["g"] for x in te}
    set()
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    get = key if callable(key) else (lambda x: x[key])
    groups = sorted({get(x) for x in items}, key=str)
    random.Random(seed).shuffle(groups)
    test_groups = set(groups[:max(1, round(len(groups) * test_fraction))])
    train = [x for x in items if get(x) not in test_groups]
    test = [x for x in items if get(x) in test_groups]
    return train, test
