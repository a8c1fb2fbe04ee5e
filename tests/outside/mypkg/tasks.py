"""First bit: a sequence of gap random bits; answer the first one at the end. gap = T, the
distance from the bit to the answer. Guessing scores accuracy 1/2."""
import torch
import torch.nn.functional as F

from gapbench.tasks.base import SyntheticTask
from gapbench.tasks.readout import Tagger


class FirstBit(SyntheticTask):
    name = "first_bit"
    title = "First bit"
    score_name = "accuracy"
    score_title = "accuracy"
    higher_is_better = True
    gap_meaning = "T, the sequence length; the bit to recall is T-1 steps before the answer"
    solved_text = "accuracy ≥ 0.99"

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.99

    @property
    def baseline(self):
        return 0.5

    def build_model(self, make_cell, hidden_size):
        return Tagger(make_cell(1), hidden_size, 2, last_only=True)

    def generate(self, batch, generator):
        bits = torch.randint(0, 2, (batch, self.gap), generator=generator, device=generator.device)
        return bits.unsqueeze(-1).float(), bits[:, 0]

    def training_loss(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y), {}

    def eval_step(self, model, batch):
        x, y = batch
        logits = model(x)
        return {"loss_sum": F.cross_entropy(logits, y, reduction="sum").item(),
                "correct": (logits.argmax(-1) == y).sum().item(), "n": len(y)}

    def eval_metrics(self, outputs):
        n = sum(o["n"] for o in outputs)
        return {"loss": sum(o["loss_sum"] for o in outputs) / n, "accuracy": sum(o["correct"] for o in outputs) / n}
