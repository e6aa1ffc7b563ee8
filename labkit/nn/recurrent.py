"""Recurrent cells, a layer that runs them over time, and a language model on top.

Weight layouts are PyTorch's: W_ih (G*H, input), W_hh (G*H, H), b_ih and b_hh (G*H,), with the
gates stacked in the order i, f, g, o for the LSTM (G = 4) and r, z, n for the GRU (G = 3).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


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
            # A torch.Generator samples on its own device (a CPU generator for a model on a GPU).
            on = generator.device if generator is not None else probs.device
            nxt = torch.multinomial(probs.to(on), 1, generator=generator).to(probs.device)
            out.append(nxt)
            logits, state = self(nxt, state)
        return torch.cat(out, dim=1)
