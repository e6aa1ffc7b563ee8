"""Neural-network pieces written from their equations, each checked against PyTorch.

- activations and their derivatives (`ACTIVATIONS`, `activation`);
- a multi-layer perceptron whose backward pass is written by hand (`mlp_forward`,
  `mlp_backward`, `mlp_apply` for `torch.autograd.gradcheck`, `mlp_to_torch`);
- optimizers with `torch.optim`'s interface (`SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`),
  learning-rate schedules (`linear_warmup`, `cosine`, `warmup_cosine`, `exponential`, `LambdaLR`)
  and gradient clipping (`clip_grad_norm`);
- recurrent cells (`rnn_cell`, `lstm_cell`, `gru_cell`), a layer that runs them over time and
  loads `nn.RNN`/`nn.LSTM`/`nn.GRU` weights (`Recurrent`), a character language model on top
  (`RecurrentLM`), and a convolutional text classifier (`TextCNN`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

# --- activations -------------------------------------------------------------------------------

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


# --- a multi-layer perceptron with a hand-written backward pass -------------------------------

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


# --- optimizers ---------------------------------------------------------------------------------

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


# --- learning-rate schedules --------------------------------------------------------------------
# Each schedule is a multiplier of the base learning rate as a function of the step (0, 1, 2, ...),
# the same contract as torch.optim.lr_scheduler.LambdaLR's lr_lambda.

def _check_steps(**kw: int) -> None:
    for k, v in kw.items():
        if int(v) < 1:
            raise ValueError(f"{k} must be >= 1, got {v}")


def linear_warmup(step: int, warmup_steps: int, start_factor: float = 0.0) -> float:
    """Ramp from start_factor to 1 over warmup_steps, then stay at 1 (torch's LinearLR with end_factor=1).

    >>> [linear_warmup(s, 4) for s in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    _check_steps(warmup_steps=warmup_steps)
    return start_factor + (1.0 - start_factor) * min(step, warmup_steps) / warmup_steps


def cosine(step: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Half a cosine from 1 down to min_factor at total_steps, flat afterwards (CosineAnnealingLR).

    >>> [round(cosine(s, 4), 3) for s in range(5)]
    [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    _check_steps(total_steps=total_steps)
    t = min(step, total_steps) / total_steps
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Linear warm-up from 0, then cosine decay to min_factor (transformers' cosine-with-warmup schedule).

    >>> [round(warmup_cosine(s, 2, 6), 3) for s in range(7)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    _check_steps(warmup_steps=warmup_steps, total_steps=total_steps)
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    if step < warmup_steps:
        return step / warmup_steps
    return cosine(step - warmup_steps, total_steps - warmup_steps, min_factor)


def exponential(step: int, gamma: float) -> float:
    """gamma ** step (torch's ExponentialLR).

    >>> exponential(3, 0.5)
    0.125
    """
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1] for a decay, got {gamma}")
    return gamma ** step


class LambdaLR:
    """Set each group's lr to base_lr * lr_lambda(step), like torch.optim.lr_scheduler.LambdaLR.

    >>> opt = SGD([torch.zeros(1, requires_grad=True)], lr=1.0); sch = LambdaLR(opt, lambda s: 0.5 ** s)
    >>> sch.step(); sch.get_last_lr()
    [0.5]
    """

    def __init__(self, optimizer, lr_lambda: Callable[[int], float]):
        if not callable(lr_lambda):
            raise TypeError("lr_lambda must be a function of the step, e.g. lambda s: cosine(s, 1000)")
        self.optimizer, self.lr_lambda, self.last_epoch = optimizer, lr_lambda, 0
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self._apply()

    def _apply(self) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * self.lr_lambda(self.last_epoch)

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]


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


# --- recurrent cells ----------------------------------------------------------------------------
# Weight layouts are PyTorch's: W_ih (G*H, input), W_hh (G*H, H), b_ih and b_hh (G*H,), with the
# gates stacked in the order i, f, g, o for the LSTM (G = 4) and r, z, n for the GRU (G = 3).

def rnn_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
             nonlinearity: str = "tanh") -> Tensor:
    """Elman RNN: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh).

    >>> rnn_cell(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3)).shape
    torch.Size([1, 3])
    """
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    if nonlinearity == "tanh":
        return torch.tanh(pre)
    if nonlinearity == "relu":
        return torch.relu(pre)
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
              b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM: gates i, f, o = sigma(.), candidate g = tanh(.); c' = f c + i g; h' = o tanh(c').

    >>> H = 3; h, c = lstm_cell(torch.zeros(1, 2), (torch.zeros(1, H), torch.zeros(1, H)), torch.zeros(4*H, 2), torch.zeros(4*H, H), torch.zeros(4*H), torch.zeros(4*H))
    >>> h.shape, c.shape
    (torch.Size([1, 3]), torch.Size([1, 3]))
    """
    h, c = state
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g       # the cell state is updated additively: the gradient highway
    h = o * torch.tanh(c)
    return h, c


def gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """GRU: r, z = sigma(.); n = tanh(x W_in + b_in + r (h W_hn + b_hn)); h' = (1 - z) n + z h.

    >>> H = 3; gru_cell(torch.zeros(1, 2), torch.zeros(1, H), torch.zeros(3*H, 2), torch.zeros(3*H, H), torch.zeros(3*H), torch.zeros(3*H)).shape
    torch.Size([1, 3])
    """
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)   # PyTorch (like cuDNN) applies r after the hidden matmul and its bias
    return (1 - z) * n + z * h


_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH_RECURRENT: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Recurrent(nn.Module):
    """One recurrent layer (batch first) that runs `rnn_cell`, `lstm_cell` or `gru_cell` over time.

    Its parameters have nn.RNN/nn.LSTM/nn.GRU's names and shapes, so `load_state_dict` takes theirs.
    >>> lstm = Recurrent("lstm", 8, 16); lstm.load_state_dict(nn.LSTM(8, 16, batch_first=True).state_dict())
    <All keys matched successfully>
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, dtype: torch.dtype | None = None):
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"mode must be one of {', '.join(_GATES)}, got {mode!r}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        G = _GATES[mode] * hidden_size
        kw = {"dtype": dtype}
        self.weight_ih_l0 = nn.Parameter(torch.empty(G, input_size, **kw))
        self.weight_hh_l0 = nn.Parameter(torch.empty(G, hidden_size, **kw))
        self.bias_ih_l0 = nn.Parameter(torch.empty(G, **kw))
        self.bias_hh_l0 = nn.Parameter(torch.empty(G, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's init for all its recurrent layers: U(-1/sqrt(H), 1/sqrt(H)) for every tensor.
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def init_state(self, batch: int, like: Tensor):
        h = like.new_zeros(batch, self.hidden_size)
        return (h, h.clone()) if self.mode == "lstm" else h

    def steps(self, x: Tensor, state=None) -> list:
        """The state after every time step, as the graph nodes themselves (so .retain_grad() works)."""
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (batch, time, {self.input_size}), got {tuple(x.shape)}")
        w = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        state = self.init_state(x.shape[0], x) if state is None else state
        states = []
        for t in range(x.shape[1]):
            xt = x[:, t]
            if self.mode == "rnn":
                state = rnn_cell(xt, state, *w)
            elif self.mode == "lstm":
                state = lstm_cell(xt, state, *w)
            else:
                state = gru_cell(xt, state, *w)
            states.append(state)
        return states

    def forward(self, x: Tensor, state=None):
        """(outputs (batch, time, H), final state) with nn.RNN/GRU's h_n or nn.LSTM's (h_n, c_n), unbatched layer dim dropped."""
        states = self.steps(x, state)
        hs = [s[0] if self.mode == "lstm" else s for s in states]
        return torch.stack(hs, dim=1), states[-1]


def chrono_init(rnn: nn.Module, t_max: int, generator: torch.Generator | None = None) -> nn.Module:
    """Set the gate biases of an LSTM or GRU so its memory spans 1 to t_max steps (Tallec & Ollivier 2018).

    LSTM: forget-gate bias b_f = log(U(1, t_max - 1)) and input-gate bias -b_f; GRU: the update gate
    z (which keeps the old state) gets log(U(1, t_max - 1)). Works on `Recurrent` and nn.LSTM/nn.GRU.
    >>> lstm = chrono_init(nn.LSTM(4, 8), t_max=50); bool(lstm.bias_ih_l0[8:16].min() >= 0)
    True
    """
    H = rnn.hidden_size
    mode = getattr(rnn, "mode", type(rnn).__name__).lower()
    if mode not in ("lstm", "gru"):
        raise ValueError(f"chrono_init needs an LSTM or a GRU (they have gates), got {mode!r}")
    if t_max < 3:
        raise ValueError(f"t_max must be >= 3 (the memory range in steps), got {t_max}")
    with torch.no_grad():
        b = torch.log(torch.empty(H).uniform_(1.0, t_max - 1.0, generator=generator))
        gate = slice(H, 2 * H)  # LSTM gates are i, f, g, o; GRU gates r, z, n: both want the 2nd block
        rnn.bias_ih_l0[gate] = b
        rnn.bias_hh_l0[gate] = 0.0
        if mode == "lstm":
            # A gate that keeps the old cell for ~T steps should let little new input in meanwhile.
            rnn.bias_ih_l0[:H] = -b
            rnn.bias_hh_l0[:H] = 0.0
    return rnn


class RecurrentLM(nn.Module):
    """Embedding -> one recurrent layer -> linear head over the vocabulary (next-token logits).

    >>> lm = RecurrentLM(50, 32, "gru"); lm(torch.zeros(2, 7, dtype=torch.long))[0].shape
    torch.Size([2, 7, 50])
    """

    def __init__(self, vocab_size: int, hidden_size: int, mode: str = "lstm", emb_dim: int | None = None,
                 use_torch: bool = False):
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"mode must be one of {', '.join(_GATES)}, got {mode!r}")
        emb_dim = emb_dim or hidden_size
        self.mode, self.use_torch = mode, use_torch
        self.emb = nn.Embedding(vocab_size, emb_dim)
        # use_torch swaps in PyTorch's C++ loop over time (same maths, faster); the chapter checks both agree.
        self.rnn = (TORCH_RECURRENT[mode](emb_dim, hidden_size, batch_first=True) if use_torch
                    else Recurrent(mode, emb_dim, hidden_size))
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, idx: Tensor, state=None):
        out, state = self.rnn(self.emb(idx), self._to_layer(state))
        return self.head(out), self._from_layer(state)

    # nn.RNN & co. want states with a leading (layers,) dimension; Recurrent does not.
    def _to_layer(self, state):
        if state is None or not self.use_torch:
            return state
        return tuple(s.unsqueeze(0) for s in state) if self.mode == "lstm" else state.unsqueeze(0)

    def _from_layer(self, state):
        if not self.use_torch:
            return state
        return tuple(s.squeeze(0) for s in state) if self.mode == "lstm" else state.squeeze(0)

    @torch.no_grad()
    def generate(self, idx: Tensor, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Sample n tokens after the prompt idx (batch, time), carrying the state forward.

        >>> RecurrentLM(10, 8).generate(torch.zeros(1, 3, dtype=torch.long), 5).shape
        torch.Size([1, 8])
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        logits, state = self(idx)
        out = [idx]
        for _ in range(n):
            probs = torch.softmax(logits[:, -1] / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            out.append(nxt)
            logits, state = self(nxt, state)
        return torch.cat(out, dim=1)


class TextCNN(nn.Module):
    """Kim (2014)-style text classifier: embeddings, 1-D convolutions of several widths, max over time.

    >>> TextCNN(100, 2)(torch.randint(1, 100, (4, 20))).shape
    torch.Size([4, 2])
    """

    def __init__(self, vocab_size: int, num_classes: int, emb_dim: int = 64, widths: Sequence[int] = (2, 3, 4),
                 channels: int = 64, dropout: float = 0.5, padding_idx: int = 0):
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of kernel widths >= 1, got {widths}")
        self.emb = nn.Embedding(vocab_size, emb_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(emb_dim, channels, w) for w in widths)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels * len(widths), num_classes)
        self.max_width = max(widths)

    def forward(self, idx: Tensor) -> Tensor:
        if idx.shape[1] < self.max_width:  # a convolution needs at least `width` positions
            idx = nn.functional.pad(idx, (0, self.max_width - idx.shape[1]), value=self.emb.padding_idx or 0)
        x = self.emb(idx).transpose(1, 2)                      # (batch, emb, time) for Conv1d
        # Each filter is an n-gram detector; max over time keeps its strongest match anywhere.
        feats = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.head(self.drop(torch.cat(feats, dim=1)))
