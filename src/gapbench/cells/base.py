"""The contract every sequence model in gapbench follows: recurrent cells and non-recurrent comparators.

Construction (always through `cells.build`, which checks the options first):

    model = build(name, input_size, hidden_size, layers=1, dropout=0.0, max_len=T, **options)

`max_len` is the longest sequence the task will feed (`task.seq_len`); a model that sizes itself by
it (a TCN's receptive field, a Transformer's positions, IndRNN's recurrent-weight bound) declares a
`max_len` keyword in its `__init__` and gets it; the others never see it. It is not a user option.
Likewise `last_layer`: a model whose initialisation depends on its place in a stack (IndRNN) declares
it and gets whether it is the top layer (True when not stacked).

Every model:

    outputs, state = model(x, state=None)    # x [B, T, I] -> outputs [B, T, H]

and declares, as class attributes, what it can do:

* `recurrent`: forward returns a final state from which a next call continues exactly
  (`initial_state(batch, device, dtype)` gives the zero state). Non-recurrent models return None
  and refuse a state.
* `has_step`: `step(x_t, state, gates=None) -> (h_t, state)` computes one time step (decoding, and
  the gradient probe's ||dL/dh_t||); `gates`, a dict, is filled with named gate activations.
* `fused`: forward runs a fused PyTorch kernel (nn.RNN / nn.GRU / nn.LSTM).

Tasks declare the capabilities they need (`Task.requires`, e.g. translation's decoder needs
("recurrent", "has_step")); `validate.check_config` refuses an impossible pair before any job.

Cost hooks (classmethods, so they run before anything is allocated):

* `activation_bytes(batch, seq_len, hidden_size, bytes_per_value=4, **options)`: memory kept for
  the backward pass of one layer; the memory check of `validate.check_config` uses it.
* `matmul_flops(batch, seq_len, input_size, hidden_size, **options)`: matmul FLOPs of one
  forward + backward pass of one layer (backward = 2 x forward); `gapbench.perf.bench` reports GFLOP/s from it.
* `bench_runs()`: the option sets `gapbench.perf.bench` measures side by side (default: the defaults only;
  e.g. the scan cells add their sequential loop, Greff's LSTM one run per variant).

The recurrent defaults of both hooks read two class attributes: `matmul_blocks = (input, recurrent)`,
the number of H-wide output blocks of the input projection and of the recurrent matmul (4, 4 for an
LSTM), and `saved_per_step`, the number of [B, H] tensors kept per time step.

Training recipe (`optim_groups`, a class attribute): parameters that the model's paper trains at a
rate of their own, as `ParamGroup(name, params, lr_scale, source)`: `params` are parameter names
relative to the model, trained at `lr_scale` x optim.lr by the configured optimiser (expRNN: its
orthogonal parameter at a tenth). `gapbench.train.optim.param_groups` collects them from every model inside
a task's network (stacked layers included); the task's own parameters and every other parameter stay
at optim.lr. `cell.recipe: none` trains every parameter at one rate.

Options: a model's options are the keyword parameters of its `__init__` after input_size and
hidden_size (and max_len), each with a type annotation and a default. That signature is the one
declaration; `check_options` checks names and values against it (bool, int, float, str, Literal[...]
choices, `X | None`, and `Annotated[X, Range(lo, hi)]` bounds), so a bad value is one line before
any job starts. A model may add cross-option checks in a classmethod `check(hidden_size, **options)`.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, ClassVar

from torch import nn


class OptionError(TypeError, ValueError):
    """A bad cell option (unknown name or invalid value); the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds for a numeric option, used as `Annotated[float, Range(0, 1, hi_open=True)]`."""
    lo: float | None = None
    hi: float | None = None
    hi_open: bool = False

    def ok(self, v) -> bool:
        return ((self.lo is None or v >= self.lo)
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def text(self) -> str:
        parts = ([f">= {self.lo}"] if self.lo is not None else []) + \
                ([f"{'<' if self.hi_open else '<='} {self.hi}"] if self.hi is not None else [])
        return " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    kind: Any          # the annotation, Annotated stripped
    default: Any
    range: Range | None = None

    def valid(self, v) -> bool:
        return _matches(self.kind, v) and (self.range is None or v is None or self.range.ok(v))

    def text(self) -> str:
        """What is valid, in words."""
        words = _describe(self.kind)
        return f"{words} {self.range.text()}" if self.range is not None else words


def _matches(kind, v) -> bool:
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return any(v == c and type(v) is type(c) for c in typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(k, v) for k in typing.get_args(kind))
    if kind is type(None):
        return v is None
    if kind is bool:
        return isinstance(v, bool)
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind is str:
        return isinstance(v, str)
    return True  # unannotated: anything


def _describe(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(kind, "any value")


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """Parameters a model's paper trains at their own rate: `lr_scale` x optim.lr (see the module docstring)."""
    name: str
    params: tuple[str, ...]  # parameter names relative to the model, as in named_parameters()
    lr_scale: float
    source: str              # where the recipe comes from (the authors' code)


def declared_options(cls) -> dict[str, Option]:
    """The options of a model class: its __init__'s keyword parameters after input_size, hidden_size."""
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    params = list(inspect.signature(cls.__init__).parameters.values())[3:]  # self, input_size, hidden_size
    out = {}
    for p in params:
        if p.name in BUILD_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        kind, rng = hints.get(p.name, Any), None
        if typing.get_origin(kind) is typing.Annotated:
            kind, *extra = typing.get_args(kind)
            rng = next((e for e in extra if isinstance(e, Range)), None)
        out[p.name] = Option(p.name, kind, p.default, rng)
    return out


BUILD_ARGS = ("max_len", "last_layer")  # what cells.build supplies to a model that declares it; not user options


def takes(cls, arg: str) -> bool:
    return arg in inspect.signature(cls.__init__).parameters


def takes_max_len(cls) -> bool:
    return takes(cls, "max_len")


class SequenceModel(nn.Module):
    """Base of every gapbench model: capabilities and cost hooks (see the module docstring)."""

    title: ClassVar[str]
    recurrent: ClassVar[bool] = True
    has_step: ClassVar[bool] = True
    fused: ClassVar[bool] = False
    matmul_blocks: ClassVar[tuple[int, int]] = (0, 0)
    saved_per_step: ClassVar[int] = 12  # the LSTM family's gates, cell states and their nonlinearities, read-out
    optim_groups: ClassVar[tuple[ParamGroup, ...]] = ()  # parameters trained at their own rate (training recipe)

    def __call__(self, *args, **kwargs):
        from gapbench.cells import _cuda

        if args and len(args) + len(kwargs) <= 2 and set(kwargs) <= {"state"} and _cuda.graphable(self, args[0]):
            return _cuda.graph_call(self, *args, **kwargs)  # training on a GPU: the sequence from a CUDA graph
        return super().__call__(*args, **kwargs)

    @classmethod
    def activation_bytes(cls, batch: int, seq_len: int, hidden_size: int, bytes_per_value: int = 4, **options) -> int:
        return cls.saved_per_step * batch * seq_len * hidden_size * bytes_per_value

    @classmethod
    def matmul_flops(cls, batch: int, seq_len: int, input_size: int, hidden_size: int, **options) -> float:
        g_in, g_rec = cls.matmul_blocks
        return 3 * 2.0 * batch * seq_len * hidden_size * (input_size * g_in + hidden_size * g_rec)

    @classmethod
    def bench_runs(cls) -> list[dict[str, Any]]:
        return [{}]

    @classmethod
    def check(cls, hidden_size: int, **options) -> None:
        """Cross-option checks (raise OptionError); single options are checked from the signature."""
