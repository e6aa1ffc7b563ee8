"""Optimizers with `torch.optim`'s interface, written from their update rules, and gradient clipping."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor


class Optimizer:
    """The part of `torch.optim.Optimizer` a training loop uses: param_groups, state, zero_grad, step.

    >>> opt = SGD([torch.zeros(2, requires_grad=True)], lr=0.1); opt.param_groups[0]["lr"]
    0.1
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list; pass model.parameters()")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        for g in groups:
            unknown = set(g) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"unknown option(s) {sorted(unknown)} in a parameter group; "
                                 f"valid options: {', '.join(defaults)}")
            group = {**defaults, **g, "params": list(g["params"])}
            self._validate(group)
            self.param_groups.append(group)
        # Keyed by the parameter tensor itself, as torch.optim does (tensors hash by identity).
        self.state: dict[Tensor, dict[str, Any]] = {}

    def _validate(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0:
            raise ValueError(f"lr must be >= 0, got {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov and L2 weight decay, with torch.optim.SGD's conventions.

    >>> p = torch.ones(1, requires_grad=True); p.grad = torch.ones(1); SGD([p], lr=0.1).step(); round(p.item(), 6)
    0.9
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _validate(self, group):
        super()._validate(group)
        if group["momentum"] < 0:
            raise ValueError(f"momentum must be >= 0, got {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0 (as in torch.optim.SGD)")

    def _update(self, p, grad, group, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p       # L2: adds wd * p to the gradient
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                # torch's convention: the first step stores the raw gradient, without (1 - dampening).
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(mu).add_(grad, alpha=1 - group["dampening"])
            grad = grad + mu * buf if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; weight_decay is L2 added to the gradient.

    >>> p = torch.ones(1, requires_grad=True); p.grad = torch.ones(1); Adam([p], lr=0.1).step(); round(p.item(), 6)
    0.9
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _validate(self, group):
        super()._validate(group)
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must both lie in [0, 1), got {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"eps must be >= 0, got {group['eps']}")

    def _update(self, p, grad, group, state):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        if wd:
            if self._decoupled:
                p.mul_(1 - lr * wd)                       # AdamW: shrink the weights directly
            else:
                grad = grad + wd * p                      # Adam: L2 goes through the moments
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(grad, alpha=1 - b1)               # m_t = b1 m + (1 - b1) g
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)     # v_t = b2 v + (1 - b2) g^2
        # p -= lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
        denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p <- p (1 - lr wd) before the step.

    >>> p = torch.ones(1, requires_grad=True); p.grad = torch.zeros(1); AdamW([p], lr=0.1, weight_decay=0.5).step(); round(p.item(), 6)
    0.95
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture notes): divide the step by a running RMS of the gradient.

    >>> p = torch.ones(1, requires_grad=True); p.grad = torch.ones(1); RMSprop([p], lr=0.01).step(); round(p.item(), 4)
    0.9
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    def _validate(self, group):
        super()._validate(group)
        if not 0 <= group["alpha"] < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {group['alpha']}")

    def _update(self, p, grad, group, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        if not state:
            state["square_avg"] = torch.zeros_like(p)
        sq = state["square_avg"]
        sq.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        p.addcdiv_(grad, sq.sqrt().add_(group["eps"]), value=-group["lr"])


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011): divide by the root of the sum of all past squared gradients.

    >>> p = torch.ones(1, requires_grad=True); p.grad = torch.ones(1); Adagrad([p], lr=0.1).step(); round(p.item(), 6)
    0.9
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 eps: float = 1e-10, initial_accumulator_value: float = 0.0):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value))

    def _update(self, p, grad, group, state):
        if not state:
            state["step"] = 0
            state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"].addcmul_(grad, grad, value=1)
        p.addcdiv_(grad, state["sum"].sqrt().add_(group["eps"]), value=-clr)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW,
                                          "rmsprop": RMSprop, "adagrad": Adagrad}


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Rescale gradients so their global L2 norm is at most max_norm; returns the norm before.

    >>> p = torch.zeros(2, requires_grad=True); p.grad = torch.tensor([3.0, 4.0])
    >>> clip_grad_norm([p], 1.0).item(), p.grad.norm().item() < 1.0001
    (5.0, True)
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    # The norm of all gradients as one long vector; the small epsilon is torch's, so coefficients match.
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total
