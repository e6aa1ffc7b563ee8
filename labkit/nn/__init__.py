"""Neural-network pieces written from their equations, each checked against PyTorch (chapter 04).

One module per idea:
- `activations`: activations and their derivatives (`ACTIVATIONS`, `activation`);
- `mlp`: a multi-layer perceptron whose backward pass is written by hand (`mlp_forward`,
  `mlp_backward`, `mlp_apply` for `torch.autograd.gradcheck`, `mlp_to_torch`);
- `optimizers`: optimizers with `torch.optim`'s interface (`SGD`, `Adam`, `AdamW`, `RMSprop`,
  `Adagrad`) and gradient clipping (`clip_grad_norm`);
- `schedules`: learning-rate schedules (`linear_warmup`, `cosine`, `warmup_cosine`, `exponential`,
  `LambdaLR`);
- `recurrent`: recurrent cells (`rnn_cell`, `lstm_cell`, `gru_cell`), a layer that runs them over
  time and loads `nn.RNN`/`nn.LSTM`/`nn.GRU` weights (`Recurrent`), and a character language
  model on top (`RecurrentLM`);
- `text_cnn`: a convolutional text classifier (`TextCNN`).
Everything is re-exported here: `from labkit import nn as L; L.SGD(...)`.
"""
from .activations import (
    sigmoid, d_sigmoid, tanh, d_tanh, relu, d_relu, gelu, d_gelu, gelu_tanh, d_gelu_tanh, ACTIVATIONS,
    TORCH_ACTIVATIONS, activation,
)
from .mlp import init_mlp, mlp_forward, mlp_backward, softmax_cross_entropy, mlp_apply, mlp_to_torch
from .optimizers import Optimizer, SGD, Adam, AdamW, RMSprop, Adagrad, OPTIMIZERS, clip_grad_norm
from .schedules import linear_warmup, cosine, warmup_cosine, exponential, LambdaLR
from .recurrent import rnn_cell, lstm_cell, gru_cell, TORCH_RECURRENT, Recurrent, chrono_init, RecurrentLM
from .text_cnn import TextCNN


__all__ = [
    "sigmoid", "d_sigmoid", "tanh", "d_tanh", "relu", "d_relu", "gelu", "d_gelu", "gelu_tanh",
    "d_gelu_tanh", "ACTIVATIONS", "TORCH_ACTIVATIONS", "activation", "init_mlp", "mlp_forward",
    "mlp_backward", "softmax_cross_entropy", "mlp_apply", "mlp_to_torch", "Optimizer", "SGD", "Adam",
    "AdamW", "RMSprop", "Adagrad", "OPTIMIZERS", "clip_grad_norm", "linear_warmup", "cosine",
    "warmup_cosine", "exponential", "LambdaLR", "rnn_cell", "lstm_cell", "gru_cell", "TORCH_RECURRENT",
    "Recurrent", "chrono_init", "RecurrentLM", "TextCNN",
]
