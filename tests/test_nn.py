"""labkit.nn against PyTorch: activations, hand-written backprop, optimizers, schedules, cells."""
import math

import pytest
import torch
from torch import nn

from labkit import nn as L

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread avoids contention


@pytest.mark.parametrize("name", list(L.ACTIVATIONS))
def test_activation_and_derivative_match_torch(name):
    x = torch.linspace(-8, 8, 2001, dtype=F64, requires_grad=True)
    f, df = L.activation(name)
    y = L.TORCH_ACTIVATIONS[name](x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert (f(x) - y).abs().max() < 1e-12
    assert (df(x) - g).abs().max() < 1e-12


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="sigmoid, tanh, relu, gelu"):
        L.activation("swish")


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])
def test_hand_backprop_equals_autograd_and_passes_gradcheck(act):
    torch.manual_seed(0)
    params = [p.requires_grad_() for p in L.init_mlp([5, 7, 6, 3], seed=1)]
    x = torch.randn(8, 5, dtype=F64, requires_grad=True)
    y = torch.randint(0, 3, (8,))
    # by hand
    logits, cache = L.mlp_forward(x, params, act)
    loss, dlogits = L.softmax_cross_entropy(logits, y)
    dx, grads = L.mlp_backward(dlogits, params, cache, act)
    # autograd on the same graph, and on the equivalent nn.Sequential
    ref_loss = nn.functional.cross_entropy(logits, y)
    auto = torch.autograd.grad(ref_loss, [x, *params])
    assert abs(loss.item() - ref_loss.item()) < 1e-12
    for mine, ref in zip([dx, *grads], auto):
        assert (mine - ref).abs().max() < 1e-12
    seq = L.mlp_to_torch([p.detach() for p in params], act)
    assert (seq(x) - logits).abs().max() < 1e-12
    assert torch.autograd.gradcheck(lambda x, *p: L.mlp_apply(x, p, act), (x, *params))


def test_gradcheck_catches_a_wrong_backward():
    params = [p.requires_grad_() for p in L.init_mlp([3, 4, 2])]
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    # Using sigmoid's forward with tanh's derivative must fail the numerical check.
    real = L.ACTIVATIONS["sigmoid"]
    try:
        L.ACTIVATIONS["sigmoid"] = (real[0], L.d_tanh)
        assert not torch.autograd.gradcheck(lambda x, *p: L.mlp_apply(x, p, "sigmoid"), (x, *params),
                                            raise_exception=False)
    finally:
        L.ACTIVATIONS["sigmoid"] = real


OPTIMIZER_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("RMSprop", dict(lr=1e-2, weight_decay=1e-2)),
    ("Adagrad", dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2)),
]


@pytest.mark.parametrize("name,kw", OPTIMIZER_CASES)
def test_optimizer_trajectory_equals_torch_optim(name, kw):
    torch.manual_seed(0)
    X, Y = torch.randn(64, 5, dtype=F64), torch.randint(0, 3, (64,))
    init = L.init_mlp([5, 16, 3], seed=2)
    mine = [p.clone().requires_grad_() for p in init]
    ref = [p.clone().requires_grad_() for p in init]
    opt_mine, opt_ref = getattr(L, name)(mine, **kw), getattr(torch.optim, name)(ref, **kw)
    worst = 0.0
    for step in range(40):
        xb, yb = X[step % 8 * 8:(step % 8 + 1) * 8], Y[step % 8 * 8:(step % 8 + 1) * 8]
        for params, opt in ((mine, opt_mine), (ref, opt_ref)):
            opt.zero_grad()
            nn.functional.cross_entropy(L.mlp_forward(xb, params, "tanh")[0], yb).backward()
            opt.step()
        worst = max(worst, max((a - b).abs().max().item() for a, b in zip(mine, ref)))
    assert worst <= 1e-12
    assert (mine[0] - init[0]).abs().max() > 1e-3  # it did move


def test_optimizer_input_validation():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        L.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas must both lie in"):
        L.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        L.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="valid options: lr, momentum"):
        L.SGD([{"params": p, "momentm": 0.9}], lr=0.1)


def test_param_groups_use_their_own_lr():
    a, b = torch.ones(1, requires_grad=True), torch.ones(1, requires_grad=True)
    opt = L.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = torch.ones(1), torch.ones(1)
    opt.step()
    assert a.item() == pytest.approx(0.9) and b.item() == pytest.approx(0.0)


