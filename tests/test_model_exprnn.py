"""expRNN (Lezcano-Casado & Martínez-Rubio 2019) against its equations in float64: B = exp(A) with A
skew-symmetric is orthogonal, and the recurrence with modReLU."""
import pytest
import torch

from gapbench import cells

B, T, I, H = 3, 9, 4, 6


def modrelu(z, b):
    return torch.sign(z) * torch.relu(z.abs() + b)


def reference(cell, x, h):
    X = cell.recurrent_kernel.parametrizations.weight.original
    A = X.tril() - X.tril().T
    Bm = torch.linalg.matrix_exp(A)
    hs = []
    for x_t in x.unbind(1):
        h = modrelu(x_t @ cell.input_kernel.weight.T + h @ Bm.T, cell.bias)
        hs.append(h)
    return torch.stack(hs, 1)


@pytest.mark.parametrize("init", ["henaff", "cayley"])
def test_forward_gradients_and_orthogonality_in_float64(init):
    torch.manual_seed(0)
    cell = cells.build("exprnn", I, H, init=init).double()
    with torch.no_grad():
        cell.bias.uniform_(-0.5, 0.5)
    Bm = cell.weight_hh
    torch.testing.assert_close(Bm @ Bm.T, torch.eye(H, dtype=torch.float64), atol=1e-12, rtol=0)
    A = cell.recurrent_kernel.parametrizations.weight.original.tril()
    A = A - A.T
    assert torch.count_nonzero(A) == 2 * (H // 2)  # 2x2 blocks only
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    out, final = cell(x, h0)
    ref = reference(cell, x, h0)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    w = torch.randn_like(out)
    params = [x, h0, *cell.parameters()]
    for a, b in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_stays_orthogonal_after_training_steps():
    torch.manual_seed(0)
    cell = cells.build("exprnn", I, H).double()
    opt = torch.optim.Adam(cell.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        cell(torch.randn(B, T, I, dtype=torch.float64))[0].pow(2).sum().backward()
        opt.step()
    Bm = cell.weight_hh
    torch.testing.assert_close(Bm @ Bm.T, torch.eye(H, dtype=torch.float64), atol=1e-12, rtol=0)
