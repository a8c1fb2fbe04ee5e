"""Selective copying (Gu & Dao 2023, "Mamba", §3.1 and App. E.1; the "variable" copying task of the S4
code base, Gu et al. 2022). gap = the span the data tokens are scattered over.

Vocabulary of `vocab_size` tokens (A): 0 is the noise/blank token, A-1 the recall marker, and the data
tokens are 1..A-2. Input, length gap + K: a span of `gap` positions holding K = `n_tokens` data tokens
(drawn uniformly, repeats allowed) at K distinct positions chosen uniformly at random, noise everywhere
else; then K markers. Target: the K data tokens in the order they appear, one per marker position.
A token at span position p is recalled at position gap + j (j = its rank), so the distance from a
token to its recall varies between 1 and gap + K - 1; unlike copy memory, the model must find the
tokens among the noise (their positions change with every sequence) and keep them in order.

Worked example (A=6: data tokens 1..4, noise 0, marker 5; K=3, gap=8), as `selective_copy_batch` makes it:

    x = 0 3 0 0 1 0 4 0 | 5 5 5        positions 1, 4, 6 of the span were drawn
    y =                   3 1 4        targets at the 3 marker positions (the model's last 3 outputs)

Defaults follow the Mamba paper's setting: A = 16 tokens including the noise token, K = 16 tokens to
memorise (their sequence length 4096 is gap ≈ 4096 here); the S4 code base draws the data tokens from
1..A-2 and the positions as a random K-subset of the span, as here. Score: recall accuracy over the K
recalled tokens; baseline: guessing among the A-2 data tokens, 1/(A-2) = 1/14.
"""
from __future__ import annotations

import functools

import math

import torch
import torch.nn.functional as F

from gapbench.tasks.readout import Tagger
from gapbench.tasks.base import SyntheticTask, TaskError, check_int

NOISE = 0


def selective_copy_batch(batch: int, gap: int, n_tokens: int, vocab_size: int, generator: torch.Generator,
                         device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x long [batch, gap + n_tokens], y long [batch, n_tokens]), as in the module docstring."""
    device = device or generator.device
    marker = vocab_size - 1
    tokens = torch.randint(1, marker, (batch, n_tokens), generator=generator, device=device)
    # a uniformly random K-subset of the span, in increasing order
    positions = torch.rand(batch, gap, generator=generator, device=device).topk(n_tokens, dim=1).indices.sort(1).values
    x = torch.full((batch, gap + n_tokens), NOISE, dtype=torch.long, device=device)
    x.scatter_(1, positions, tokens)
    x[:, gap:] = marker
    return x, tokens


_check_int = functools.partial(check_int, "selective_copy")


class SelectiveCopy(SyntheticTask):
    name = "selective_copy"
    score_name = "recall_acc"
    higher_is_better = True
    gap_meaning = ("span length: the n_tokens data tokens lie at random positions among `gap` noise steps, "
                   "then n_tokens recall markers")
    title = "Selective copying"
    score_title = "recall accuracy"
    solved_text = "recall accuracy ≥ 0.99"

    def __init__(self, gap, seed, batch_size, n_tokens=16, vocab_size=16, val_size=512, test_size=2048,
                 eval_batch_size=512):
        type(self).check_options(gap, n_tokens=n_tokens, vocab_size=vocab_size)
        super().__init__(gap, seed, batch_size, val_size, test_size, eval_batch_size)
        self.n_tokens, self.vocab_size = n_tokens, vocab_size
        self.opts = {"n_tokens": n_tokens, "vocab_size": vocab_size}

    @classmethod
    def check_options(cls, gap, n_tokens=16, vocab_size=16, **_):
        _check_int("n_tokens", n_tokens, 1)
        _check_int("vocab_size", vocab_size, 3)
        if isinstance(gap, int) and not isinstance(gap, bool) and gap < n_tokens:
            raise TaskError(f"gap={gap} is invalid for task selective_copy: the span must hold the "
                            f"n_tokens={n_tokens} data tokens; use gap >= {n_tokens}")

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.99

    @classmethod
    def steps_for_gap(cls, gap, n_tokens=16, **opts):
        return gap + n_tokens

    @property
    def baseline(self):
        return 1.0 / (self.vocab_size - 2)  # recall accuracy of guessing among the data tokens

    @property
    def baseline_loss(self):
        return math.log(self.vocab_size - 2)

    def build_model(self, make_cell, hidden_size):
        return Tagger(make_cell(self.vocab_size), hidden_size, self.vocab_size)

    def generate(self, batch, generator):
        return selective_copy_batch(batch, self.gap, self.n_tokens, self.vocab_size, generator)

    def _recall_logits(self, model, x):
        logits = model(F.one_hot(x, self.vocab_size).to(torch.get_default_dtype()))
        return logits[:, -self.n_tokens:]

    def training_loss(self, model, batch):
        x, y = batch
        logits = self._recall_logits(model, x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return loss, {"recall_acc": (logits.argmax(-1) == y).float().mean().detach()}

    def eval_step(self, model, batch):
        x, y = batch
        logits = self._recall_logits(model, x)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        return {"ce_sum": ce.item(), "hits": (logits.argmax(-1) == y).sum().item(),
                "seq_hits": (logits.argmax(-1) == y).all(1).sum().item(), "n": y.numel(), "seqs": len(y)}

    def eval_metrics(self, outputs):
        n = sum(o["n"] for o in outputs)
        return {"loss": sum(o["ce_sum"] for o in outputs) / n,
                "recall_acc": sum(o["hits"] for o in outputs) / n,
                "seq_acc": sum(o["seq_hits"] for o in outputs) / sum(o["seqs"] for o in outputs),
                "baseline_loss": self.baseline_loss}
