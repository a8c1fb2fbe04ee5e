"""The recurrent models' fast path on CUDA, derived from their own equations (no hand-written kernel).

On a GPU, one time step of a hand-written cell is a dozen small kernels, each launched from Python:
the GPU waits on the launches (measured on an H200, B = 128, H = 128: 15-50x cuDNN's LSTM). Two
generic measures close most of that gap; both apply to a model a user adds by the contract:

* `pointwise_sequence`, for a LoopCell whose step is one recurrent matmul followed by elementwise work,
  `recur(x_proj, state) == pointwise(x_proj + h @ W_hh^T, state)` (the cell defines `pointwise`, the
  same equations it steps with). Per step: the matmul is one cuBLAS call; `pointwise` runs as one
  kernel compiled by torch.compile (Inductor generates a fused Triton kernel for its forward and one
  for its backward); the weight gradient dW_hh is ONE matmul over all B*T rows after the loop (as the
  CPU path in _bptt does), where autograd would do one per step.
* `graph_call`, for every recurrent model that is not a fused cuDNN kernel: in training, the
  forward and backward of a whole sequence are captured once per input signature in a CUDA graph
  (torch.cuda.make_graphed_callables) and replayed, so the T steps cost no Python and no launches.
  Shapes are static within a job (batch, length and width are fixed by the task), so a job captures
  once. Evaluation (no grad), autocast (bf16-mixed) and a second forward before the first one's
  backward run eagerly. A capture that fails (an op that is not capturable) falls back to eager
  for that signature, once.

Switches (for measurements and debugging), in the environment or as the flags below:
GAPBENCH_CUDA_FAST=0 turns both off (the code as it was before: _bptt's functions, launched step by
step), GAPBENCH_CUDA_GRAPHS=0 only the graphs, GAPBENCH_COMPILE=0 only the compilation. CPU runs never take this path: there the hand-written
backward of _bptt is fastest (docs/performance.md).
"""
from __future__ import annotations

import logging
import os
import warnings
import weakref

import torch
from torch.utils import _pytree as pytree

log = logging.getLogger("gapbench")

FAST = os.environ.get("GAPBENCH_CUDA_FAST", "1") != "0"
GRAPHS = FAST and os.environ.get("GAPBENCH_CUDA_GRAPHS", "1") != "0"
COMPILE = os.environ.get("GAPBENCH_COMPILE", "1") != "0"
_OUTSIDE = ("weight_ih", "bias", "weight_hh")  # parameters used outside `pointwise`


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def step_fn(cell, compile: bool | None = None):
    """state_tuple -> new state_tuple for one step of `cell.pointwise` (its h first); compiled on CUDA
    unless switched off. Cached on the cell."""
    compile = COMPILE if compile is None else compile
    key = "_gapbench_step_compiled" if compile else "_gapbench_step_eager"
    fn = cell.__dict__.get(key)
    if fn is None:
        tuple_state = isinstance(cell.initial_state(1, device="meta"), tuple)

        def fn(z, s):
            _, new = cell.pointwise(z, s if tuple_state else s[0])
            return _as_tuple(new)
        if compile:
            _allow_recompiles()
            fn = torch.compile(fn, dynamic=False, fullgraph=True)
        cell.__dict__[key] = fn
    return fn


