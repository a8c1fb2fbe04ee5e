"""Recurrent cells, chosen by short name through one registry.

Every cell shares one interface:

    cell = build(name, input_size, hidden_size, **opts)
    outputs, final_state = cell(x, state=None)    # x [B, T, I] -> outputs [B, T, H]
    h_t, state = cell.step(x_t, state)            # one time step, plain PyTorch, reads like the equations
    state = cell.initial_state(batch, device=..., dtype=...)

`state` is a tensor h [B, H] for rnn/gru/gru_cho and a tuple (h, c) for the LSTM family.
`cell.step(..., gates=d)` fills the dict `d` with the named gate activations of that step
(e.g. "forget", "input", "output", "update", "reset"), for gate statistics.

Every cell class has `title`, its human name for tables and plots (read with `title(name)`).

Options every cell takes: `layers` (default 1) cells stacked, each reading the outputs of the one
below, with `dropout` (default 0) between layers (`cells.stacked.Stacked`; state = one per layer).
Cell-specific options: `forget_bias` (LSTM family, default 1.0: the forget gate's effective bias at
initialisation); `impl` (hand-written cells gru_cho, lstm_peephole, lstm_cifg: "bptt", the default,
a custom autograd.Function with hand-written backpropagation through time, or "autograd", the
plain loop over `step`'s math). `cell.fused` is True where forward runs a fused PyTorch kernel.
"""
from __future__ import annotations

import importlib
import inspect

from torch import nn

# name -> (module, class); modules are imported lazily so one broken cell cannot hide the others
CELLS: dict[str, tuple[str, str]] = {
    "rnn": ("gapbench.cells.rnn", "ElmanRNN"),
    "gru": ("gapbench.cells.gru", "GRU"),
    "gru_cho": ("gapbench.cells.gru_cho", "GRUCho"),
    "lstm": ("gapbench.cells.lstm", "LSTM"),
    "lstm_peephole": ("gapbench.cells.lstm_peephole", "PeepholeLSTM"),
    "lstm_cifg": ("gapbench.cells.lstm_cifg", "CIFGLSTM"),
}


def names() -> list[str]:
    """Registered cells in registry order (the order of tables and legends)."""
    return list(CELLS)


def title(name: str) -> str:
    """The cell's human name (its class's `title`, e.g. "LSTM (peephole)"); unknown names as they are."""
    try:
        return cell_class(name).title
    except (ValueError, ImportError, AttributeError):
        return name


def cell_class(name: str) -> type[nn.Module]:
    if name not in CELLS:
        raise ValueError(f"unknown cell '{name}'; valid cells: {', '.join(CELLS)}")
    module, cls = CELLS[name]
    return getattr(importlib.import_module(module), cls)


# options every cell takes, handled by build() around the cell's class: layers stacked with dropout between
STACK_OPTIONS = ("layers", "dropout")


def options(cell_cfg) -> dict:
    """A cell config group minus name and hidden_size: the keyword options of build()."""
    return {k: v for k, v in dict(cell_cfg).items() if k not in ("name", "hidden_size")}


def check_option_names(name: str, opts: dict) -> None:
    valid = list(inspect.signature(cell_class(name).__init__).parameters)[3:]  # after self, input_size, hidden_size
    valid += STACK_OPTIONS
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise TypeError(f"cell '{name}' has no option {', '.join(map(repr, unknown))}; "
                        f"its options: {', '.join(valid) or 'none'}")


def build(name: str, input_size: int, hidden_size: int, layers: int = 1, dropout: float = 0.0, **opts) -> nn.Module:
    """One cell, or `layers` of them stacked with `dropout` between layers (cells.stacked.Stacked)."""
    check_option_names(name, opts)
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers={layers!r} is invalid; valid: an integer >= 1")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r} is invalid; valid: a number in [0, 1)")
    cls = cell_class(name)
    if layers == 1:
        return cls(input_size, hidden_size, **opts)
    from gapbench.cells.stacked import Stacked
    return Stacked([cls(input_size if i == 0 else hidden_size, hidden_size, **opts) for i in range(layers)], dropout)
