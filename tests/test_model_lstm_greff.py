"""Greff et al. 2017's LSTM variants against their equations, written here from the paper in float64:
both implementations (hand-written BPTT and autograd), values and gradients through outputs and
final state from a non-zero initial state; and the variants that coincide with existing cells."""
import copy

import pytest
import torch

from gapbench import cells

sig, tanh = torch.sigmoid, torch.tanh
B, T, I, H = 3, 8, 4, 5
VARIANTS = [n for n in cells.names() if n.startswith("lstm_greff_")]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(name, seed=0, **opts):
    torch.manual_seed(seed)
    cell = cells.build(name, I, H, **opts).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-0.8, 0.8)
    return cell


def reference(cell, x, state):
    """Greff et al. §II, V with its one-line changes (see the module docstring)."""
    v = cell.variant
    blocks = dict(zip(cell.spec.blocks, range(len(cell.spec.blocks))))
    W = {n: cell.weight_ih[k * H:(k + 1) * H] for n, k in blocks.items()}
    R = {n: cell.weight_hh[k * H:(k + 1) * H] for n, k in blocks.items()}
    b = {n: cell.bias[k * H:(k + 1) * H] for n, k in blocks.items()}
    p = dict(zip(cell.spec.peeps, cell.peephole)) if cell.peephole is not None else {}
    y, c, *a = state
    outs = []
    for x_t in x.unbind(1):
        pre = {n: x_t @ W[n].T + y @ R[n].T + b[n] for n in blocks}
        if v == "FGR":
            Rg = {n: cell.weight_gg[k * H:(k + 1) * H] for k, n in enumerate("ifo")}
            pre = {n: pre[n] + (a[0] @ Rg[n].T if n in Rg else 0) for n in pre}
        z = pre["z"] if v == "NIAF" else tanh(pre["z"])
        i = torch.ones_like(c) if v == "NIG" else sig(pre["i"] + p.get("i", 0) * c)
        if v == "CIFG":
            f = 1 - i
        elif v == "NFG":
            f = torch.ones_like(c)
        else:
            f = sig(pre["f"] + p.get("f", 0) * c)
        c = z * i + c * f
        o = torch.ones_like(c) if v == "NOG" else sig(pre["o"] + p.get("o", 0) * c)
        y = (c if v == "NOAF" else tanh(c)) * o
        if v == "FGR":
            a = [torch.cat([i, f, o], -1)]
        outs.append(y)
    return torch.stack(outs, 1), (y, c, *a)


def random_state(cell, requires_grad=False):
    s = cell.initial_state(B, dtype=torch.float64)
    return tuple(torch.randn_like(t).requires_grad_(requires_grad) for t in s)


def flat(state):
    return torch.cat(state, -1)


@pytest.mark.parametrize("impl", ["bptt", "autograd"])
@pytest.mark.parametrize("name", VARIANTS)
def test_values_and_gradients_match_the_equations(name, impl):
    cell = make(name, impl=impl)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    s0 = random_state(cell, requires_grad=True)
    out, final = cell(x, s0)
    ref_out, ref_final = reference(cell, x, s0)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(flat(final), flat(ref_final), atol=1e-12, rtol=1e-10)
    w_out, w_fin = torch.randn_like(out), torch.randn_like(flat(final))
    params = [x, *s0, *cell.parameters()]
    got = torch.autograd.grad((out * w_out).sum() + (flat(final) * w_fin).sum(), params)
    want = torch.autograd.grad((ref_out * w_out).sum() + (flat(ref_final) * w_fin).sum(), params)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("name", VARIANTS)
def test_float32_fast_path_close_to_float64(name):
    cell64 = make(name, seed=1)
    cell32 = copy.deepcopy(cell64).float()
    x = torch.randn(4, 40, I, dtype=torch.float64)
    w = torch.randn(4, 40, H, dtype=torch.float64)
    x32 = x.float().requires_grad_()
    got = torch.autograd.grad((cell32(x32)[0] * w.float()).sum(), [x32, *cell32.parameters()])
    x.requires_grad_()
    ref_out, _ = reference(cell64, x, cell64.initial_state(4, dtype=torch.float64))
    want = torch.autograd.grad((ref_out * w).sum(), [x, *cell64.parameters()])
    for g, r in zip(got, want):
        scale = r.abs().max().item() + 1e-3
        torch.testing.assert_close(g.double() / scale, r / scale, atol=2e-4, rtol=0)


@pytest.mark.parametrize("name", ["lstm_greff_v", "lstm_greff_cifg", "lstm_greff_fgr"])
def test_gradcheck(name):
    cell = make(name)
    x = torch.randn(2, 3, I, dtype=torch.float64, requires_grad=True)
    s0 = [t[:2].detach().requires_grad_() for t in random_state(cell)]

    def f(inp, *state):
        out, final = cell(inp, tuple(state))
        return out, flat(final)
    assert torch.autograd.gradcheck(f, (x, *s0))


def test_v_is_lstm_peephole_np_is_lstm_and_cifg_without_peepholes_is_lstm_cifg():
    x = torch.randn(B, T, I, dtype=torch.float64)
    v, peep = make("lstm_greff_v"), cells.build("lstm_peephole", I, H).double()
    peep.load_state_dict(v.state_dict())  # same layout [i, f, z, o], peepholes [p_i, p_f, p_o]
    torch.testing.assert_close(v(x)[0], peep(x)[0], atol=1e-12, rtol=1e-12)

    np_, lstm = make("lstm_greff_np"), cells.build("lstm", I, H).double()
    with torch.no_grad():
        lstm.rnn.weight_ih_l0.copy_(np_.weight_ih)
        lstm.rnn.weight_hh_l0.copy_(np_.weight_hh)
        lstm.rnn.bias_ih_l0.copy_(np_.bias)
        lstm.rnn.bias_hh_l0.zero_()
    torch.testing.assert_close(np_(x)[0], lstm(x)[0], atol=1e-12, rtol=1e-12)

    cifg, lc = make("lstm_greff_cifg"), cells.build("lstm_cifg", I, H).double()
    with torch.no_grad():
        cifg.peephole.zero_()
    lc.load_state_dict({k: v for k, v in cifg.state_dict().items() if k != "peephole"})
    torch.testing.assert_close(cifg(x)[0], lc(x)[0], atol=1e-12, rtol=1e-12)


def test_forget_bias_and_gates_reported():
    cell = cells.build("lstm_greff_cifg", I, H, forget_bias=2.0).double()
    with torch.no_grad():
        cell.weight_hh.zero_()
        cell.weight_ih.zero_()
        cell.peephole.zero_()
    gates = {}
    cell.step(torch.zeros(1, I, dtype=torch.float64), cell.initial_state(1, dtype=torch.float64), gates=gates)
    torch.testing.assert_close(gates["forget"], torch.sigmoid(torch.tensor(2.0, dtype=torch.float64)).expand(1, H))
    gates = {}
    nig = cells.build("lstm_greff_nig", I, H).double()
    nig.step(torch.zeros(1, I, dtype=torch.float64), nig.initial_state(1, dtype=torch.float64), gates=gates)
    assert set(gates) == {"forget", "output"}