def _allow_recompiles(limit: int = 256) -> None:
    """One compiled step per cell instance shares one code object, and Dynamo recompiles it for each
    instance (its guards hold the module): past its default limit of 8 it would silently run the
    step eagerly, e.g. from the ninth cell of a benchmark on."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < limit:
            setattr(cfg, name, limit)
    if hasattr(cfg, "accumulated_recompile_limit") and cfg.accumulated_recompile_limit < 4 * limit:
        cfg.accumulated_recompile_limit = 4 * limit


class _PointwiseBPTT(torch.autograd.Function):
    """Backpropagation through time with the recurrent matmul outside and `pointwise` differentiated
    step by step by its compiled backward (elementwise only: the step runs with the cell's own
    parameters frozen); dW_hh in one matmul, and the gradients of `pointwise`'s parameters (e.g.
    peepholes) in one pass over all B*T rows, after the loop."""

    @staticmethod
    def forward(ctx, cell, compile, n_state, x_proj, weight, *rest):
        params = rest[n_state:]
        # under autocast (trainer.precision=bf16-mixed) the recurrence runs in the parameters' dtype:
        # the input projection before it is autocast's, the loop's matmuls and pointwise steps are not
        dtype = (weight if weight is not None else params[0] if params else rest[0]).dtype
        state = tuple(s.detach().to(dtype) for s in rest[:n_state])
        x_proj = x_proj.to(dtype)
        w = None if weight is None else weight.detach()
        step = step_fn(cell, compile)
        with torch.autocast(x_proj.device.type, enabled=False):
            return _PointwiseBPTT._loop(ctx, cell, step, x_proj, w, state, params)

    @staticmethod
    def _loop(ctx, cell, step, x_proj, w, state, params):
        h0, steps, outs = state[0], [], []
        frozen = [p for p in params if p.requires_grad]
        try:
            for p in frozen:  # per-step parameter gradients would be one reduction over the batch per step
                p.requires_grad_(False)
            with torch.enable_grad():  # one small autograd graph per step, kept for backward
                for xp in x_proj.detach().unbind(1):
                    z = xp if w is None else torch.addmm(xp, state[0], w.t())
                    z = z.detach().requires_grad_()
                    s_in = tuple(s.detach().requires_grad_() for s in state)
                    new = step(z, s_in)
                    steps.append((z, s_in, new))
                    state = tuple(s.detach() for s in new)
                    outs.append(state[0])
        finally:
            for p in frozen:
                p.requires_grad_(True)
        out = torch.stack(outs, 1)
        ctx.cell, ctx.steps, ctx.params, ctx.w = cell, steps, params, w
        ctx.save_for_backward(h0, out)
        return (out, *state)

    @staticmethod
    def backward(ctx, d_out, *d_state):
        h0, out = ctx.saved_tensors
        d_out, d_state = d_out.to(out.dtype), [d.to(out.dtype) for d in d_state]
        steps, params, w = ctx.steps, ctx.params, ctx.w
        T = len(steps)
        carry = [d_state[0] + d_out[:, T - 1], *d_state[1:]]  # dL/d(state_t), d_out folded into h's part
        dzs, douts = [], []
        for t in range(T - 1, -1, -1):
            z, s_in, new = steps[t]
            douts.append(carry)
            dz, *ds = torch.autograd.grad(new, (z, *s_in), carry, allow_unused=True)
            dzs.append(dz)
            dh = ds[0]  # dL/dh_{t-1}: through pointwise (if it reads h), the output, and the matmul
            if t > 0:
                dh = d_out[:, t - 1] if dh is None else dh + d_out[:, t - 1]
            elif dh is None:
                dh = torch.zeros_like(s_in[0])
            if w is not None:
                dh = torch.addmm(dh, dz, w)
            carry = [dh, *(torch.zeros_like(s) if g is None else g for g, s in zip(ds[1:], s_in[1:]))]
        dZ = torch.stack(dzs[::-1], 1)
        dW = None
        if w is not None:
            B, _, G = dZ.shape
            h_prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], 1)
            dW = dZ.reshape(B * T, G).t() @ h_prev.reshape(B * T, -1)
        dparams = [None] * len(params)
        if any(p.requires_grad for p in params):  # one pass of pointwise over all B*T rows
            with torch.enable_grad():
                z_all = torch.cat([z for z, _, _ in steps]).detach()
                s_all = tuple(torch.cat(parts).detach() for parts in zip(*(s for _, s, _ in steps)))
                new = step_fn(ctx.cell, compile=False)(z_all, s_all)
                g_all = [torch.cat(parts) for parts in zip(*douts[::-1])]
                need = [p for p in params if p.requires_grad]
                got = iter(torch.autograd.grad(new, need, g_all, allow_unused=True))
                dparams = [next(got) if p.requires_grad else None for p in params]
        ctx.steps = ctx.cell = None
        return (None, None, None, dZ, dW, *carry, *dparams)


def pointwise_params(cell) -> list[torch.nn.Parameter]:
    return [p for name, p in cell.named_parameters() if name not in _OUTSIDE]


def pointwise_sequence(cell, x, state, compile: bool | None = None):
    """(outputs, final_state) of a LoopCell with `pointwise`, by _PointwiseBPTT. Same math as
    `autograd_forward`; `compile=False` runs `pointwise` eagerly (the tests use it on CPU)."""
    return run_pointwise(cell, cell.project(x), getattr(cell, "weight_hh", None), state, pointwise_params(cell), compile)


def run_pointwise(cell, x_proj, weight, state, params, compile: bool | None = None):
    """The same for any model whose step is `cell.pointwise(x_proj_t + h @ weight^T, state)` (weight
    None: no recurrent matmul), `params` the parameters `pointwise` reads."""
    if state is None:
        state = cell.initial_state(x_proj.shape[0], device=x_proj.device, dtype=x_proj.dtype)
    flat = _as_tuple(state)
    out, *final = _PointwiseBPTT.apply(cell, compile, len(flat), x_proj, weight, *flat, *params)
    return out, (tuple(final) if isinstance(state, tuple) else final[0])


class _Released(torch.autograd.Function):
    """Identity whose backward marks the graph's outputs as consumed (see graph_call)."""

    @staticmethod
    def forward(ctx, flag, *xs):
        ctx.flag = flag
        return xs if len(xs) > 1 else xs[0]

    @staticmethod
    def backward(ctx, *gs):
        ctx.flag["live"] = False
        return (None, *gs)


