"""expRNN (Lezcano-Casado & Martínez-Rubio 2019, "Cheap Orthogonal Constraints in Neural Networks:
A Simple Parametrization of the Orthogonal and Unitary Group"): an RNN whose recurrent matrix is
orthogonal at every step of training, parametrised as the matrix exponential of a skew-symmetric A.

    B   = exp(A),  A = -A^T                      (torch.nn.utils.parametrizations.orthogonal,
                                                  orthogonal_map="matrix_exp", A from its lower triangle)
    h_t = modrelu(W x_t + B h_{t-1}),   modrelu(z) = sign(z) relu(|z| + b)

As in the paper's code: no input bias (modReLU's b is the bias, initialised U(-0.01, 0.01)), input
weights Kaiming-normal, and A initialised skew with 2x2 blocks [[0, s], [-s, 0]] — `init: henaff`,
s ~ U(-pi, pi) (Henaff et al. 2016), or `init: cayley`, s = -sqrt((1 - cos t) / (1 + cos t)), t ~
U(0, pi/2). The exponential is taken at the identity (use_trivialization=False), i.e. B = exp(A) with
A the trained parameter, exactly the paper's parametrisation. Orthogonal B preserves the norm of the
gradient through the linear part of each step: the cell was designed for the copy task.

Training recipe (`optim_groups`, on with cell.recipe=paper): A is trained at a tenth of the rate of
the other parameters, as in the paper's code (Lezcano/expRNN: 1_copying.py lr 2e-4 / lr_orth 2e-5,
2_mnist.py 7e-4 / 7e-5, 3_timit.py 1e-3 / 1e-4; its README: "the learning rate of the non-orthogonal
parameters to be 10 times that of the orthogonal parameters yields the best performance"). Their
scripts give A its own RMSprop while the other parameters use RMSprop (copy, MNIST) or Adam (TIMIT);
gapbench keeps the ratio and trains both groups with the job's configured optimiser (optim.name), as
every other model, so that a comparison varies one rate per model.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from gapbench.cells import _cuda
from gapbench.cells.base import ParamGroup, SequenceModel


def skew_init(n: int, kind: str, generator=None) -> torch.Tensor:
    """A skew-symmetric [n, n] with 2x2 blocks [[0, s], [-s, 0]] on the diagonal."""
    A = torch.zeros(n, n)
    m = n // 2
    if kind == "henaff":
        s = torch.empty(m).uniform_(-math.pi, math.pi, generator=generator)
    else:  # cayley
        c = torch.cos(torch.empty(m).uniform_(0, math.pi / 2, generator=generator))
        s = -torch.sqrt((1 - c) / (1 + c))
    idx = torch.arange(m) * 2
    A[idx, idx + 1] = s
    A[idx + 1, idx] = -s
    return A


def modrelu(z, b):
    return torch.sign(z) * torch.relu(z.abs() + b)


class ExpRNN(SequenceModel):
    title = "expRNN (orthogonal)"
    matmul_blocks = (1, 1)
    saved_per_step = 4
    optim_groups = (ParamGroup("orthogonal", ("recurrent_kernel.parametrizations.weight.original",), lr_scale=0.1,
                               source="Lezcano/expRNN 1_copying.py: --lr 2e-4, --lr_orth 2e-5"),)

    def __init__(self, input_size, hidden_size, init: Literal["henaff", "cayley"] = "henaff"):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.input_kernel = nn.Linear(input_size, hidden_size, bias=False)
        nn.init.kaiming_normal_(self.input_kernel.weight, nonlinearity="relu")
        self.recurrent_kernel = nn.Linear(hidden_size, hidden_size, bias=False)
        orthogonal(self.recurrent_kernel, "weight", orthogonal_map="matrix_exp", use_trivialization=False)
        with torch.no_grad():  # the parameter is the lower triangle X of A = X - X^T
            self.recurrent_kernel.parametrizations.weight.original.copy_(skew_init(hidden_size, init).tril())
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-0.01, 0.01))  # modReLU's b

    @property
    def weight_hh(self):
        """B = exp(A), orthogonal (recomputed from A on every access)."""
        return self.recurrent_kernel.weight

    def initial_state(self, batch, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.bias.dtype)

    def pointwise(self, z, h, gates=None):
        """The step after its recurrent matmul z = W x + B h (cells._cuda's fast path)."""
        h = modrelu(z, self.bias)
        return h, h

    def step(self, x, h, gates=None):
        return self.pointwise(self.input_kernel(x) + h @ self.weight_hh.T, h)

    def forward(self, x, state=None):
        return self.forward_with(x, state, *self.graph_inputs())

    def graph_inputs(self):
        return (self.weight_hh,)  # one matrix exponential per forward, outside a CUDA graph (cells._cuda)

    def forward_with(self, x, state, weight_hh):
        if x.is_cuda and _cuda.FAST:
            return _cuda.run_pointwise(self, self.input_kernel(x), weight_hh, state, [self.bias])
        h = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        B_t = weight_hh.T
        outs = []
        for xp_t in self.input_kernel(x).unbind(1):
            h = modrelu(torch.addmm(xp_t, h, B_t), self.bias)
            outs.append(h)
        return torch.stack(outs, 1), h
