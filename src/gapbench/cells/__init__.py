"""Sequence models, chosen by short name (`cell=...`) through one registry: recurrent cells and the
non-recurrent comparators. The contract they all follow is written down in `cells.base`
(construction with the task's max_len, forward/step/state, capabilities, cost hooks, options);
the checklist for adding one is docs/extending.md.

    model = build(name, input_size, hidden_size, layers=1, dropout=0.0, max_len=None, **options)
    outputs, final_state = model(x, state=None)   # x [B, T, I] -> outputs [B, T, H]
    h_t, state = model.step(x_t, state)           # where has_step: one time step, reads like the equations
    state = model.initial_state(batch, device=..., dtype=...)   # where recurrent

`state` is a tensor h [B, H] for rnn/gru/gru_cho and a tuple (h, c) for the LSTM family.
`model.step(..., gates=d)` fills the dict `d` with the named gate activations of that step
(e.g. "forget", "input", "output", "update", "reset"), for gate statistics.

Every model class has `title`, its human name for tables and plots (read with `title(name)`).

Options every model takes: `layers` (default 1) recurrent cells stacked, each reading the outputs of
the one below, with `dropout` (default 0) between layers (`cells.stacked.Stacked`; state = one per
layer). Non-recurrent models set their depth with their own option (tcn: `levels`, transformer:
`depth`) and refuse layers > 1. Model-specific options are the typed keyword parameters of each
class's __init__ (see `options_help(name)`), checked by `check_options`.

A model from the user's own package needs no registry line: `cell=custom cell.target=pkg.module.Class`
names it by its import path (conf/cell/custom.yaml), and every check here applies to it alike.
"""
from __future__ import annotations

import importlib
from torch import nn

from gapbench.cells.base import OptionError, Range, SequenceModel, declared_options, takes, takes_max_len
from gapbench.registry import import_class

# name -> (module, class); modules are imported lazily so one broken cell cannot hide the others.
# The order is the order of tables and legends.
CELLS: dict[str, tuple[str, str]] = {
    "rnn": ("gapbench.cells.rnn", "ElmanRNN"),
    "gru": ("gapbench.cells.gru", "GRU"),
    "gru_cho": ("gapbench.cells.gru_cho", "GRUCho"),
    "lstm": ("gapbench.cells.lstm", "LSTM"),
    "lstm_peephole": ("gapbench.cells.lstm_peephole", "PeepholeLSTM"),
    "lstm_cifg": ("gapbench.cells.lstm_cifg", "CIFGLSTM"),
    "lstm_greff_v": ("gapbench.cells.lstm_greff", "GreffV"),
    "lstm_greff_nig": ("gapbench.cells.lstm_greff", "GreffNIG"),
    "lstm_greff_nfg": ("gapbench.cells.lstm_greff", "GreffNFG"),
    "lstm_greff_nog": ("gapbench.cells.lstm_greff", "GreffNOG"),
    "lstm_greff_niaf": ("gapbench.cells.lstm_greff", "GreffNIAF"),
    "lstm_greff_noaf": ("gapbench.cells.lstm_greff", "GreffNOAF"),
    "lstm_greff_np": ("gapbench.cells.lstm_greff", "GreffNP"),
    "lstm_greff_cifg": ("gapbench.cells.lstm_greff", "GreffCIFG"),
    "lstm_greff_fgr": ("gapbench.cells.lstm_greff", "GreffFGR"),
    "mingru": ("gapbench.cells.mingru", "MinGRU"),
    "minlstm": ("gapbench.cells.minlstm", "MinLSTM"),
    "indrnn": ("gapbench.cells.indrnn", "IndRNN"),
    "exprnn": ("gapbench.cells.exprnn", "ExpRNN"),
    "tcn": ("gapbench.cells.tcn", "TCN"),
    "transformer": ("gapbench.cells.transformer", "Transformer"),
}

# what each capability a task may require means, for error messages
CAPABILITIES = {"recurrent": "a state carried from one call to the next",
                "has_step": "a single-step `step` (decoding one token at a time)"}

# options every model takes, handled by build() around the model's class
STACK_OPTIONS = {"layers": (int, Range(1)), "dropout": (float, Range(0, 1, hi_open=True))}


def names() -> list[str]:
    """Registered models in registry order (the order of tables and legends)."""
    return list(CELLS)


def title(name: str) -> str:
    """The model's human name (its class's `title`, e.g. "LSTM (peephole)"); unknown names as they are."""
    try:
        return cell_class(name).title
    except (ValueError, ImportError, AttributeError):
        return name


