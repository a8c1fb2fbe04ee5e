"""The model contract (gapbench.cells.base), checked for every registered model: adding a model adds
it to these tests without editing them. Each model's equations are tested in its own reference test
(tests/test_cells.py for the classic cells, tests/test_model_<name>.py for the others)."""
import pytest
import torch

from gapbench import cells
from gapbench.train import probe
from gapbench.cells import base
from gapbench.tasks import build_task, task_class
from gapbench.config.validate import ConfigError, check_pair

B, T, I, H = 2, 7, 3, 4
ALL = cells.names()
RECURRENT = [n for n in ALL if cells.cell_class(n).recurrent]
STEPLESS = [n for n in ALL if not cells.cell_class(n).has_step]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(name, **opts):
    torch.manual_seed(0)
    return cells.build(name, I, H, max_len=T, **opts).double()


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_state_and_declared_capabilities(name):
    cls = cells.cell_class(name)
    assert isinstance(cls.title, str) and cls.title
    assert cls.recurrent or not cls.has_step  # a step without a state is meaningless
    model = make(name).eval()
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    out, state = model(x)
    assert out.shape == (B, T, H)
    assert (state is None) == (not cls.recurrent)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in ALL if cells.cell_class(n).has_step])
def test_step_equals_forward(name):
    model = make(name).eval()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, final = model(x)
    state, hs = model.initial_state(B, dtype=torch.float64), []
    for x_t in x.unbind(1):
        h, state = model.step(x_t, state)
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, 1), out, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", RECURRENT)
def test_state_continues_and_layers_stack(name):
    model = make(name).eval()
    x = torch.randn(B, T, I, dtype=torch.float64)
    whole, _ = model(x)
    first, mid = model(x[:, :3])
    second, _ = model(x[:, 3:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-10, rtol=1e-10)
    stack = make(name, layers=2).eval()
    assert len(stack(x)[1]) == 2


@pytest.mark.parametrize("name", STEPLESS)
def test_non_recurrent_model_is_causal_refuses_a_state_and_layers(name):
    model = make(name).eval()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, _ = model(x)
    for t in range(T - 1):
        y = x.clone()
        y[:, t + 1:] = torch.randn(B, T - t - 1, I, dtype=torch.float64)
        torch.testing.assert_close(model(y)[0][:, :t + 1], out[:, :t + 1], atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError):
        model(x, torch.zeros(B, H, dtype=torch.float64))
    with pytest.raises(cells.OptionError, match="layers stacks recurrent cells"):
        cells.build(name, I, H, layers=2, max_len=T)


@pytest.mark.parametrize("name", ALL)
def test_options_are_declared_with_valid_defaults_and_bench_runs_are_valid(name):
    declared = base.declared_options(cells.cell_class(name))
    for opt in declared.values():
        assert opt.kind is not base.Any, f"{name}.{opt.name} has no type annotation"
        assert opt.valid(opt.default), f"{name}.{opt.name}: default {opt.default!r} fails its own check"
    for run in cells.cell_class(name).bench_runs():
        cells.check_options(name, run, hidden_size=H)


@pytest.mark.parametrize("name", ALL)
def test_cost_hooks(name):
    assert cells.activation_bytes(name, 8, 100, 16) > 0
    assert cells.activation_bytes(name, 8, 100, 16, layers=2) == 2 * cells.activation_bytes(name, 8, 100, 16)
    assert cells.matmul_flops(name, 8, 100, 5, 16) > 0


@pytest.mark.parametrize("name", ALL)
def test_probe_works_for_every_model_and_says_what_it_measured(name):
    task = build_task("adding", gap=T, seed=0, batch_size=B)
    model = task.build_model(lambda n: cells.build(name, n, H, max_len=task.seq_len), H).double()
    x, y = task.train_batch(0, "cpu")
    norms, _ = probe.measure(task, model, (x.double(), y.double()))
    assert len(norms) == T and norms[-1] > 0
    assert probe.wrt(probe.find_cell(model)) == ("h_t" if cells.cell_class(name).has_step else "x_t")


class _NoStep(base.SequenceModel):
    """A stand-in model without step or state: y_t = W x_t (pointwise in time)."""
    title = "no-step model"
    recurrent = has_step = False

    def __init__(self, input_size, hidden_size, max_len: int | None = None):
        super().__init__()
        self.max_len = max_len
        self.lin = torch.nn.Linear(input_size, hidden_size)

    def forward(self, x, state=None):
        return self.lin(x), None


def test_impossible_pair_is_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(cells.CELLS, "nostep", (__name__, "_NoStep"))
    assert task_class("translation").requires
    with pytest.raises(ConfigError) as e:
        check_pair("nostep", task_class("translation"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cell nostep cannot run task translation") and "cells that can: rnn" in msg
    check_pair("nostep", task_class("copy"))  # no requirement
    for name in RECURRENT:
        check_pair(name, task_class("translation"))
    # built with max_len: the model sized itself by the task's sequence length
    assert cells.build("nostep", 2, 3, max_len=11).max_len == 11


def test_probe_input_gradient_by_hand(monkeypatch):
    """y_t = W x_t, loss = MSE of the read-out of the last step only: dL/dx_t = 0 for t < T-1."""
    monkeypatch.setitem(cells.CELLS, "nostep", (__name__, "_NoStep"))
    task = build_task("adding", gap=5, seed=0, batch_size=3)
    model = task.build_model(lambda n: cells.build("nostep", n, 4), 4).double()
    x, y = task.train_batch(0, "cpu")
    x, y = x.double(), y.double()
    norms, gates = probe.measure(task, model, (x, y))
    xs = x.clone().requires_grad_()
    loss = torch.nn.functional.mse_loss(model.readout(model.cell(xs)[0][:, -1]).squeeze(-1), y)
    (g,) = torch.autograd.grad(loss, xs)
    assert norms == pytest.approx(g.norm(dim=-1).mean(0).tolist(), rel=1e-12, abs=1e-300)
    assert norms[:-1] == [0.0] * 4 and norms[-1] > 0 and gates == {}
