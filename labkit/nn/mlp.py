"""A multi-layer perceptron with a hand-written backward pass."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .activations import activation


def init_mlp(sizes: Sequence[int], seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    """Weights [W1, b1, W2, b2, ...] of an MLP with layer widths `sizes`, W_l of shape (out, in).

    >>> [tuple(p.shape) for p in init_mlp([4, 8, 3])]
    [(8, 4), (8,), (3, 8), (3,)]
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {list(sizes)}")
    g = torch.Generator().manual_seed(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
        bound = 1.0 / math.sqrt(n_in)
        params.append((torch.rand(n_out, n_in, generator=g, dtype=dtype) * 2 - 1) * bound)
        params.append((torch.rand(n_out, generator=g, dtype=dtype) * 2 - 1) * bound)
    return params


def _check_params(params: Sequence[Tensor]) -> None:
    if len(params) == 0 or len(params) % 2:
        raise ValueError(f"params must be [W1, b1, W2, b2, ...]; got {len(params)} tensors")


def mlp_forward(x: Tensor, params: Sequence[Tensor], act: str = "relu") -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Logits of the MLP and the cache the backward pass needs: (layer input, pre-activation) per layer.

    >>> out, cache = mlp_forward(torch.zeros(2, 4, dtype=torch.float64), init_mlp([4, 8, 3]))
    >>> out.shape, len(cache)
    (torch.Size([2, 3]), 2)
    """
    _check_params(params)
    f, _ = activation(act)
    cache = []
    a = x
    n_layers = len(params) // 2
    for l in range(n_layers):
        W, b = params[2 * l], params[2 * l + 1]
        z = a @ W.T + b
        cache.append((a, z))
        a = f(z) if l < n_layers - 1 else z  # no activation on the output layer: those are logits
    return a, cache


@torch.no_grad()  # the hand-written backward *is* the gradient: it needs no autograd graph of its own
def mlp_backward(dout: Tensor, params: Sequence[Tensor], cache: list[tuple[Tensor, Tensor]],
                 act: str = "relu") -> tuple[Tensor, list[Tensor]]:
    """Backpropagation by hand: from dL/dlogits to (dL/dx, [dL/dW1, dL/db1, ...]).

    >>> p = init_mlp([4, 8, 3]); out, cache = mlp_forward(torch.ones(2, 4, dtype=torch.float64), p)
    >>> dx, grads = mlp_backward(torch.ones_like(out), p, cache); [tuple(g.shape) for g in grads][:2]
    [(8, 4), (8,)]
    """
    _check_params(params)
    _, df = activation(act)
    grads: list[Tensor] = [torch.empty(0)] * len(params)
    dz = dout
    for l in reversed(range(len(params) // 2)):
        a_prev, _ = cache[l]
        W = params[2 * l]
        grads[2 * l] = dz.T @ a_prev          # z = a W^T + b  =>  dL/dW = dz^T a
        grads[2 * l + 1] = dz.sum(0)          # the bias is broadcast over the batch: sum it back
        da = dz @ W                           # dL/da_prev
        if l > 0:
            dz = da * df(cache[l - 1][1])     # through the previous layer's activation, elementwise
    return da, grads


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and its gradient w.r.t. the logits, (softmax - onehot) / batch.

    >>> loss, d = softmax_cross_entropy(torch.zeros(2, 4), torch.tensor([0, 1])); round(loss.item(), 4)
    1.3863
    """
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (batch, classes) and y (batch,); got {tuple(logits.shape)} and {tuple(y.shape)}")
    # Subtracting the row maximum changes nothing mathematically and keeps exp() from overflowing.
    shifted = logits - logits.max(dim=1, keepdim=True).values
    logp = shifted - shifted.exp().sum(1, keepdim=True).log()
    n = logits.shape[0]
    loss = -logp[torch.arange(n), y].mean()
    d = logp.exp()
    d[torch.arange(n), y] -= 1.0
    return loss, d / n


class _HandMLP(torch.autograd.Function):
    """Plugs the hand-written backward into autograd, so `gradcheck` can test it."""

    @staticmethod
    def forward(ctx, x: Tensor, act: str, *params: Tensor) -> Tensor:  # type: ignore[override]
        out, cache = mlp_forward(x, params, act)
        ctx.act, ctx.cache = act, cache
        ctx.save_for_backward(*params)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):  # type: ignore[override]
        dx, grads = mlp_backward(dout, ctx.saved_tensors, ctx.cache, ctx.act)
        return (dx, None, *grads)


def mlp_apply(x: Tensor, params: Sequence[Tensor], act: str = "relu") -> Tensor:
    """The MLP as an autograd op whose backward is `mlp_backward` (not autograd's).

    >>> p = [t.requires_grad_() for t in init_mlp([3, 5, 2])]; x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    >>> torch.autograd.gradcheck(lambda x, *p: mlp_apply(x, p, "tanh"), (x, *p))
    True
    """
    _check_params(params)
    return _HandMLP.apply(x, act, *params)


def mlp_to_torch(params: Sequence[Tensor], act: str = "relu") -> nn.Sequential:
    """An `nn.Sequential` of Linear layers and activations holding a copy of `params`.

    >>> mlp_to_torch(init_mlp([4, 8, 3]), "gelu")
    Sequential(...)
    """
    _check_params(params)
    torch_act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU,
                 "gelu_tanh": lambda: nn.GELU(approximate="tanh")}
    activation(act)  # validates the name
    layers: list[nn.Module] = []
    n_layers = len(params) // 2
    for l in range(n_layers):
        W, b = params[2 * l], params[2 * l + 1]
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=W.dtype)
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        layers.append(lin)
        if l < n_layers - 1:
            layers.append(torch_act[act]())
    return nn.Sequential(*layers)
