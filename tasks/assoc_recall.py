"""Multi-query associative recall, MQAR (Arora, Eyuboglu et al. 2023, "Zoology: Measuring and Improving
Recall in Efficient Language Models", §3; generator `multiquery_ar` of HazyResearch/zoology).
gap = the distance from a key-value pair to the query of its key.

Vocabulary of V = `vocab_size` tokens split as in Zoology: keys are 1..V/2-1, values V/2..V-1. A
sequence starts with D = `num_kv_pairs` pairs k_1 v_1 ... k_D v_D (D distinct keys, D distinct values,
uniformly drawn); later each key appears once more as a query, and the model must output, at the query
position, the value bound to that key. Every other position holds a uniformly random token of the
whole vocabulary (Zoology's `random_non_queries`), so a query cannot be recognised by position alone
from the tokens around it.

`distance: zoology` (default; Zoology's `multiquery_ar`): after the 2D pair tokens comes a query
region of `gap` tokens; the D queries take D distinct even offsets 2s (s = 0..gap/2-1) of it, drawn
one after another without replacement with P(s) ∝ (s+1)^(a-1), a = `power_a` (Zoology: 0.01, so
short offsets dominate), and the i-th key gets the i-th draw, as in Zoology (`np.random.choice(...,
replace=False, p=p)`, then key i at offset 2 gaps[i]). So earlier keys tend to get earlier slots;
pair-to-query distances vary between 2 and 2D + gap - 2 (at gap=64, D=8: P(distance <= 4) = 1.7%, a
random key-to-slot pairing would give 4.2%). Sequence length 2D + gap. gap = the query region's length.

`distance: exact` (not Zoology's; a controlled variant): the query of pair i sits exactly `gap`
positions after its key (position 2i + gap; queries in pair order), so the cause-effect distance is the
same for every query. The sequence has gap + 2D - 1 tokens; gap >= 2D so that queries follow the pairs.
With one fixed distance the value is always the token gap-1 steps before its query: a delay line solves
it without binding keys to values, so it measures how far a model carries a token, not recall.

Worked example (V=12: keys 1..5, values 6..11; D=2; distance=exact, gap=5; `.` = a random filler token):

    position  0  1  2  3  4  5  6  7
    x         4  9  2  7  .  4  .  2       pairs (4 -> 9), (2 -> 7); key 4 again at 0+5, key 2 at 2+5
    y                        9     7       targets at the query positions 5 and 7

Defaults: V = 8192 and D = 8 (Zoology's vocabulary and MQARConfig default; their Figure 2 varies D
from 4 to 64 over sequences of 64 to 512 tokens). Score: recall accuracy at the query positions, over
the whole vocabulary; baseline: 1 / (number of values) = 2/V, guessing among the values.
"""
from __future__ import annotations

import functools

import math

import torch
import torch.nn.functional as F
from torch import nn

from gapbench.tasks.base import SyntheticTask, TaskError, check_int, seeded_generator

DISTANCES = ("zoology", "exact")


def query_positions(batch: int, gap: int, pairs: int, distance: str, power_a: float,
                    generator: torch.Generator, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions long [batch, D] of the queries, pair index long [batch, D] each one asks for)."""
    device = device or generator.device
    if distance == "exact":
        pair = torch.arange(pairs, device=device).expand(batch, pairs)
        return 2 * pair + gap, pair
    slots = gap // 2
    p = power_a * torch.arange(1, slots + 1, device=device, dtype=torch.float64) ** (power_a - 1)
    # torch.multinomial without replacement returns the slots in the order drawn: key i gets draw i
    slot = torch.multinomial(p.expand(batch, slots), pairs, replacement=False, generator=generator)
    return zoology_positions(slot, pairs)


def zoology_positions(slot: torch.Tensor, pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoology's placement of the queries given the slot draws [batch, D]: key i at 2D + 2 slot[:, i]."""
    return 2 * pairs + 2 * slot, torch.arange(pairs, device=slot.device).expand_as(slot)


def assoc_recall_batch(batch: int, gap: int, pairs: int, vocab_size: int, generator: torch.Generator,
                       distance: str = "zoology", power_a: float = 0.01, device=None):
    """(x long [batch, L], positions long [batch, D], y long [batch, D]): the sequences, where the
    queries are, and the value each query must return; L = 2D + gap (zoology) or gap + 2D - 1 (exact)."""
    device = device or generator.device
    half = vocab_size // 2
    keys = torch.rand(batch, half - 1, generator=generator, device=device).topk(pairs, 1).indices + 1
    values = torch.rand(batch, vocab_size - half, generator=generator, device=device).topk(pairs, 1).indices + half
    length = gap + 2 * pairs - 1 if distance == "exact" else 2 * pairs + gap
    x = torch.randint(0, vocab_size, (batch, length), generator=generator, device=device)
    x[:, 0:2 * pairs:2], x[:, 1:2 * pairs:2] = keys, values
    positions, pair = query_positions(batch, gap, pairs, distance, power_a, generator, device)
    x.scatter_(1, positions, keys.gather(1, pair))
    return x, positions, values.gather(1, pair)


