"""N layers of one cell, each reading the outputs of the layer below, with dropout between layers.

    h^1_t = cell_1(x_t, state^1)              y = dropout(h^l)  feeds layer l + 1
    h^l_t = cell_l(dropout(h^{l-1}_t), state^l)

Dropout sits only between layers (not on the recurrent connections), as in Zaremba, Sutskever &
Vinyals 2014 ("Recurrent Neural Network Regularization"); dropout on the input and on the
output read-out belongs to the task's model. The state is a tuple with one entry per layer.
"""
from __future__ import annotations

from torch import nn

from gapbench.cells.base import SequenceModel


class Stacked(SequenceModel):
    """Recurrent cells only (cells.build refuses layers > 1 for a non-recurrent model)."""

    def __init__(self, layers: list[nn.Module], dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} is out of range; valid: 0 <= dropout < 1")
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(dropout)
        self.input_size, self.hidden_size = layers[0].input_size, layers[-1].hidden_size
        self.fused = all(getattr(layer, "fused", False) for layer in layers)
        self.title = f"{len(layers)} × {getattr(layers[0], 'title', type(layers[0]).__name__)}"

    def initial_state(self, batch: int, device=None, dtype=None):
        return tuple(layer.initial_state(batch, device=device, dtype=dtype) for layer in self.layers)

    def forward(self, x, state=None):
        states = []
        for i, layer in enumerate(self.layers):
            x, s = layer(self.drop(x) if i else x, None if state is None else state[i])
            states.append(s)
        return x, tuple(states)

    def step(self, x, state, gates=None):
        """One time step through every layer; gate names of layer l > 1 get the suffix "/l<l>"."""
        states = []
        for i, layer in enumerate(self.layers):
            g = {} if gates is not None else None
            x, s = layer.step(self.drop(x) if i else x, state[i], gates=g)
            states.append(s)
            if gates is not None:
                gates.update({k if i == 0 else f"{k}/l{i + 1}": v for k, v in g.items()})
        return x, tuple(states)