class _Sequence(torch.nn.Module):
    """A flat-tensor view of a model's forward, for make_graphed_callables."""

    def __init__(self, model, forward, rebuild_state):
        super().__init__()
        self.model, self._forward, self._rebuild = model, forward, rebuild_state
        self.out_spec = None

    def forward(self, x, *state_flat):
        out = self._forward(x, self._rebuild(state_flat))
        leaves, self.out_spec = pytree.tree_flatten(out)
        return tuple(leaves)


_inside = {"capture": False}  # while a graph is warmed up or captured, the models inside it run plainly


def graphable(model, x) -> bool:
    """Whether this call of `model` runs through a CUDA graph (training on a GPU, fast path on)."""
    return (GRAPHS and not _inside["capture"] and torch.is_tensor(x) and x.is_cuda and torch.is_grad_enabled()
            and getattr(model, "recurrent", False)
            and not any(getattr(m, "fused", False) for m in model.modules())  # cuDNN's RNNs: fast already
            and not torch.is_autocast_enabled("cuda") and not torch.cuda.is_current_stream_capturing()
            and not (model._forward_hooks or model._forward_pre_hooks or model._backward_hooks))


_CAPTURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its graphs, by input signature


def graph_call(model, x, state=None):
    """model(x, state) -> (outputs, state), replayed from a CUDA graph (see graphable).

    A model whose forward computes something that cannot be captured (expRNN's matrix exponential
    decides its degree on the host) computes it outside: `model.graph_inputs()` returns those
    tensors and `model.forward_with(x, state, *inputs)` is the rest of forward."""
    graphs = _CAPTURED.setdefault(model, {"live": False})
    if graphs["live"]:  # a second forward before the first one's backward: the graph's buffers are in use
        return model.forward(x, state)
    if hasattr(model, "graph_inputs"):
        state = (state, tuple(model.graph_inputs()))
        fwd = lambda x, packed: model.forward_with(x, packed[0], *packed[1])  # noqa: E731
    else:
        fwd = model.forward
    leaves, spec = pytree.tree_flatten(state)
    flat = [t for t in leaves if torch.is_tensor(t)]
    key = (tuple(x.shape), x.dtype, x.device, x.requires_grad, spec, tuple(torch.is_tensor(t) for t in leaves),
           tuple((tuple(s.shape), s.dtype, s.requires_grad) for s in flat))
    if key not in graphs:
        graphs[key] = _capture(model, fwd, x, flat, _rebuilder(leaves, spec))
    seq = graphs[key]
    if seq is None:
        return fwd(x, state)
    leaves = tuple(t.clone() for t in seq(x, *flat))  # the graph's outputs are overwritten at its next replay
    if any(t.requires_grad for t in leaves):
        graphs["live"] = True
        leaves = _as_tuple(_Released.apply(graphs, *leaves))
    return pytree.tree_unflatten(list(leaves), seq.out_spec)


def _rebuilder(leaves, spec):
    """tensors -> the state they came from (its non-tensor leaves, e.g. None, kept as they were)."""
    def rebuild(tensors):
        it = iter(tensors)
        return pytree.tree_unflatten([next(it) if torch.is_tensor(t) else t for t in leaves], spec)
    return rebuild


def _capture(model, forward, x, flat, rebuild):
    seq = _Sequence(model, forward, rebuild)
    sample = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in (x, *flat))
    _inside["capture"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.cuda.make_graphed_callables(seq, sample, allow_unused_input=True)
    except Exception as e:  # an op that cannot be captured: this signature runs eagerly
        log.warning("CUDA graph capture of %s failed (%s: %s); running it eagerly",
                    type(model).__name__, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        torch.cuda.synchronize()
        return None
    finally:
        _inside["capture"] = False
    return seq
