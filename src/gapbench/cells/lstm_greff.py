"""The LSTM variants of Greff, Srivastava, Koutník, Steunebrink & Schmidhuber 2017 ("LSTM: A Search
Space Odyssey", IEEE TNNLS 28(10), §II and §IV), each registered under its own name
(lstm_greff_v, lstm_greff_nig, ...) so that runs, tables and legends keep them apart:

    python run.py -m 'cell=glob(lstm_greff_*)' gap=10,100     # all nine in one sweep

Vanilla (V), with y the cell output and peepholes p (diagonal):
    z  = g(W_z x_t + R_z y_{t-1} + b_z)                       block input, g = tanh
    i  = sigmoid(W_i x_t + R_i y_{t-1} + p_i * c_{t-1} + b_i)  input gate
    f  = sigmoid(W_f x_t + R_f y_{t-1} + p_f * c_{t-1} + b_f)  forget gate
    c  = z * i + c_{t-1} * f
    o  = sigmoid(W_o x_t + R_o y_{t-1} + p_o * c_t + b_o)      output gate
    y  = h(c) * o                                              h = tanh

Each variant changes one thing:
    NIG  no input gate (i = 1)           NFG  no forget gate (f = 1)      NOG  no output gate (o = 1)
    NIAF no input activation (g = id)    NOAF no output activation (h = id)
    NP   no peepholes                    CIFG coupled input and forget gate, f = 1 - i
    FGR  full gate recurrence: i, f, o also receive R_{*i} i_{t-1} + R_{*f} f_{t-1} + R_{*o} o_{t-1}
         (nine more recurrent matrices, one [3H, 3H] block here; the state carries (y, c, [i, f, o]))
A gate that is absent takes its peephole with it (NIG has no p_i, NOG no p_o, NFG and CIFG no p_f).

Which existing cells coincide (same function, tested with copied weights): V = lstm_peephole; NP =
lstm (nn.LSTM, whose two bias vectors sum to b); CIFG = lstm_cifg *with peepholes* (lstm_cifg has
none, so it is CIFG+NP, not Greff's CIFG). The others exist only here.

Forward/backward: the hand-written BPTT of gapbench.cells._bptt (impl="bptt", one input matmul, one
recurrent matmul per step, elementwise chain rule, weight gradients in one matmul each), or
impl="autograd", the loop over `recur` (the equations above). Gate blocks are stored in the order
[i, f, z, o] (absent ones left out); `forget_bias` is b_f at initialisation (CIFG: b_i = -forget_bias,
so that f = 1 - i starts at sigmoid(forget_bias); NFG: unused). Initialisation otherwise uniform in
+-1/sqrt(H), as the other hand-written cells (Greff et al. sampled theirs per trial; not a fixed recipe).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from gapbench.cells._bptt import _empty, _input_grads, _project, _shift, linear, linear_add, tanh_into, weight_grad
from gapbench.cells._loop import Impl, LoopCell


@dataclasses.dataclass(frozen=True)
class Spec:
    """Which parts of the vanilla LSTM a variant keeps."""
    input_gate: bool = True
    forget_gate: bool = True       # a gate of its own (CIFG derives f from i)
    output_gate: bool = True
    input_act: bool = True         # z = tanh(.) (else linear)
    output_act: bool = True        # y = tanh(c) * o (else c * o)
    peepholes: bool = True
    coupled: bool = False          # CIFG: f = 1 - i
    full_recurrence: bool = False  # FGR

    @property
    def gates(self) -> list[str]:
        """Gate blocks with parameters, in storage order (z sits between f and o)."""
        return [n for n, on in (("i", self.input_gate), ("f", self.forget_gate), ("o", self.output_gate)) if on]

    @property
    def blocks(self) -> list[str]:
        return [*(g for g in self.gates if g != "o"), "z", *(["o"] if self.output_gate else [])]

    @property
    def peeps(self) -> list[str]:
        return self.gates if self.peepholes else []


VARIANTS = {
    "V": Spec(), "NIG": Spec(input_gate=False), "NFG": Spec(forget_gate=False), "NOG": Spec(output_gate=False),
    "NIAF": Spec(input_act=False), "NOAF": Spec(output_act=False), "NP": Spec(peepholes=False),
    "CIFG": Spec(forget_gate=False, coupled=True), "FGR": Spec(full_recurrence=True),
}


class GreffLSTMFunction(torch.autograd.Function):
    """Forward and hand-written backward through time of every variant; `spec` selects the parts."""

    @staticmethod
    def forward(ctx, spec, x, weight_ih, bias, weight_hh, peephole, weight_gg, h0, c0, a0):
        x = x.contiguous()
        B, T, _ = x.shape
        H = h0.shape[-1]
        blk = {n: k for k, n in enumerate(spec.blocks)}
        pk = {n: k for k, n in enumerate(spec.peeps)}
        n_sig = blk["z"] + (1 if spec.input_act else 0)    # blocks before o that go through sigmoid (z: 2 sig(2x) - 1)
        XP = _project(x, weight_ih, bias)
        C, OUT = _empty(B, T, H, like=x), _empty(B, T, H, like=x)
        TC = _empty(B, T, H, like=x) if spec.output_act else C
        gates, a = [], a0
        h, c = h0, c0
        for xp_t, c_t, tc_t, h_t in zip(XP.unbind(1), C.unbind(1), TC.unbind(1), OUT.unbind(1)):
            z = linear_add(h, xp_t, weight_hh)
            if spec.full_recurrence:                         # gates also see [i, f, o]_{t-1}
                ga = linear(a, weight_gg)
                z[:, :2 * H].add_(ga[:, :2 * H])
                z[:, 3 * H:].add_(ga[:, 2 * H:])
            zb = z.view(B, len(blk), H).unbind(1)
            for n in ("i", "f"):
                if n in pk:
                    zb[blk[n]].addcmul_(peephole[pk[n]], c)  # i, f peek at c_{t-1}
            g = zb[blk["z"]]
            if spec.input_act:
                g.mul_(2)
            z[:, :n_sig * H].sigmoid_()
            if spec.input_act:
                g.mul_(2).sub_(1)                            # tanh(pre_z) = 2 sigmoid(2 pre_z) - 1
            i = zb[blk["i"]] if spec.input_gate else None
            if spec.coupled:
                torch.lerp(c, g, i, out=c_t)                 # (1 - i) c + i z
            else:
                if spec.forget_gate:
                    torch.mul(zb[blk["f"]], c, out=c_t)
                else:
                    c_t.copy_(c)
                if spec.input_gate:
                    c_t.addcmul_(i, g)
                else:
                    c_t.add_(g)
            if spec.output_gate:
                o = zb[blk["o"]]
                if "o" in pk:
                    o.addcmul_(peephole[pk["o"]], c_t)       # o peeks at c_t
                o.sigmoid_()
            if spec.output_act:
                tanh_into(c_t, tc_t)
            if spec.output_gate:
                torch.mul(o, tc_t, out=h_t)
            else:
                h_t.copy_(tc_t)
            gates.append(z)
            if spec.full_recurrence:
                a = torch.cat([z[:, :2 * H], z[:, 3 * H:]], 1)
            h, c = h_t, c_t
        ctx.spec = spec
        ctx.save_for_backward(x, weight_ih, weight_hh, peephole, weight_gg, h0, c0, a0, C, TC, OUT, *gates)
        a_T = a if spec.full_recurrence else a0
        return OUT, OUT[:, -1].clone(), C[:, -1].clone(), a_T.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hT, d_cT, d_aT):
        spec = ctx.spec
        x, weight_ih, weight_hh, peephole, weight_gg, h0, c0, a0, C, TC, OUT, *gates = ctx.saved_tensors
        B, T, H = C.shape
        blk = {n: k for k, n in enumerate(spec.blocks)}
        pk = {n: k for k, n in enumerate(spec.peeps)}
        G = len(blk) * H
        w_hh_t = weight_hh.t().contiguous()
        w_gg_t = weight_gg.t().contiguous() if spec.full_recurrence else None
        D = _empty(B, T, G, like=C)
        dh = d_out[:, -1] + d_hT
        dc = d_cT.clone()
        da = d_aT.clone() if spec.full_recurrence else None   # dL/d[i, f, o]_t from step t + 1
        for t in range(T - 1, -1, -1):
            zb = gates[t].view(B, len(blk), H).unbind(1)
            Db = D[:, t].view(B, len(blk), H).unbind(1)
            tc, c_prev = TC[:, t], (C[:, t - 1] if t > 0 else c0)
            g = zb[blk["z"]]
            if spec.output_gate:
                o, D_o = zb[blk["o"]], Db[blk["o"]]
                torch.mul(dh, tc, out=D_o)
                if da is not None:
                    D_o.add_(da[:, 2 * H:])
                D_o.mul_(torch.addcmul(o, o, o, value=-1))   # * o (1 - o)
                b = dh * o
            else:
                b = dh
            if spec.output_act:
                dc.add_(b)
                b = b * tc
                dc.addcmul_(b, tc, value=-1)                 # dc += b (1 - tc^2)
            else:
                dc.add_(b)
            if "o" in pk:
                dc.addcmul_(D_o, peephole[pk["o"]])
            if spec.input_gate:
                i, D_i = zb[blk["i"]], Db[blk["i"]]
                if spec.coupled:
                    torch.sub(g, c_prev, out=D_i)
                    D_i.mul_(dc)
                else:
                    torch.mul(dc, g, out=D_i)
                if da is not None:
                    D_i.add_(da[:, :H])
                D_i.mul_(torch.addcmul(i, i, i, value=-1))   # * i (1 - i)
            if spec.forget_gate:
                f, D_f = zb[blk["f"]], Db[blk["f"]]
                torch.mul(dc, c_prev, out=D_f)
                if da is not None:
                    D_f.add_(da[:, H:2 * H])
                D_f.mul_(torch.addcmul(f, f, f, value=-1))   # * f (1 - f)
            D_g = Db[blk["z"]]
            if spec.input_gate:
                torch.mul(dc, i, out=D_g)
            else:
                D_g.copy_(dc)
            if spec.input_act:
                D_g.addcmul_(D_g * g, g, value=-1)          # * (1 - z^2)
            if spec.coupled:
                dc.addcmul_(dc, i, value=-1)                 # dL/dc_{t-1} = dc (1 - i)
            elif spec.forget_gate:
                dc.mul_(f)
            for n in ("i", "f"):
                if n in pk:
                    dc.addcmul_(Db[blk[n]], peephole[pk[n]])
            if spec.full_recurrence:
                da = linear(torch.cat([D[:, t, :2 * H], D[:, t, 3 * H:]], 1), w_gg_t)
            if t > 0:
                dh = linear_add(D[:, t], d_out[:, t - 1], w_hh_t)
        needs = ctx.needs_input_grad  # (spec, x, weight_ih, bias, weight_hh, peephole, weight_gg, h0, c0, a0)
        D2 = D.view(B * T, G)
        dx, dw_ih, db = _input_grads(_Shifted(needs[1:]), D, x, weight_ih)
        dw_hh = weight_grad(D2, _shift(h0, OUT).view(B * T, H)) if needs[4] else None
        dp = None
        if needs[5] and spec.peeps:
            cprev = _shift(c0, C)
            src = {"i": cprev, "f": cprev, "o": C}
            dp = torch.stack([(D[..., blk[n] * H:(blk[n] + 1) * H] * src[n]).sum((0, 1)) for n in spec.peeps])
        dgg = None
        if spec.full_recurrence and needs[6]:
            A = torch.stack([torch.cat([z[:, :2 * H], z[:, 3 * H:]], 1) for z in gates], 1)   # [i, f, o]_t
            A_prev = _shift(a0, A).reshape(B * T, 3 * H)
            D_a = torch.cat([D[..., :2 * H], D[..., 3 * H:]], -1).reshape(B * T, 3 * H)
            dgg = weight_grad(D_a, A_prev)
        dh0 = linear(D[:, 0], w_hh_t) if needs[7] else None
        dc0 = dc if needs[8] else None
        da0 = da if (spec.full_recurrence and needs[9]) else None
        return None, dx, dw_ih, db, dw_hh, dp, dgg, dh0, dc0, da0


class _Shifted:
    """needs_input_grad seen from x onwards, for _bptt._input_grads (which expects x, w_ih, bias first)."""

    def __init__(self, needs):
        self.needs_input_grad = needs


class GreffLSTM(LoopCell):
    """One of Greff et al.'s variants; the registered names are the subclasses below."""

    variant: ClassVar[str]
    spec: ClassVar[Spec]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.spec = VARIANTS[cls.variant]
        cls.n_input_blocks = len(cls.spec.blocks)
        cls.matmul_blocks = (cls.n_input_blocks, cls.n_input_blocks + (9 if cls.spec.full_recurrence else 0))
        cls.title = f"LSTM {cls.variant} (Greff et al.)"

    def __init__(self, input_size, hidden_size, forget_bias: float = 1.0, impl: Impl = "bptt"):
        super().__init__(input_size, hidden_size, impl)
        spec, H = self.spec, hidden_size
        self.blk = {n: k for k, n in enumerate(spec.blocks)}
        self.weight_hh = nn.Parameter(torch.empty(len(spec.blocks) * H, H))
        self.peephole = nn.Parameter(torch.empty(len(spec.peeps), H)) if spec.peeps else None  # rows: spec.peeps
        self.weight_gg = nn.Parameter(torch.empty(3 * H, 3 * H)) if spec.full_recurrence else None  # [i,f,o]_{t-1} -> i,f,o
        self.reset_uniform()
        with torch.no_grad():
            if spec.forget_gate:
                self.bias[self.blk["f"] * H:(self.blk["f"] + 1) * H].fill_(forget_bias)
            elif spec.coupled:
                self.bias[:H].fill_(-forget_bias)

    def initial_state(self, batch, device=None, dtype=None):
        h = super().initial_state(batch, device, dtype)
        if self.spec.full_recurrence:
            return h, torch.zeros_like(h), h.new_zeros(batch, 3 * self.hidden_size)
        return h, torch.zeros_like(h)

    def _peep(self, name):
        return self.peephole[self.spec.peeps.index(name)] if name in self.spec.peeps else 0.0

    @property
    def cuda_pointwise(self) -> bool:
        return not self.spec.full_recurrence  # FGR's gates also go through a second matmul (recur)

    def recur(self, x_proj, state, gates=None):
        z = x_proj + state[0] @ self.weight_hh.T
        if self.spec.full_recurrence:  # [i, f, o]_{t-1} reach the i, f, o blocks; z's block gets none
            H = self.hidden_size
            r = state[2] @ self.weight_gg.T
            z = z + torch.cat([r[:, :2 * H], torch.zeros_like(r[:, :H]), r[:, 2 * H:]], -1)
        return self.pointwise(z, state, gates)

    def pointwise(self, z, state, gates=None):
        spec = self.spec
        _, c, *_ = state
        pre = dict(zip(spec.blocks, z.chunk(len(spec.blocks), -1)))
        z = torch.tanh(pre["z"]) if spec.input_act else pre["z"]
        i = torch.sigmoid(pre["i"] + self._peep("i") * c) if spec.input_gate else None
        if spec.coupled:
            f = 1 - i
        else:
            f = torch.sigmoid(pre["f"] + self._peep("f") * c) if spec.forget_gate else None
        c = (c if f is None else f * c) + (z if i is None else i * z)
        o = torch.sigmoid(pre["o"] + self._peep("o") * c) if spec.output_gate else None
        y = torch.tanh(c) if spec.output_act else c
        y = y if o is None else o * y
        if gates is not None:
            gates.update({k: v for k, v in (("input", i), ("forget", f), ("output", o)) if v is not None})
        if spec.full_recurrence:
            return y, (y, c, torch.cat([i, f, o], -1))
        return y, (y, c)

    def fast_forward(self, x, state):
        h, c, *a = state
        none = x.new_zeros(0)
        out, h, c, a_T = GreffLSTMFunction.apply(
            self.spec, x, self.weight_ih, self.bias, self.weight_hh,
            self.peephole if self.peephole is not None else none,
            self.weight_gg if self.weight_gg is not None else none, h, c, a[0] if a else none)
        return out, ((h, c, a_T) if self.spec.full_recurrence else (h, c))


class GreffV(GreffLSTM):
    variant = "V"


class GreffNIG(GreffLSTM):
    variant = "NIG"


class GreffNFG(GreffLSTM):
    variant = "NFG"


class GreffNOG(GreffLSTM):
    variant = "NOG"


class GreffNIAF(GreffLSTM):
    variant = "NIAF"


class GreffNOAF(GreffLSTM):
    variant = "NOAF"


class GreffNP(GreffLSTM):
    variant = "NP"


class GreffCIFG(GreffLSTM):
    variant = "CIFG"


class GreffFGR(GreffLSTM):
    variant = "FGR"
