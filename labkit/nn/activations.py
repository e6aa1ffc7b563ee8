"""Activations and their derivatives, each with the PyTorch function it must agree with."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn


_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def sigmoid(x: Tensor) -> Tensor:
    """The logistic function 1 / (1 + e^-x).

    >>> sigmoid(torch.tensor([0.0])).item()
    0.5
    """
    # exp(-x) overflows to inf for very negative x, and 1/inf = 0 is the right limit: no NaN.
    return 1.0 / (1.0 + torch.exp(-x))


def d_sigmoid(x: Tensor) -> Tensor:
    """sigma'(x) = sigma(x) (1 - sigma(x)); at most 1/4, which is why deep sigmoid stacks vanish.

    >>> d_sigmoid(torch.tensor([0.0])).item()
    0.25
    """
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x: Tensor) -> Tensor:
    """tanh(x) = 2 sigma(2x) - 1 (the same curve as sigmoid, centred and stretched).

    >>> round(tanh(torch.tensor([1.0])).item(), 4)
    0.7616
    """
    return 2.0 * sigmoid(2.0 * x) - 1.0


def d_tanh(x: Tensor) -> Tensor:
    """tanh'(x) = 1 - tanh(x)^2.

    >>> d_tanh(torch.tensor([0.0])).item()
    1.0
    """
    return 1.0 - tanh(x) ** 2


def relu(x: Tensor) -> Tensor:
    """max(0, x).

    >>> relu(torch.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return torch.where(x > 0, x, torch.zeros_like(x))


def d_relu(x: Tensor) -> Tensor:
    """1 for x > 0, else 0 (PyTorch's convention at the kink x = 0 is 0 too).

    >>> d_relu(torch.tensor([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 1.0]
    """
    return (x > 0).to(x.dtype)


def gelu(x: Tensor) -> Tensor:
    """GELU(x) = x Phi(x), Phi the standard normal CDF (the activation of BERT and GPT-2).

    >>> round(gelu(torch.tensor([1.0])).item(), 4)
    0.8413
    """
    return 0.5 * x * (1.0 + torch.erf(x / _SQRT2))


def d_gelu(x: Tensor) -> Tensor:
    """GELU'(x) = Phi(x) + x phi(x), phi the standard normal density.

    >>> d_gelu(torch.tensor([0.0])).item()
    0.5
    """
    cdf = 0.5 * (1.0 + torch.erf(x / _SQRT2))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def gelu_tanh(x: Tensor) -> Tensor:
    """The tanh approximation of GELU used by the original GPT-2 code (`approximate="tanh"`).

    >>> round(gelu_tanh(torch.tensor([1.0])).item(), 4)
    0.8412
    """
    return 0.5 * x * (1.0 + tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def d_gelu_tanh(x: Tensor) -> Tensor:
    """Derivative of `gelu_tanh` by the product and chain rules.

    >>> d_gelu_tanh(torch.tensor([0.0])).item()
    0.5
    """
    u = _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
    t = tanh(u)
    du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "sigmoid": (sigmoid, d_sigmoid),
    "tanh": (tanh, d_tanh),
    "relu": (relu, d_relu),
    "gelu": (gelu, d_gelu),
    "gelu_tanh": (gelu_tanh, d_gelu_tanh),
}

# The PyTorch functions each activation must agree with (used by the tests and the chapter).
TORCH_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "gelu_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),
}


def activation(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(f, f') for an activation name.

    >>> f, df = activation("tanh"); df(torch.tensor([0.0])).item()
    1.0
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
