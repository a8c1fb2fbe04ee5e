"""Copy memory (Arjovsky et al. 2016; setting of Bai, Kolter & Koltun 2018, §4.2). gap = T.

Input, length T+20:  10 symbols drawn from 1..8, then T-1 blanks (0), then 11 delimiters (9).
Target, length T+20: T+10 blanks, then the same 10 symbols.
The first delimiter says "recall now"; the 10 symbols must be carried across T steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gapbench.tasks.readout import Tagger
from gapbench.tasks.base import SyntheticTask

N_RECALL = 10        # symbols to remember
N_CATEGORIES = 8     # symbols are 1..8
BLANK, DELIMITER = 0, 9
VOCAB = 10


def copy_memory_batch(batch: int, T: int, generator: torch.Generator, device=None):
    """(x, y), both long [batch, T+20], exactly as in the definition above."""
    device = device or generator.device
    symbols = torch.randint(1, N_CATEGORIES + 1, (batch, N_RECALL), generator=generator, device=device)
    x = torch.full((batch, T + 2 * N_RECALL), BLANK, dtype=torch.long, device=device)
    x[:, :N_RECALL] = symbols
    x[:, T + N_RECALL - 1:] = DELIMITER
    y = torch.full_like(x, BLANK)
    y[:, -N_RECALL:] = symbols
    return x, y


class CopyMemory(SyntheticTask):
    name = "copy"
    score_name = "recall_acc"
    higher_is_better = True
    gap_meaning = "T, the number of steps between the last symbol shown and the first recall position"
    title = "Copy memory"
    score_title = "recall accuracy"
    solved_text = "recall accuracy ≥ 0.99"

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.99

    @classmethod
    def steps_for_gap(cls, gap, **opts):
        return gap + 2 * N_RECALL

    @property
    def baseline(self):
        return 1.0 / N_CATEGORIES  # recall accuracy of guessing

    @property
    def baseline_loss(self):
        """Cross-entropy of the memoryless strategy: blanks right, 1/8 on each recalled symbol."""
        return N_RECALL * math.log(N_CATEGORIES) / self.seq_len

    def build_model(self, make_cell, hidden_size):
        return Tagger(make_cell(VOCAB), hidden_size, VOCAB)

    def generate(self, batch, generator):
        return copy_memory_batch(batch, self.gap, generator)

    def _forward(self, model, batch):
        x, y = batch
        logits = model(F.one_hot(x, VOCAB).to(torch.get_default_dtype()))
        return logits, y

    def training_loss(self, model, batch):
        logits, y = self._forward(model, batch)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        recall = (logits[:, -N_RECALL:].argmax(-1) == y[:, -N_RECALL:]).float().mean()
        return loss, {"recall_acc": recall.detach()}

    def eval_step(self, model, batch):
        logits, y = self._forward(model, batch)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        hits = (logits[:, -N_RECALL:].argmax(-1) == y[:, -N_RECALL:]).sum()
        return {"ce_sum": ce.item(), "positions": y.numel(), "hits": hits.item(), "recalled": y[:, -N_RECALL:].numel()}

    def eval_metrics(self, outputs):
        ce = sum(o["ce_sum"] for o in outputs) / sum(o["positions"] for o in outputs)
        recall = sum(o["hits"] for o in outputs) / sum(o["recalled"] for o in outputs)
        return {"loss": ce, "recall_acc": recall, "baseline_loss": self.baseline_loss}
