"""Fast paths for the hand-written cells: a custom autograd.Function per cell with hand-written
backpropagation through time. Measurements and what did not work: docs/development/performance_log.md.

Autograd over a Python loop records ~10 small ops per step and replays them one by one; on the
2-core CPU that is 1.3-2x slower than nn.LSTM, which runs oneDNN's fused RNN kernel there. Here

* forward: ONE matmul projects the inputs of all time steps (x [B*T, I] @ W_ih^T + b); the loop
  then does one `x_proj_t + h_{t-1} @ W_hh^T` matmul and a handful of in-place elementwise ops
  per step, writing c_t, tanh(c_t), h_t into preallocated [B, T, H] buffers;
* backward: per step only the elementwise chain rule for the pre-activation gradients dgates_t
  (written into one [B, T, G] buffer) and one `dL/dh_{t-1} = dout_{t-1} + dgates_t @ W_hh`;
  after the loop dW_hh, dW_ih and dx by ONE matmul each over all B*T rows, db by one sum.

Two CPU-specific measures (both measured on the 2-core AMD EPYC of the dev machine, torch 2.13):

* matmuls go through oneDNN (`torch.ops.mkldnn._linear_pointwise`, the op Inductor's CPU backend
  emits) for float32 on CPU: MKL's sgemm runs at ~60-95 GFLOP/s there for these shapes, oneDNN at
  ~140-180 (nn.LSTM gets its speed from oneDNN too). Exact float32 math, no reduced precision.
  Anything else (float64, CUDA, or the op missing) uses torch.mm/addmm.
* tanh is computed as 2*sigmoid(2x) - 1: aten's CPU tanh takes 36 us for a 128x128 tensor there,
  sigmoid 4 us. Identical in exact arithmetic; the rounding error is ~1 ulp of 1 (absolute).

Each Function's `backward` is once_differentiable (no double backward). The tests check values
and gradients of this path against a float64 step-by-step reference written from the equations.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def _onednn_ok() -> bool:
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a, w, o = torch.randn(3, 4), torch.randn(5, 4), torch.randn(3, 5)
        return (torch.allclose(op(a, w, None, "none", [], ""), a @ w.T, atol=1e-5)
                and torch.allclose(op.binary(a, o, w, None, "add"), o + a @ w.T, atol=1e-5))
    except Exception:  # op absent or broken in this build
        return False


ONEDNN = _onednn_ok()
USE_ONEDNN = True  # switch for measurements (gapbench.perf.bench --no-onednn)


def _use_onednn(t: torch.Tensor) -> bool:
    return ONEDNN and USE_ONEDNN and t.device.type == "cpu" and t.dtype == torch.float32


def linear(x, w, b=None):
    """x @ w^T (+ b), x [N, K], w [M, K]."""
    if _use_onednn(x):
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
    return x @ w.t() if b is None else torch.addmm(b, x, w.t())


def linear_add(x, other, w):
    """other + x @ w^T."""
    if _use_onednn(x):
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, w, None, "add")
    return torch.addmm(other, x, w.t())


def weight_grad(D2, X2):
    """D2^T @ X2 ([N, G], [N, K] -> [G, K]), summing over the N = B*T rows. oneDNN computes it fastest
    as (X2^T @ D2)^T, i.e. linear(X2^T, D2^T) transposed (measured 106 vs 61 GFLOP/s at G=512, K=128)."""
    if _use_onednn(D2) and D2.is_contiguous() and X2.is_contiguous():
        return torch.ops.mkldnn._linear_pointwise(X2.t(), D2.t(), None, "none", [], "").t().contiguous()
    return D2.t() @ X2


def tanh_(t):
    """In-place tanh as 2 sigmoid(2t) - 1 (see module docstring)."""
    return t.mul_(2).sigmoid_().mul_(2).sub_(1)


def tanh_into(t, out):
    """out = tanh(t), as 2 sigmoid(2t) - 1."""
    return torch.mul(t, 2, out=out).sigmoid_().mul_(2).sub_(1)


def _shift(first, seq):
    """[first, seq[:, 0], ..., seq[:, T-2]]: the 'previous step' values as one contiguous [B, T, H]."""
    return torch.cat([first.unsqueeze(1), seq[:, :-1]], 1)


def _empty(*shape, like):
    return torch.empty(*shape, dtype=like.dtype, device=like.device)


def _input_grads(ctx, D, x, weight_ih):
    """Gradients for (x, weight_ih, bias) from the pre-activation gradients D [B, T, G]."""
    B, T, G = D.shape
    D2 = D.view(B * T, G)
    dx = dw_ih = db = None
    if ctx.needs_input_grad[0]:
        dx = linear(D2, weight_ih.t().contiguous()).view(B, T, -1)
    if ctx.needs_input_grad[1]:
        dw_ih = weight_grad(D2, x.view(B * T, -1))
    if ctx.needs_input_grad[2]:
        db = D2.sum(0)
    return dx, dw_ih, db


def _project(x, weight_ih, bias):
    B, T, I = x.shape
    return linear(x.view(B * T, I), weight_ih, bias).view(B, T, -1)


class PeepholeLSTMFunction(torch.autograd.Function):
    """Gates [i, f, g, o]; i, f see c_{t-1} through p_i, p_f; o sees c_t through p_o."""

    @staticmethod
    def forward(ctx, x, weight_ih, bias, weight_hh, peephole, h0, c0):
        x = x.contiguous()
        B, T, _ = x.shape
        H = h0.shape[-1]
        XP = _project(x, weight_ih, bias)                  # [B, T, 4H]
        C, TC, OUT = (_empty(B, T, H, like=x) for _ in range(3))   # c_t, tanh(c_t), h_t
        p_i, p_f, p_o = peephole.unbind(0)
        gates = []                                          # per step [B, 4H]: i, f, g, o
        h, c = h0, c0
        for xp_t, c_t, tc_t, h_t in zip(XP.unbind(1), C.unbind(1), TC.unbind(1), OUT.unbind(1)):
            z = linear_add(h, xp_t, weight_hh)
            z4 = z.view(B, 4, H)
            i, f, g, o = z4.unbind(1)
            i.addcmul_(p_i, c)                              # i, f peek at c_{t-1}
            f.addcmul_(p_f, c)
            g.mul_(2)
            z[:, :3 * H].sigmoid_()                         # i, f, sigmoid(2 pre_g)
            g.mul_(2).sub_(1)                               # g = tanh(pre_g)
            torch.mul(f, c, out=c_t)
            c_t.addcmul_(i, g)                              # c_t = f c + i g
            o.addcmul_(p_o, c_t).sigmoid_()                 # o peeks at c_t
            tanh_into(c_t, tc_t)
            torch.mul(o, tc_t, out=h_t)
            gates.append(z)
            h, c = h_t, c_t
        ctx.save_for_backward(x, weight_ih, weight_hh, peephole, h0, c0, C, TC, OUT, *gates)
        return OUT, OUT[:, -1].clone(), C[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hT, d_cT):
        x, weight_ih, weight_hh, peephole, h0, c0, C, TC, OUT, *gates = ctx.saved_tensors
        B, T, H = C.shape
        p_i, p_f, p_o = peephole.unbind(0)
        w_hh_t = weight_hh.t().contiguous()
        D = _empty(B, T, 4 * H, like=C)                     # dL/d pre-activations
        dh = d_out[:, -1] + d_hT
        dc = d_cT.clone()
        for t in range(T - 1, -1, -1):
            z4 = gates[t].view(B, 4, H)
            i, f, g, o = z4.unbind(1)
            tc, c_prev = TC[:, t], (C[:, t - 1] if t > 0 else c0)
            D4 = D[:, t].view(B, 4, H)
            D_i, D_f, D_g, D_o = D4.unbind(1)
            torch.mul(dh, tc, out=D_o)
            D_o.mul_(torch.addcmul(o, o, o, value=-1))      # * o (1 - o)
            b = dh * o
            dc.add_(b)
            b.mul_(tc)
            dc.addcmul_(b, tc, value=-1)                    # dc += dh o (1 - tc^2)
            dc.addcmul_(D_o, p_o)                           # o peeks at c_t
            torch.mul(dc, g, out=D_i)
            D_i.mul_(torch.addcmul(i, i, i, value=-1))      # dc g i (1 - i)
            torch.mul(dc, c_prev, out=D_f)
            D_f.mul_(torch.addcmul(f, f, f, value=-1))      # dc c_{t-1} f (1 - f)
            torch.mul(dc, i, out=D_g)
            D_g.addcmul_(D_g * g, g, value=-1)              # * (1 - g^2)
            dc.mul_(f)
            dc.addcmul_(D_i, p_i)
            dc.addcmul_(D_f, p_f)                           # now dL/dc_{t-1}
            if t > 0:
                dh = linear_add(D[:, t], d_out[:, t - 1], w_hh_t)
        dh0 = linear(D[:, 0], w_hh_t) if ctx.needs_input_grad[5] else None
        dc0 = dc if ctx.needs_input_grad[6] else None
        D2 = D.view(B * T, 4 * H)
        dw_hh = weight_grad(D2, _shift(h0, OUT).view(B * T, H)) if ctx.needs_input_grad[3] else None
        dp = None
        if ctx.needs_input_grad[4]:
            cprev = _shift(c0, C)
            dp = torch.stack([(D[..., :H] * cprev).sum((0, 1)), (D[..., H:2 * H] * cprev).sum((0, 1)),
                              (D[..., 3 * H:] * C).sum((0, 1))])
        return (*_input_grads(ctx, D, x, weight_ih), dw_hh, dp, dh0, dc0)


class CIFGLSTMFunction(torch.autograd.Function):
    """Gates [i, g, o]; f = 1 - i, so c_t = c_{t-1} + i * (g - c_{t-1}) (a lerp)."""

    @staticmethod
    def forward(ctx, x, weight_ih, bias, weight_hh, h0, c0):
        x = x.contiguous()
        B, T, _ = x.shape
        H = h0.shape[-1]
        XP = _project(x, weight_ih, bias)                  # [B, T, 3H]
        C, TC, OUT = (_empty(B, T, H, like=x) for _ in range(3))
        gates = []
        h, c = h0, c0
        for xp_t, c_t, tc_t, h_t in zip(XP.unbind(1), C.unbind(1), TC.unbind(1), OUT.unbind(1)):
            z = linear_add(h, xp_t, weight_hh)
            z3 = z.view(B, 3, H)
            i, g, o = z3.unbind(1)
            g.mul_(2)
            z.sigmoid_()                                    # i, sigmoid(2 pre_g), o
            g.mul_(2).sub_(1)                               # g = tanh(pre_g)
            torch.lerp(c, g, i, out=c_t)                    # (1 - i) c + i g
            tanh_into(c_t, tc_t)
            torch.mul(o, tc_t, out=h_t)
            gates.append(z)
            h, c = h_t, c_t
        ctx.save_for_backward(x, weight_ih, weight_hh, h0, c0, C, TC, OUT, *gates)
        return OUT, OUT[:, -1].clone(), C[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hT, d_cT):
        x, weight_ih, weight_hh, h0, c0, C, TC, OUT, *gates = ctx.saved_tensors
        B, T, H = C.shape
        w_hh_t = weight_hh.t().contiguous()
        D = _empty(B, T, 3 * H, like=C)
        dh = d_out[:, -1] + d_hT
        dc = d_cT.clone()
        for t in range(T - 1, -1, -1):
            i, g, o = gates[t].view(B, 3, H).unbind(1)
            tc, c_prev = TC[:, t], (C[:, t - 1] if t > 0 else c0)
            D_i, D_g, D_o = D[:, t].view(B, 3, H).unbind(1)
            torch.mul(dh, tc, out=D_o)
            D_o.mul_(torch.addcmul(o, o, o, value=-1))      # * o (1 - o)
            b = dh * o
            dc.add_(b)
            b.mul_(tc)
            dc.addcmul_(b, tc, value=-1)                    # dc += dh o (1 - tc^2)
            torch.sub(g, c_prev, out=D_i)
            D_i.mul_(torch.addcmul(i, i, i, value=-1)).mul_(dc)   # dc (g - c_prev) i (1 - i)
            torch.mul(dc, i, out=D_g)
            D_g.addcmul_(D_g * g, g, value=-1)              # dc i (1 - g^2)
            dc.addcmul_(dc, i, value=-1)                    # dL/dc_{t-1} = dc (1 - i)
            if t > 0:
                dh = linear_add(D[:, t], d_out[:, t - 1], w_hh_t)
        dh0 = linear(D[:, 0], w_hh_t) if ctx.needs_input_grad[4] else None
        dc0 = dc if ctx.needs_input_grad[5] else None
        dw_hh = (weight_grad(D.view(B * T, 3 * H), _shift(h0, OUT).view(B * T, H))
                 if ctx.needs_input_grad[3] else None)
        return (*_input_grads(ctx, D, x, weight_ih), dw_hh, dh0, dc0)


class GRUChoFunction(torch.autograd.Function):
    """Gates [r, u, c]: r, u from W_ru [x, h]; c = tanh(W_c [x, r*h]); h' = lerp(c, h, u)."""

    @staticmethod
    def forward(ctx, x, weight_ih, bias, weight_hh, weight_hc, h0):
        x = x.contiguous()
        B, T, _ = x.shape
        H = h0.shape[-1]
        XP = _project(x, weight_ih, bias)                  # [B, T, 3H]
        RH, OUT = (_empty(B, T, H, like=x) for _ in range(2))   # r * h_{t-1}, h_t
        gates = []                                          # per step: r|u [B, 2H], c [B, H]
        h = h0
        for xp_t, rh_t, h_t in zip(XP.unbind(1), RH.unbind(1), OUT.unbind(1)):
            ru = linear_add(h, xp_t[:, :2 * H], weight_hh).sigmoid_()
            r, u = ru[:, :H], ru[:, H:]
            torch.mul(r, h, out=rh_t)
            cand = tanh_(linear_add(rh_t, xp_t[:, 2 * H:], weight_hc))
            torch.lerp(cand, h, u, out=h_t)                 # u h + (1 - u) c
            gates += (ru, cand)
            h = h_t
        ctx.save_for_backward(x, weight_ih, weight_hh, weight_hc, h0, RH, OUT, *gates)
        return OUT, OUT[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hT):
        x, weight_ih, weight_hh, weight_hc, h0, RH, OUT, *gates = ctx.saved_tensors
        B, T, H = OUT.shape
        w_hh_t, w_hc_t = weight_hh.t().contiguous(), weight_hc.t().contiguous()
        # two buffers, so that each weight gradient is one matmul on a contiguous [B*T, .] matrix
        # (oneDNN is pathologically slow on a column slice of D: 22 s instead of 20 ms, measured)
        D_RU = _empty(B, T, 2 * H, like=OUT)                # dL/d pre_{r,u}
        D_C = _empty(B, T, H, like=OUT)                     # dL/d pre_c
        dh = d_out[:, -1] + d_hT
        for t in range(T - 1, -1, -1):
            ru, cand = gates[2 * t], gates[2 * t + 1]
            r, u = ru[:, :H], ru[:, H:]
            h_prev = OUT[:, t - 1] if t > 0 else h0
            D_ru, D_c = D_RU[:, t], D_C[:, t]
            D_r, D_u = D_ru[:, :H], D_ru[:, H:]
            torch.sub(h_prev, cand, out=D_u)
            D_u.mul_(torch.addcmul(u, u, u, value=-1)).mul_(dh)   # dh (h - c) u (1 - u)
            torch.addcmul(dh, dh, u, value=-1, out=D_c)
            D_c.addcmul_(D_c * cand, cand, value=-1)        # dh (1 - u) (1 - c^2)
            drh = linear(D_c, w_hc_t)                       # dL/d(r * h_{t-1})
            torch.mul(drh, h_prev, out=D_r)
            D_r.mul_(torch.addcmul(r, r, r, value=-1))      # * r (1 - r)
            dh_prev = linear_add(D_ru, d_out[:, t - 1], w_hh_t) if t > 0 else linear(D_ru, w_hh_t)
            dh_prev.addcmul_(dh, u)
            dh_prev.addcmul_(drh, r)
            dh = dh_prev
        dh0 = dh if ctx.needs_input_grad[5] else None
        D_RU2, D_C2 = D_RU.view(B * T, 2 * H), D_C.view(B * T, H)
        dw_hh = weight_grad(D_RU2, _shift(h0, OUT).view(B * T, H)) if ctx.needs_input_grad[3] else None
        dw_hc = weight_grad(D_C2, RH.view(B * T, H)) if ctx.needs_input_grad[4] else None
        dx = dw_ih = db = None
        x2 = x.view(B * T, -1)
        if ctx.needs_input_grad[0]:
            w_ru, w_c = weight_ih[:2 * H], weight_ih[2 * H:]
            dx = linear_add(D_C2, linear(D_RU2, w_ru.t().contiguous()), w_c.t().contiguous()).view(B, T, -1)
        if ctx.needs_input_grad[1]:
            dw_ih = torch.cat([weight_grad(D_RU2, x2), weight_grad(D_C2, x2)])
        if ctx.needs_input_grad[2]:
            db = torch.cat([D_RU2.sum(0), D_C2.sum(0)])
        return dx, dw_ih, db, dw_hh, dw_hc, dh0