def _torch_lrs(make, steps, lr=1.0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sch = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


def test_schedules_match_torch_and_transformers():
    S = torch.optim.lr_scheduler
    n = 50
    cases = [
        (lambda o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
         lambda s: L.linear_warmup(s, 10, start_factor=0.1)),
        (lambda o: S.CosineAnnealingLR(o, T_max=n, eta_min=0.05), lambda s: L.cosine(s, n, min_factor=0.05)),
        (lambda o: S.ExponentialLR(o, gamma=0.93), lambda s: L.exponential(s, 0.93)),
    ]
    from transformers import get_cosine_schedule_with_warmup

    cases.append((lambda o: get_cosine_schedule_with_warmup(o, 8, n), lambda s: L.warmup_cosine(s, 8, n)))
    for make, mine in cases:
        ref = _torch_lrs(make, n)
        assert max(abs(r - mine(s)) for s, r in enumerate(ref)) < 1e-12


def test_lambda_lr_drives_our_optimizer_like_torch():
    ours = L.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sch = L.LambdaLR(ours, lambda s: L.warmup_cosine(s, 3, 20))
    lrs = []
    for _ in range(20):
        lrs.append(sch.get_last_lr()[0])
        sch.step()
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: L.warmup_cosine(s, 3, 20)), 20, lr=0.5)
    assert lrs == pytest.approx(ref, abs=1e-15)
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        L.warmup_cosine(0, 10, 10)


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn_like(p) * 10
        q.grad = p.grad.clone()
    n_mine = L.clip_grad_norm(a, 1.0)
    n_ref = nn.utils.clip_grad_norm_(b, 1.0)
    assert abs(n_mine.item() - n_ref.item()) < 1e-5
    for p, q in zip(a, b):
        assert (p.grad - q.grad).abs().max() < 1e-7
    total_after = math.sqrt(sum(p.grad.pow(2).sum().item() for p in a))
    assert total_after == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_recurrent_layer_equals_torch_on_the_same_weights(mode):
    torch.manual_seed(0)
    ref = L.TORCH_RECURRENT[mode](6, 8, batch_first=True, dtype=F64)
    mine = L.Recurrent(mode, 6, 8, dtype=F64)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(3, 25, 6, dtype=F64, requires_grad=True)
    out_ref, st_ref = ref(x)
    out_mine, st_mine = mine(x)
    assert (out_ref - out_mine).abs().max() < 1e-12
    if mode == "lstm":
        assert (st_ref[1][0] - st_mine[1]).abs().max() < 1e-12
    # gradients through time agree too
    g_ref = torch.autograd.grad(out_ref.pow(2).sum(), [x, ref.weight_hh_l0])
    g_mine = torch.autograd.grad(out_mine.pow(2).sum(), [x, mine.weight_hh_l0])
    for a, b in zip(g_ref, g_mine):
        assert (a - b).abs().max() < 1e-10


def test_recurrent_lm_scratch_and_torch_agree_and_generate():
    torch.manual_seed(0)
    a = L.RecurrentLM(20, 16, "lstm", emb_dim=8)
    b = L.RecurrentLM(20, 16, "lstm", emb_dim=8, use_torch=True)
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 20, (2, 9))
    la, (h, c) = a(idx)
    lb, _ = b(idx)
    assert (la - lb).abs().max() < 1e-5
    # carrying the state gives the same logits as one long pass
    l1, st = a(idx[:, :4])
    l2, _ = a(idx[:, 4:], st)
    assert (torch.cat([l1, l2], 1) - la).abs().max() < 1e-5
    out = a.generate(idx[:, :3], 6, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 9) and out.max() < 20


def test_text_cnn_shapes_and_short_inputs():
    m = L.TextCNN(50, 3, emb_dim=8, widths=(2, 5), channels=4)
    assert m(torch.randint(1, 50, (4, 30))).shape == (4, 3)
    assert m(torch.randint(1, 50, (2, 2))).shape == (2, 3)  # shorter than the widest filter
    with pytest.raises(ValueError, match="widths"):
        L.TextCNN(50, 2, widths=())


def test_chrono_init_opens_the_gates_and_rejects_an_rnn():
    lstm = L.chrono_init(L.Recurrent("lstm", 4, 16), t_max=50, generator=torch.Generator().manual_seed(0))
    b_f = lstm.bias_ih_l0[16:32] + lstm.bias_hh_l0[16:32]
    assert 0 <= b_f.min() and b_f.max() <= math.log(49)
    assert torch.equal(lstm.bias_ih_l0[:16], -lstm.bias_ih_l0[16:32])
    gru = L.chrono_init(nn.GRU(4, 16), t_max=50)
    assert (gru.bias_ih_l0[16:32] >= 0).all() and (gru.bias_hh_l0[16:32] == 0).all()
    with pytest.raises(ValueError, match="needs an LSTM or a GRU"):
        L.chrono_init(nn.RNN(4, 16), t_max=50)
