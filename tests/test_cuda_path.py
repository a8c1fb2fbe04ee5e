"""The CUDA fast path of the recurrent models (gapbench.cells._cuda), checked on the CPU.

Its math, _PointwiseBPTT (recurrent matmul outside, `pointwise` differentiated step by step, dW_hh
in one matmul), runs on any device: here in float64 against each cell's autograd reference, eagerly,
and once compiled by torch.compile on the CPU. The CUDA graph around it needs a GPU: its CPU side
(a plain call) is checked here, the GPU side by `python -m gapbench.perf.gpu_check` (CPU vs CUDA of every
model). These tests mean the CPU: they never touch a GPU even where one is present.
"""
import pytest
import torch

from gapbench import cells
from gapbench.cells import _cuda
from gapbench.cells._loop import LoopCell

B, T, I, H = 3, 7, 4, 5
POINTWISE = [n for n in cells.names() if issubclass(cells.cell_class(n), LoopCell)
             and cells.build(n, I, H).cuda_pointwise]


def make(name, **opts):
    torch.manual_seed(0)
    cell = cells.build(name, I, H, impl="autograd", **opts).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-0.8, 0.8)
    return cell


def loss_of(out, final):
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    final = final if isinstance(final, tuple) else (final,)
    return (out * w).sum() + sum((f ** 2).sum() for f in final)


def assert_same(out, want_out, grads, want_grads):
    """Outputs and gradients equal to float64 rounding; None where the reference has None."""
    torch.testing.assert_close(out, want_out, atol=1e-12, rtol=1e-12)
    for g, w in zip(grads, want_grads):
        assert (g is None) == (w is None)
        if w is not None:
            torch.testing.assert_close(g, w, atol=1e-11, rtol=1e-11)


def test_the_hand_written_lstms_take_the_pointwise_path():
    assert {"lstm_peephole", "lstm_cifg", "lstm_greff_v", "lstm_greff_nig"} <= set(POINTWISE)
    assert "gru_cho" not in POINTWISE and "lstm_greff_fgr" not in POINTWISE  # two matmuls a step: graph only


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_sequence_matches_the_autograd_reference(name):
    cell = make(name)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    state = tuple(s.uniform_(-0.5, 0.5).requires_grad_() for s in cell.initial_state(B, dtype=torch.float64))
    inputs = [x, *state, *cell.parameters()]
    out, final = cell.autograd_forward(x, state)
    want = torch.autograd.grad(loss_of(out, final), inputs, allow_unused=True)
    out2, final2 = _cuda.pointwise_sequence(cell, x, state, compile=False)
    got = torch.autograd.grad(loss_of(out2, final2), inputs, allow_unused=True)
    assert_same(out2, out, got, want)


class TinyJANET(LoopCell):
    """A cell a user adds by the contract: only its equations (JANET, van der Westhuizen & Lasenby
    2018: a forget gate alone), no backward, no kernel."""
    title = "JANET"
    matmul_blocks = (2, 2)
    n_input_blocks = 2

    def __init__(self, input_size, hidden_size, impl: str = "autograd"):
        super().__init__(input_size, hidden_size, impl)
        self.weight_hh = torch.nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.reset_uniform()

    def pointwise(self, z, h, gates=None):
        f, g = z.chunk(2, -1)
        f = torch.sigmoid(f)
        h = f * h + (1 - f) * torch.tanh(g)
        return h, h


