"""Every cell against a float64 step-by-step reference written here from its own equations.

The hand-written cells have two forward/backward implementations (impl="bptt": custom autograd
Function with hand-written backprop through time; impl="autograd": plain loop); both are checked.
In float64 the bptt path uses torch.mm; in float32 on CPU it uses oneDNN matmuls, which the float32
tests check against the float64 reference.
"""
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from gapbench import cells

sig, tanh = torch.sigmoid, torch.tanh
B, T, I, H = 3, 9, 4, 5


def ref_rnn(c, x, h):
    for x_t in x.unbind(1):
        h = tanh(x_t @ c.rnn.weight_ih_l0.T + c.rnn.bias_ih_l0 + h @ c.rnn.weight_hh_l0.T + c.rnn.bias_hh_l0)
        yield h, h


def ref_gru(c, x, h):
    W_ir, W_iz, W_in = c.rnn.weight_ih_l0.chunk(3)
    W_hr, W_hz, W_hn = c.rnn.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = c.rnn.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = c.rnn.bias_hh_l0.chunk(3)
    for x_t in x.unbind(1):
        r = sig(x_t @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = sig(x_t @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = tanh(x_t @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        h = (1 - z) * n + z * h
        yield h, h


def ref_gru_cho(c, x, h):
    # r, u = sigmoid(W[x, h] + b); c = tanh(W_c[x, r*h] + b_c); h' = u*h + (1-u)*c
    W_x, Wc_x = c.weight_ih.split([2 * H, H])
    b, b_c = c.bias.split([2 * H, H])
    W = torch.cat([W_x, c.weight_hh], dim=1)
    W_c = torch.cat([Wc_x, c.weight_hc], dim=1)
    for x_t in x.unbind(1):
        r, u = sig(torch.cat([x_t, h], 1) @ W.T + b).chunk(2, 1)
        cand = tanh(torch.cat([x_t, r * h], 1) @ W_c.T + b_c)
        h = u * h + (1 - u) * cand
        yield h, h


def ref_lstm(c, x, state):
    h, cs = state
    W_i, W_f, W_g, W_o = c.rnn.weight_ih_l0.chunk(4)
    U_i, U_f, U_g, U_o = c.rnn.weight_hh_l0.chunk(4)
    b = c.rnn.bias_ih_l0 + c.rnn.bias_hh_l0
    b_i, b_f, b_g, b_o = b.chunk(4)
    for x_t in x.unbind(1):
        i = sig(x_t @ W_i.T + h @ U_i.T + b_i)
        f = sig(x_t @ W_f.T + h @ U_f.T + b_f)
        g = tanh(x_t @ W_g.T + h @ U_g.T + b_g)
        o = sig(x_t @ W_o.T + h @ U_o.T + b_o)
        cs = f * cs + i * g
        h = o * tanh(cs)
        yield h, (h, cs)


def ref_lstm_peephole(c, x, state):
    h, cs = state
    W_i, W_f, W_g, W_o = c.weight_ih.chunk(4)
    U_i, U_f, U_g, U_o = c.weight_hh.chunk(4)
    b_i, b_f, b_g, b_o = c.bias.chunk(4)
    p_i, p_f, p_o = c.peephole
    for x_t in x.unbind(1):
        i = sig(x_t @ W_i.T + h @ U_i.T + p_i * cs + b_i)      # sees c_{t-1}
        f = sig(x_t @ W_f.T + h @ U_f.T + p_f * cs + b_f)      # sees c_{t-1}
        g = tanh(x_t @ W_g.T + h @ U_g.T + b_g)
        cs = f * cs + i * g
        o = sig(x_t @ W_o.T + h @ U_o.T + p_o * cs + b_o)      # sees c_t
        h = o * tanh(cs)
        yield h, (h, cs)


def ref_lstm_cifg(c, x, state):
    h, cs = state
    W_i, W_g, W_o = c.weight_ih.chunk(3)
    U_i, U_g, U_o = c.weight_hh.chunk(3)
    b_i, b_g, b_o = c.bias.chunk(3)
    for x_t in x.unbind(1):
        i = sig(x_t @ W_i.T + h @ U_i.T + b_i)
        f = 1 - i
        g = tanh(x_t @ W_g.T + h @ U_g.T + b_g)
        o = sig(x_t @ W_o.T + h @ U_o.T + b_o)
        cs = f * cs + i * g
        h = o * tanh(cs)
        yield h, (h, cs)


REFERENCES = {"rnn": ref_rnn, "gru": ref_gru, "gru_cho": ref_gru_cho, "lstm": ref_lstm,
              "lstm_peephole": ref_lstm_peephole, "lstm_cifg": ref_lstm_cifg}
LSTMS = ["lstm", "lstm_peephole", "lstm_cifg"]
HAND_WRITTEN = ["gru_cho", "lstm_peephole", "lstm_cifg"]
# every cell, and the hand-written ones with each implementation
VARIANTS = [pytest.param(n, {}, id=n) for n in REFERENCES if n not in HAND_WRITTEN] + [
    pytest.param(n, {"impl": impl}, id=f"{n}-{impl}") for n in HAND_WRITTEN for impl in ("bptt", "autograd")]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP's spinning threads
    can make a 5x5 float64 matmul take milliseconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def reference(name, cell, x, state=None):
    if state is None:
        z = torch.zeros(x.shape[0], H, dtype=x.dtype)
        state = (z, z) if name in LSTMS else z
    hs, final = [], state
    for h, final in REFERENCES[name](cell, x, state):
        hs.append(h)
    return torch.stack(hs, 1), final


def flat(state):
    return torch.cat(state, -1) if isinstance(state, tuple) else state


def make(name, seed=0, **opts):
    torch.manual_seed(seed)
    cell = cells.build(name, I, H, **opts).double()
    with torch.no_grad():  # random, non-default values everywhere (biases and peepholes included)
        for p in cell.parameters():
            p.uniform_(-0.8, 0.8)
    return cell


def test_registry_covers_every_cell():
    """Each registered model has its reference test: here, or in its own tests/test_model_<name>.py."""
    own = {p.stem.removeprefix("test_model_") for p in Path(__file__).parent.glob("test_model_*.py")}
    # a family registered under several names (lstm_greff_v, lstm_greff_nig, ...) shares one file
    untested = [n for n in cells.names() if n not in REFERENCES and not any(n == o or n.startswith(o + "_") for o in own)]
    assert not untested, f"no reference test for {untested}"
    assert set(REFERENCES) <= set(cells.names())
    with pytest.raises(ValueError, match="unknown cell 'foo'; valid cells: rnn, gru, gru_cho, lstm"):
        cells.build("foo", I, H)


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_forward_matches_float64_reference(name, opts):
    cell = make(name, **opts)
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, final = cell(x)
    ref_out, ref_final = reference(name, cell, x)
    assert out.shape == (B, T, H)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(flat(final), flat(ref_final), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_step_matches_float64_reference_and_fills_gates(name):
    cell = make(name)
    x = torch.randn(B, T, I, dtype=torch.float64)
    state, hs, gates = cell.initial_state(B, dtype=torch.float64), [], {}
    for x_t in x.unbind(1):
        h, state = cell.step(x_t, state, gates=gates)
        hs.append(h)
    ref_out, ref_final = reference(name, cell, x)
    torch.testing.assert_close(torch.stack(hs, 1), ref_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(flat(state), flat(ref_final), atol=1e-10, rtol=1e-10)
    if name == "rnn":
        assert gates == {}
    else:
        assert gates and all(((g > 0) & (g < 1)).all() for g in gates.values())


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_float32_close_to_float64(name, opts):
    cell64 = make(name, **opts)
    cell32 = copy.deepcopy(cell64).float()
    x = torch.randn(B, 50, I, dtype=torch.float64)
    torch.testing.assert_close(cell32(x.float())[0].double(), reference(name, cell64, x)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_gradients_match_reference(name, opts):
    cell = make(name, **opts)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    w = torch.randn(B, T, H, dtype=torch.float64)
    params = [x, *cell.parameters()]
    got = torch.autograd.grad((cell(x)[0] * w).sum(), params)
    want = torch.autograd.grad((reference(name, cell, x)[0] * w).sum(), params)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", HAND_WRITTEN)
@pytest.mark.parametrize("impl", ["bptt", "autograd"])
def test_gradcheck_hand_written(name, impl):
    """Numerical gradients w.r.t. x and the initial state, through outputs and final state."""
    cell = make(name, impl=impl)
    x = torch.randn(2, 4, I, dtype=torch.float64, requires_grad=True)
    s0 = [torch.randn(2, H, dtype=torch.float64, requires_grad=True) for _ in range(2 if name in LSTMS else 1)]

    def f(inp, *state):
        out, final = cell(inp, tuple(state) if name in LSTMS else state[0])
        return out, flat(final)
    assert torch.autograd.gradcheck(f, (x, *s0))


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_state_carries_across_calls(name, opts):
    cell = make(name, **opts)
    x = torch.randn(B, T, I, dtype=torch.float64)
    whole, final = cell(x)
    first, mid = cell(x[:, :4])
    second, final2 = cell(x[:, 4:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(flat(final2), flat(final), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name,kernel", [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_written_out_math_equals_pytorch_kernel_with_copied_weights(name, kernel):
    """The equations in step() (not the fused path) against a separate nn.LSTM / nn.GRU."""
    cell = make(name)
    ref = kernel(I, H, batch_first=True).double()
    ref.load_state_dict({k.removeprefix("rnn."): v for k, v in cell.state_dict().items()})
    x = torch.randn(B, T, I, dtype=torch.float64)
    state, hs = cell.initial_state(B, dtype=torch.float64), []
    for x_t in x.unbind(1):
        h, state = cell.step(x_t, state)
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, 1), ref(x)[0], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", LSTMS)
@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_forget_bias_sets_the_initial_forget_gate(name, forget_bias):
    torch.manual_seed(0)
    cell = cells.build(name, I, H, forget_bias=forget_bias).double()
    with torch.no_grad():  # isolate the bias: no input, no recurrent or peephole contribution
        for pname, p in cell.named_parameters():
            if "weight" in pname or "peephole" in pname:
                p.zero_()
    gates = {}
    cell.step(torch.zeros(1, I, dtype=torch.float64), cell.initial_state(1, dtype=torch.float64), gates=gates)
    expected = torch.sigmoid(torch.tensor(forget_bias, dtype=torch.float64))
    torch.testing.assert_close(gates["forget"], expected.expand(1, H))


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_gradients_through_initial_and_final_state(name, opts):
    """dL/d(params, x, h0[, c0]) for a loss on outputs AND final state, from a non-zero initial state."""
    cell = make(name, **opts)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    n_state = 2 if name in LSTMS else 1
    s0 = [torch.randn(B, H, dtype=torch.float64, requires_grad=True) for _ in range(n_state)]
    state = tuple(s0) if n_state == 2 else s0[0]
    w_out, w_fin = torch.randn(B, T, H, dtype=torch.float64), torch.randn(B, n_state * H, dtype=torch.float64)
    params = [x, *s0, *cell.parameters()]

    def loss(out, final):
        return (out * w_out).sum() + (flat(final) * w_fin).sum()
    got = torch.autograd.grad(loss(*cell(x, state)), params)
    want = torch.autograd.grad(loss(*reference(name, cell, x, state)), params)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", HAND_WRITTEN)
@pytest.mark.parametrize("loss_kind", ["weighted", "sum", "final_only"])
def test_float32_fast_path_gradients_close_to_float64_reference(name, loss_kind):
    """The float32 path (oneDNN matmuls on CPU, tanh via sigmoid) against the float64 reference, with
    a dense, an expanded (out.sum()) and an all-zero output gradient."""
    cell64 = make(name, seed=1)
    cell32 = copy.deepcopy(cell64).float()
    x64 = torch.randn(4, 60, I, dtype=torch.float64)
    w = torch.randn(4, 60, H, dtype=torch.float64)

    def loss(out, final):
        if loss_kind == "weighted":
            return (out * w).sum()
        if loss_kind == "sum":
            return out.sum()
        return flat(final).pow(2).sum()
    x32 = x64.float().requires_grad_()
    got = torch.autograd.grad(loss(*cell32(x32)), [x32, *cell32.parameters()])
    x64.requires_grad_()
    want = torch.autograd.grad(loss(*reference(name, cell64, x64)), [x64, *cell64.parameters()])
    for g, r in zip(got, want):
        scale = r.abs().max().item() + 1e-3
        torch.testing.assert_close(g.double() / scale, r / scale, atol=2e-4, rtol=0)


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_bptt_path_edge_cases(name):
    cell = make(name)
    x = torch.randn(1, 1, I, dtype=torch.float64, requires_grad=True)  # B = T = 1
    torch.testing.assert_close(cell(x)[0], reference(name, cell, x)[0], atol=1e-12, rtol=1e-12)
    out, _ = cell(torch.randn(2, 5, I, dtype=torch.float64, requires_grad=True))
    out.sum().backward(retain_graph=True)  # a second backward through the same graph works
    first = [p.grad.clone() for p in cell.parameters()]
    out.sum().backward()
    for p, g in zip(cell.parameters(), first):
        torch.testing.assert_close(p.grad, 2 * g)
    out, _ = cell(torch.randn(2, 5, I, dtype=torch.float64, requires_grad=True))
    out.mul_(2)  # the output buffer is saved for backward: in-place edits must be caught
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    with pytest.raises(ValueError, match="time>0"):
        cell(torch.randn(2, 0, I, dtype=torch.float64))


def test_forget_bias_sits_in_one_bias_vector():
    H4 = slice(H, 2 * H)
    lstm = cells.build("lstm", I, H, forget_bias=1.7)
    assert (lstm.rnn.bias_ih_l0[H4] == 1.7).all() and (lstm.rnn.bias_hh_l0[H4] == 0).all()
    assert (cells.build("lstm_peephole", I, H, forget_bias=1.7).bias[H4] == 1.7).all()
    assert (cells.build("lstm_cifg", I, H, forget_bias=1.7).bias[:H] == -1.7).all()  # f = 1 - i


@pytest.mark.parametrize("name,opts,exc,msg", [
    ("rnn", {"forget_bias": 1.0}, TypeError, "cell 'rnn' has no option 'forget_bias'; its options: layers, dropout"),
    ("gru_cho", {"forget_bias": 1.0}, TypeError, "its options: impl"),
    ("lstm", {"bogus": 1}, TypeError, "its options: forget_bias"),
    ("lstm_cifg", {"impl": "fast"}, ValueError, "cell.impl='fast' is invalid for cell 'lstm_cifg'; valid: one of bptt, autograd"),
    ("lstm", {"forget_bias": "abc"}, ValueError, "cell.forget_bias='abc' is invalid for cell 'lstm'; valid: a number"),
    ("lstm", {"forget_bias": True}, ValueError, "valid: a number"),
])
def test_unknown_option_is_refused(name, opts, exc, msg):
    with pytest.raises(exc, match=msg):
        cells.build(name, I, H, **opts)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_fused_flag(name):
    assert cells.build(name, I, H).fused == (name in ("rnn", "gru", "lstm"))


def test_every_cell_has_a_title():
    for name in cells.names():
        assert cells.cell_class(name).title and cells.title(name) == cells.cell_class(name).title
    assert cells.title("no_such_cell") == "no_such_cell"


@pytest.mark.parametrize("name", [n for n in cells.names() if cells.cell_class(n).recurrent])
def test_stacked_layers_match_their_cells_run_in_turn(name):
    """layers=2: the second cell reads the first one's outputs; forward, step and state agree."""
    torch.manual_seed(0)
    stack = cells.build(name, I, H, layers=2, dropout=0.0, max_len=T).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, state = stack(x)
    y0, s0 = stack.layers[0](x)
    y1, s1 = stack.layers[1](y0)
    torch.testing.assert_close(out, y1)
    assert len(state) == 2
    st, outs = stack.initial_state(B, dtype=torch.float64), []
    for x_t in x.unbind(1):
        h, st = stack.step(x_t, st)
        outs.append(h)
    torch.testing.assert_close(torch.stack(outs, 1), out)


def test_stacked_dropout_only_between_layers_and_bad_values_refused():
    stack = cells.build("lstm", I, H, layers=3, dropout=0.5)
    assert stack.hidden_size == H and stack.layers[1].input_size == H and stack.title == "3 × LSTM"
    stack.eval()
    x = torch.randn(B, T, I)
    torch.testing.assert_close(stack(x)[0], stack(x)[0])
    for bad in ({"layers": 0}, {"layers": 1.5}, {"dropout": 1.0}, {"dropout": -0.1}):
        with pytest.raises(ValueError, match="invalid"):
            cells.build("gru", I, H, **bad)