def cell_class(name: str) -> type[SequenceModel]:
    """The class of a registered model, or of an import path (a model from the user's own package)."""
    if name in CELLS:
        module, cls = CELLS[name]
        return getattr(importlib.import_module(module), cls)
    if name is None:
        raise ValueError("cell=custom needs cell.target=package.module.Class, the import path of your model")
    if "." not in str(name):
        raise ValueError(f"unknown cell '{name}'; valid cells: {', '.join(CELLS)}, "
                         "or your own model: cell=custom cell.target=package.module.Class")
    cls = import_class(name, SequenceModel, "cell.target")
    if not (isinstance(getattr(cls, "title", None), str) and cls.title):
        raise ValueError(f"cell.target={name} has no `title` (its human name for tables and plots)")
    if cls.has_step and not cls.recurrent:
        raise ValueError(f"cell.target={name} declares has_step without recurrent: a step needs a state")
    return cls


def options(cell_cfg) -> dict:
    """A cell config group minus name, hidden_size, recipe (how it is trained, gapbench.train.optim) and
    target (an outside model's import path): the keyword options of build()."""
    return {k: v for k, v in dict(cell_cfg).items() if k not in ("name", "hidden_size", "recipe", "target")}


def model_options(opts: dict) -> dict:
    """`opts` without the stacking options: what the model class itself takes."""
    return {k: v for k, v in opts.items() if k not in STACK_OPTIONS}


def options_help(name: str) -> str:
    declared = declared_options(cell_class(name))
    return ", ".join([*STACK_OPTIONS, *(f"{o.name} ({o.text()}, default {o.default!r})" for o in declared.values())])


def check_option_names(name: str, opts: dict) -> None:
    valid = [*declared_options(cell_class(name)), *STACK_OPTIONS]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise OptionError(f"cell '{name}' has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(valid) or 'none'}")


def check_options(name: str, opts: dict, hidden_size: int | None = None) -> None:
    """Names and values of a model's options, from its declaration; raises OptionError (one line)."""
    cls = cell_class(name)
    check_option_names(name, opts)
    for key, (kind, rng) in STACK_OPTIONS.items():
        if key in opts:
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or not rng.ok(v):
                what = "an integer" if kind is int else "a number"
                raise OptionError(f"cell.{key}={v!r} is invalid; valid: {what} {rng.text()}")
    if opts.get("layers", 1) > 1 and not cls.recurrent:
        raise OptionError(f"cell.layers={opts['layers']} is invalid for cell '{name}': layers stacks recurrent cells; "
                          f"{cls.title} sets its own depth (its options: {options_help(name)})")
    declared = declared_options(cls)
    for key, v in model_options(opts).items():
        opt = declared[key]
        if not opt.valid(v):
            raise OptionError(f"cell.{key}={v!r} is invalid for cell '{name}'; valid: {opt.text()}")
    if hidden_size is not None:
        cls.check(hidden_size, **model_options(opts))


def missing_capabilities(name: str, required) -> list[str]:
    cls = cell_class(name)
    return [c for c in required if not getattr(cls, c, False)]


def capable(required) -> list[str]:
    """Registered models that have every capability in `required`."""
    return [n for n in CELLS if not missing_capabilities(n, required)]


def activation_bytes(name: str, batch: int, seq_len: int, hidden_size: int, layers: int = 1, dropout: float = 0.0,
                     bytes_per_value: int = 4, **opts) -> int:
    """Memory kept for backpropagation by `layers` of the model (its `activation_bytes` hook)."""
    return layers * cell_class(name).activation_bytes(batch, seq_len, hidden_size, bytes_per_value, **opts)


def matmul_flops(name: str, batch: int, seq_len: int, input_size: int, hidden_size: int, **opts) -> float:
    """Matmul FLOPs of one forward + backward pass of one layer (its `matmul_flops` hook)."""
    return cell_class(name).matmul_flops(batch, seq_len, input_size, hidden_size, **opts)


def build(name: str, input_size: int, hidden_size: int, layers: int = 1, dropout: float = 0.0,
          max_len: int | None = None, **opts) -> nn.Module:
    """One model, or `layers` recurrent cells stacked with `dropout` between layers (cells.stacked.Stacked).
    `max_len`: the longest sequence the task feeds; passed to models that size themselves by it."""
    check_options(name, {"layers": layers, "dropout": dropout, **opts}, hidden_size)
    cls = cell_class(name)
    if takes_max_len(cls):
        opts = {**opts, "max_len": max_len}

    def layer(i):
        last = {"last_layer": i == layers - 1} if takes(cls, "last_layer") else {}
        return cls(input_size if i == 0 else hidden_size, hidden_size, **opts, **last)

    if layers == 1:
        return layer(0)
    from gapbench.cells.stacked import Stacked
    return Stacked([layer(i) for i in range(layers)], dropout)


__all__ = ["CELLS", "CAPABILITIES", "OptionError", "SequenceModel", "build", "cell_class", "check_options",
           "names", "title", "options", "activation_bytes", "matmul_flops", "missing_capabilities", "capable"]