class TokenTagger(nn.Module):
    """Embedding -> cell -> linear read-out at the requested positions."""

    def __init__(self, cell: nn.Module, vocab_size: int, emb_size: int, hidden_size: int):
        super().__init__()
        self.embed, self.cell, self.readout = nn.Embedding(vocab_size, emb_size), cell, nn.Linear(hidden_size, vocab_size)

    def forward(self, x, positions):
        h, _ = self.cell(self.embed(x))
        return self.readout(h.gather(1, positions.unsqueeze(-1).expand(-1, -1, h.shape[-1])))


_check_int = functools.partial(check_int, "assoc_recall")


class AssocRecall(SyntheticTask):
    name = "assoc_recall"
    score_name = "recall_acc"
    higher_is_better = True
    gap_meaning = ("the length of the query region after the key-value pairs (Zoology's MQAR); with "
                   "distance=exact, the distance from each key-value pair to the query of its key")
    title = "Multi-query associative recall"
    score_title = "recall accuracy"
    solved_text = "recall accuracy ≥ 0.99"
    min_gap = 2

    def __init__(self, gap, seed, batch_size, num_kv_pairs=8, vocab_size=8192, distance="zoology", power_a=0.01,
                 emb_size=128, val_size=512, test_size=2048, eval_batch_size=512):
        type(self).check_options(gap, num_kv_pairs=num_kv_pairs, vocab_size=vocab_size, distance=distance,
                                 power_a=power_a, emb_size=emb_size)
        super().__init__(gap, seed, batch_size, val_size, test_size, eval_batch_size)
        self.pairs, self.vocab_size, self.distance, self.power_a = num_kv_pairs, vocab_size, distance, power_a
        self.emb_size = emb_size
        self.opts = {"num_kv_pairs": num_kv_pairs, "distance": distance}

    @classmethod
    def check_options(cls, gap, num_kv_pairs=8, vocab_size=8192, distance="zoology", power_a=0.01, emb_size=128, **_):
        _check_int("num_kv_pairs", num_kv_pairs, 1)
        _check_int("vocab_size", vocab_size, 4)
        _check_int("emb_size", emb_size, 1)
        if vocab_size // 2 - 1 < num_kv_pairs:
            raise TaskError(f"vocab_size={vocab_size} has only {vocab_size // 2 - 1} keys for num_kv_pairs="
                            f"{num_kv_pairs}; use vocab_size >= {2 * num_kv_pairs + 2}")
        if distance not in DISTANCES:
            was = " (powerlaw, which paired keys with slots at random, became zoology)" if distance == "powerlaw" else ""
            raise TaskError(f"distance={distance!r} is invalid for task assoc_recall; valid: {', '.join(DISTANCES)}{was}")
        if isinstance(power_a, bool) or not isinstance(power_a, (int, float)) or not 0 < power_a <= 1:
            raise TaskError(f"power_a={power_a!r} is invalid for task assoc_recall: use a number in (0, 1]")
        if isinstance(gap, int) and not isinstance(gap, bool) and gap < 2 * num_kv_pairs:
            where = "queries must follow the pairs" if distance == "exact" else "the query region needs a slot per key"
            raise TaskError(f"gap={gap} is invalid for task assoc_recall with num_kv_pairs={num_kv_pairs} ({where}); "
                            f"use gap >= {2 * num_kv_pairs}")

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.99

    @classmethod
    def steps_for_gap(cls, gap, num_kv_pairs=8, distance="zoology", **opts):
        return gap + 2 * num_kv_pairs - (1 if distance == "exact" else 0)

    @property
    def baseline(self):
        return 1.0 / (self.vocab_size - self.vocab_size // 2)

    @property
    def baseline_loss(self):
        return math.log(self.vocab_size - self.vocab_size // 2)

    def build_model(self, make_cell, hidden_size):
        return TokenTagger(make_cell(self.emb_size), self.vocab_size, self.emb_size, hidden_size)

    def generate(self, batch, generator):
        return assoc_recall_batch(batch, self.gap, self.pairs, self.vocab_size, generator, self.distance, self.power_a)

    def eval_batches(self, split):
        size = {"val": self.val_size, "test": self.test_size}[split]
        x, pos, y = self.generate(size, seeded_generator(self.seed, -1 if split == "val" else -2))
        return list(zip(x.split(self.eval_batch_size), pos.split(self.eval_batch_size), y.split(self.eval_batch_size)))

    def training_loss(self, model, batch):
        x, pos, y = batch
        logits = model(x, pos)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return loss, {"recall_acc": (logits.argmax(-1) == y).float().mean().detach()}

    def eval_step(self, model, batch):
        x, pos, y = batch
        logits = model(x, pos)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        return {"ce_sum": ce.item(), "hits": (logits.argmax(-1) == y).sum().item(), "n": y.numel()}

    def eval_metrics(self, outputs):
        n = sum(o["n"] for o in outputs)
        return {"loss": sum(o["ce_sum"] for o in outputs) / n, "recall_acc": sum(o["hits"] for o in outputs) / n,
                "baseline_loss": self.baseline_loss}

