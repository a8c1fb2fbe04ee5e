"""How much gradient reaches back through time, and what the gates do.

At a few fixed training steps the probe reruns that step's batch with the cell unrolled through
its plain `step` function, keeps every hidden state h_t, and records ||dL/dh_t|| (L2 over the
hidden units, mean over the batch) for every t: the vanishing-gradient curve. Gated cells also
report each gate's mean and the fraction of activations saturated above 0.95 or below 0.05.
A model without `step` (the non-recurrent comparators: tcn, transformer) has no h_t that carries
the past; for it the probe records ||dL/dx_t||, the gradient reaching the model's input at step t,
and labels the curve so (`wrt` = "x_t" instead of "h_t").
The probe uses autograd.grad, so the parameters' gradients and the training run are untouched.
"""
from __future__ import annotations

import contextlib
from typing import Any

import lightning.pytorch as L
import torch
from torch import nn

from gapbench.cells.base import SequenceModel

SATURATED = 0.95
WRT_TEXT = {"h_t": "||dL/dh_t||", "x_t": "||dL/dx_t|| (input gradient; the model has no recurrent state)"}


def find_cell(model: nn.Module) -> nn.Module:
    """The first gapbench model inside `model` (the encoder of an encoder-decoder)."""
    for module in model.modules():
        if isinstance(module, SequenceModel):
            return module
    raise LookupError("no gapbench cell in this model")


def wrt(cell: nn.Module) -> str:
    """What the probe differentiates with respect to for this model: "h_t" or "x_t"."""
    return "h_t" if getattr(cell, "has_step", False) else "x_t"


@contextlib.contextmanager
def unrolled(cell: nn.Module, hidden: list[torch.Tensor], gates: list[dict[str, torch.Tensor]]):
    """Within the block, cell(x) runs step by step, appending each h_t (and its gates) to the lists.
    Only the first call is recorded (the encoder pass, for a model that calls the cell again)."""
    def forward(x, state=None):
        record = not hidden
        state = cell.initial_state(x.shape[0], device=x.device, dtype=x.dtype) if state is None else state
        outs = []
        for x_t in x.unbind(1):
            g: dict[str, torch.Tensor] = {}
            h, state = cell.step(x_t, state, gates=g)
            outs.append(h)
            if record:
                hidden.append(h)
                gates.append(g)
        return torch.stack(outs, 1), state

    cell.forward = forward  # instance attribute shadows the class method
    try:
        yield
    finally:
        del cell.forward


@contextlib.contextmanager
def input_recorded(cell: nn.Module, inputs: list[torch.Tensor]):
    """Within the block, the first call of cell(x) records its input steps x_t (made differentiable)."""
    def forward(x, state=None):
        if not inputs:
            steps = [x_t if x_t.requires_grad else x_t.detach().requires_grad_() for x_t in x.unbind(1)]
            inputs.extend(steps)
            x = torch.stack(steps, 1)
        return type(cell).forward(cell, x, state)

    cell.forward = forward
    try:
        yield
    finally:
        del cell.forward


def measure(task, model: nn.Module, batch: Any) -> tuple[list[float], dict[str, float]]:
    """(grad_norm per time step, gate statistics) for one batch."""
    cell = find_cell(model)
    hidden: list[torch.Tensor] = []
    gates: list[dict[str, torch.Tensor]] = []
    was_training = model.training
    model.eval()  # no dropout: the probe must not consume the training run's random numbers
    try:
        record = unrolled(cell, hidden, gates) if wrt(cell) == "h_t" else input_recorded(cell, hidden)
        with torch.enable_grad(), record:
            loss, _ = task.training_loss(model, batch)
            grads = torch.autograd.grad(loss, hidden, allow_unused=True)
    finally:
        model.train(was_training)
    norms = [0.0 if g is None else g.norm(dim=-1).mean().item() for g in grads]
    stats: dict[str, float] = {}
    for name in gates[0] if gates else []:
        a = torch.stack([g[name] for g in gates]).detach()
        stats[f"{name}_mean"] = a.mean().item()
        stats[f"{name}_sat_high"] = (a > SATURATED).float().mean().item()
        stats[f"{name}_sat_low"] = (a < 1 - SATURATED).float().mean().item()
    return norms, stats


class GradientProbe(L.Callback):
    def __init__(self, at_steps: list[int], meta: dict[str, Any]):
        self.at_steps, self.meta = sorted(set(at_steps)), meta
        self.records: list[dict[str, Any]] = []
        self.last_gates: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step in self.at_steps:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        # a job stopped early (max_time) still gets its end-of-training curve
        if self.at_steps and max(self.at_steps) > trainer.global_step - 1 and trainer.global_step > 0:
            self._record(trainer, pl_module)

    def _record(self, trainer, pl_module):
        step = trainer.global_step
        if any(r["train_step"] == step for r in self.records):
            return
        task = pl_module.task
        norms, gates = measure(task, pl_module.model, task.train_batch(step, pl_module.device))
        of = wrt(find_cell(pl_module.model))
        self.records += [{**self.meta, "train_step": step, "t": t, "grad_norm": g, "wrt": of}
                         for t, g in enumerate(norms)]
        self.last_gates = gates
        for lg in trainer.loggers:  # directly: Lightning forbids self.log in on_train_end
            lg.log_metrics({f"gates/{k}": v for k, v in gates.items()}, step=step)
            if type(lg).__name__ == "WandbLogger":
                import wandb
                # keyed by the fraction of training, not the step, so panels line up across runs and budgets
                pct = round(100 * step / max(1, (trainer.max_steps or step + 1) - 1))
                table = wandb.Table(data=[[t, g] for t, g in enumerate(norms)], columns=["t", "grad_norm"])
                lg.experiment.log({f"grad_norm_vs_t/at_{pct:03d}pct": wandb.plot.line(
                    table, "t", "grad_norm", title=f"{WRT_TEXT[of]} at {pct}% of training (step {step})")}, commit=False)

    def state_dict(self):
        return {"records": self.records, "last_gates": self.last_gates}

    def load_state_dict(self, state):
        # a continued job starts from another job's checkpoint: of that job's curves keep those at this
        # job's own probe steps (step 0: the same weights and batch), under this job's id
        self.records = [{**r, **self.meta} for r in state["records"]
                        if r.get("run_id") == self.meta.get("run_id") or r["train_step"] in self.at_steps]
        self.last_gates = state["last_gates"]
