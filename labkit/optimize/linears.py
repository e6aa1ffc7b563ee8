"""Finding and swapping the `nn.Linear` layers of a model (quantization, pruning, low rank)."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module], skip: Sequence[str]) -> int:
    n = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(s in full for s in skip):
                setattr(module, child_name, make(child))
                n += 1
    return n


def _prunable(model: nn.Module, skip: Sequence[str]) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and not any(s in n for s in skip)]