def test_a_new_cell_written_as_equations_gets_the_fast_path():
    torch.manual_seed(1)
    cell = TinyJANET(I, H).double()
    assert cell.cuda_pointwise
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64)
    out, final = cell(x, h0)  # the autograd loop over `recur`, derived from `pointwise`
    want = torch.autograd.grad(loss_of(out, final), [x, *cell.parameters()])
    out2, final2 = _cuda.pointwise_sequence(cell, x, h0, compile=False)
    got = torch.autograd.grad(loss_of(out2, final2), [x, *cell.parameters()])
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(final2, final)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.slow
def test_compiled_pointwise_on_cpu_matches_float64():
    """torch.compile of a cell's `pointwise` (Inductor's C++ backend here, Triton on a GPU)."""
    cell = make("lstm_peephole")
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    state = cell.initial_state(B, dtype=torch.float64)
    out, final = cell.autograd_forward(x, state)
    want = torch.autograd.grad(loss_of(out, final), [x, *cell.parameters()])
    out2, final2 = _cuda.pointwise_sequence(cell, x, state, compile=True)
    got = torch.autograd.grad(loss_of(out2, final2), [x, *cell.parameters()])
    torch.testing.assert_close(out2, out, atol=1e-12, rtol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("name", ["lstm_peephole", "exprnn", "indrnn", "gru_cho"])
def test_on_the_cpu_a_call_takes_no_graph(name):
    cell = cells.build(name, I, H, max_len=T)
    x = torch.randn(B, T, I, requires_grad=True)
    assert not _cuda.graphable(cell, x)
    out, _ = cell(x)
    out.sum().backward()
    assert cell not in _cuda._CAPTURED


def test_tf32_key_is_neutral_at_its_default_and_sets_the_backends():
    from gapbench.config.identity import config_hash
    from gapbench.train.job import set_numerics

    base = {"gap": 10, "seed": 0, "cell": {"name": "lstm"}, "task": {"name": "copy"}, "trainer": {}}
    assert config_hash({**base, "tf32": False}) == config_hash(base)  # earlier run ids stay valid
    assert config_hash({**base, "tf32": True}) != config_hash(base)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    try:
        set_numerics(True)
        assert torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "high"
        set_numerics(False)
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[:2]
        torch.set_float32_matmul_precision(before[2])


@pytest.mark.parametrize("name", [n for n in cells.names() if not cells.cell_class(n).fused])
def test_graph_call_bookkeeping_with_the_graph_mocked_out(name, monkeypatch):
    """graph_call's flattening of states (None, tuples, expRNN's weight computed outside), its outputs
    and gradients, with make_graphed_callables replaced by a plain call: the CPU stand-in for the GPU."""
    monkeypatch.setattr(_cuda, "graphable", lambda model, x: not _cuda._inside["capture"] and torch.is_grad_enabled()
                        and model.recurrent and not any(getattr(m, "fused", False) for m in model.modules()))
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", lambda seq, sample, **kw: (seq(*sample), seq)[1])
    torch.manual_seed(0)
    cell, ref = cells.build(name, I, 8, max_len=T), cells.build(name, I, 8, max_len=T)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(B, T, I, requires_grad=True)
    for state in (None, cell.initial_state(B) if cell.recurrent else None):
        for _ in range(2):  # the first call captures, the second replays
            x.grad = None
            out, _ = cell(x, state)
            out.sum().backward()
        got = x.grad.clone()
        x.grad = None
        want, _ = ref.forward(x, state)
        want.sum().backward()
        torch.testing.assert_close(out, want)
        torch.testing.assert_close(got, x.grad)
    assert (cell in _cuda._CAPTURED) == cell.recurrent


@pytest.mark.parametrize("name,opts", [("exprnn", {}), ("mingru", {"impl": "loop"}), ("minlstm", {"impl": "loop"})])
def test_models_with_a_pointwise_step_match_their_own_loop(name, opts):
    """expRNN (modReLU after one matmul) and the minimal RNNs' loops (no recurrent matmul) on the
    fast path's math, against their CPU loops, in float64."""
    torch.manual_seed(0)
    m = cells.build(name, I, H, **opts).double()
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    inputs = [x, h0, *m.parameters()]
    out, final = m(x, h0)
    want = torch.autograd.grad(loss_of(out, final), inputs, allow_unused=True)
    if name == "exprnn":
        out2, final2 = _cuda.run_pointwise(m, m.input_kernel(x), m.weight_hh, h0, [m.bias], compile=False)
    else:
        out2, final2 = _cuda.run_pointwise(m, m.linear(x), None, h0, [], compile=False)
    got = torch.autograd.grad(loss_of(out2, final2), inputs, allow_unused=True)
    assert_same(out2, out, got, want)


def test_pointwise_path_under_autocast_runs_the_recurrence_in_the_parameters_dtype():
    """trainer.precision=bf16-mixed: the recurrence of the fast path stays in float32 (it failed in
    backward with a bf16 dz against the float32 W_hh on the GPU); checked with the CPU's autocast."""
    cell = cells.build("lstm_peephole", I, H)
    x = torch.randn(B, T, I, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = _cuda.pointwise_sequence(cell, x, cell.initial_state(B), compile=False)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and cell.peephole.grad is not None
    ref, _ = cell.autograd_forward(x, cell.initial_state(B))
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)  # the projection ran in bf16


def test_a_top_level_key_at_its_neutral_default_is_not_part_of_the_condition():
    from gapbench.config.conditions import condition_id

    old = {"cfg.task.name": "copy", "cfg.cell.name": "lstm", "cfg.gap": 10}
    assert condition_id({**old, "cfg.tf32": False}) == condition_id(old)
    assert condition_id({**old, "cfg.stop_when_solved": False}) == condition_id(old)
    assert condition_id({**old, "cfg.tf32": True}) != condition_id(old)
