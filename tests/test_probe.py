"""The gradient probe against autograd on an explicit unrolled loop."""
import pytest
import torch

from gapbench import cells
from gapbench.train.probe import measure
from gapbench.tasks import build_task


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru_cho"])
def test_grad_norms_match_an_explicit_unroll(cell_name):
    torch.manual_seed(0)
    task = build_task("adding", gap=12, seed=0, batch_size=5)
    model = task.build_model(lambda n: cells.build(cell_name, n, 7), 7).double()
    x, y = task.train_batch(0, "cpu")
    x, y = x.double(), y.double()

    norms, gates = measure(task, model, (x, y))

    # the same quantity by hand: unroll, keep h_t, backpropagate the task's loss
    cell = model.cell
    state, hs = cell.initial_state(5, dtype=torch.float64), []
    for x_t in x.unbind(1):
        h, state = cell.step(x_t, state)
        h.retain_grad()
        hs.append(h)
    loss = torch.nn.functional.mse_loss(model.readout(hs[-1]).squeeze(-1), y)
    loss.backward()
    expected = [h.grad.norm(dim=-1).mean().item() for h in hs]
    assert norms == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert len(norms) == 12 and norms[-1] > 0
    if cell_name == "rnn":
        assert gates == {}
    else:
        assert gates and all(0 <= v <= 1 for v in gates.values())


def test_probe_leaves_parameter_gradients_alone():
    task = build_task("copy", gap=5, seed=0, batch_size=4)
    model = task.build_model(lambda n: cells.build("lstm", n, 8), 8)
    measure(task, model, task.train_batch(0, "cpu"))
    assert all(p.grad is None for p in model.parameters())


def test_linear_rnn_gradient_decays_geometrically():
    """h_t = tanh(W h_{t-1} + U x_t) near 0 is linear: with W = 0.5 I and a loss on h_T only,
    ||dL/dh_t|| = 0.5^(T-t) ||dL/dh_T|| (by hand)."""
    task = build_task("adding", gap=10, seed=0, batch_size=3)
    model = task.build_model(lambda n: cells.build("rnn", n, 4), 4).double()
    with torch.no_grad():
        for name, p in model.cell.named_parameters():
            p.zero_()
            if "weight_hh" in name:
                p.copy_(0.5 * torch.eye(4))
            if "weight_ih" in name:
                p.fill_(1e-6)  # stay in tanh's linear range
    x, y = task.train_batch(0, "cpu")
    norms, _ = measure(task, model, (x.double(), y.double()))
    ratios = [norms[t] / norms[t + 1] for t in range(9)]
    assert ratios == pytest.approx([0.5] * 9, rel=1e-6)
