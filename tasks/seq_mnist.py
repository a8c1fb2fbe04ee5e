"""Sequential MNIST with a delay (pixel MNIST: Le, Jaitly & Hinton 2015; the setting of Bai, Kolter &
Koltun 2018, §4.3 and locuslab/TCN `mnist_pixel`). gap = blank steps between the image and the answer.

Each 28x28 image is read one pixel per step, row by row (784 steps, one input channel), with TCN's
normalisation (pixel / 255 - 0.1307) / 0.3081; then `gap` blank steps whose input is a black pixel
(the value of a 0 pixel, so the image simply goes on as background); the class is read out from the
cell's output at the last step and trained with cross-entropy. gap = 0 is the standard task (784 steps).
`permute: true` (`task=pmnist`) reads the pixels in one fixed random order: the permutation is drawn
from `perm_seed` (default 0), not from the job seed, so every run and every seed sees the same order
(TCN draws a fresh unseeded permutation per run).

Worked example (gap=3, one image x[0..783] of pixels 0..255, label 7):

    step   0 .. 783                         784  785  786
    input  norm(x[0]) .. norm(x[783])       b    b    b      b = norm(0) = -0.4242
    target                                                 7   (only the output at step 786 is read)

with permute, step t reads x[perm[t]] instead, perm = torch.randperm(784) under manual_seed(perm_seed).

Data: `path: null` = MNIST as prepared by `python -m gapbench.tasks.prepare mnist`, or a directory of
the four IDX files (gzipped or not), or a mnist.pkl.gz (see gapbench.tasks.mnist_data). Split: train on
50,000 images, validate on the other 10,000 of the official training set, test on the official 10,000
test images (Bai et al. train on all 60,000 and report the test set). Score: test accuracy; baseline:
0.1 (guessing). Published (Bai et al. 2018, Table 1, gap 0): LSTM 87.2%, GRU 96.2%, RNN 21.5%, TCN 99.0%;
permuted 85.7 / 87.3 / 25.3 / 97.2.
"""
from __future__ import annotations

import functools

import math

import torch
import torch.nn.functional as F

from gapbench.tasks.readout import Tagger
from gapbench.tasks import mnist_data
from gapbench.tasks.base import Task, TaskError, check_int, seeded_generator

PIXELS = 784
MEAN, STD = 0.1307, 0.3081
SPLITS = {"val": "valid", "test": "test"}


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels.to(torch.get_default_dtype()) / 255.0 - MEAN) / STD


def permutation(perm_seed: int) -> torch.Tensor:
    return torch.randperm(PIXELS, generator=torch.Generator().manual_seed(perm_seed))


def pixel_sequences(images: torch.Tensor, gap: int, order: torch.Tensor | None = None) -> torch.Tensor:
    """Inputs [n, 784 + gap, 1] for uint8 images [n, 784]: the (reordered) pixels, then gap black pixels."""
    if order is not None:
        images = images[:, order.to(images.device)]
    x = normalise(images)
    if gap:
        x = F.pad(x, (0, gap), value=normalise(torch.zeros(())).item())
    return x.unsqueeze(-1)


_check_int = functools.partial(check_int, "seq_mnist")


class SeqMNIST(Task):
    name = "seq_mnist"
    score_name = "acc"
    higher_is_better = True
    gap_meaning = "blank steps between the last of the 784 pixels and the answer (0 = the standard task)"
    title = "Sequential MNIST"
    score_title = "test accuracy"
    solved_text = "test accuracy ≥ 0.95"
    min_gap = 0
    default_permute = False

    def __init__(self, gap, seed, batch_size, path=None, permute=None, perm_seed=0, val_size=2000, test_size=None,
                 eval_batch_size=1000):
        permute = self.default_permute if permute is None else permute
        super().__init__(gap, seed, batch_size)
        type(self).check_options(gap, path=path, permute=permute, perm_seed=perm_seed, val_size=val_size,
                                 test_size=test_size, eval_batch_size=eval_batch_size)
        self.path, self.permute, self.perm_seed = path, permute, perm_seed
        self.val_size, self.test_size, self.eval_batch_size = val_size, test_size, eval_batch_size
        self.order = permutation(perm_seed) if permute else None
        self.data = mnist_data.load_mnist(path)
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def check_options(cls, gap, path=None, permute=None, perm_seed=0, val_size=2000, test_size=None,
                      eval_batch_size=1000, **_):
        if permute is not None and not isinstance(permute, bool):
            raise TaskError(f"permute={permute!r} is invalid for task {cls.name}: use true or false")
        _check_int("perm_seed", perm_seed, 0)
        _check_int("val_size", val_size, 1, allow_none=True)
        _check_int("test_size", test_size, 1, allow_none=True)
        _check_int("eval_batch_size", eval_batch_size, 1)
        mnist_data.check_option(cls.name, path)

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.95

    @classmethod
    def steps_for_gap(cls, gap, **opts):
        return PIXELS + gap

    @property
    def baseline(self):
        return 0.1

    def build_model(self, make_cell, hidden_size):
        return Tagger(make_cell(1), hidden_size, 10, last_only=True)

    def _train_split(self, device):
        key = str(device)
        if key not in self._on_device:
            x, y = self.data["train"]
            self._on_device = {key: (x.to(device), y.to(device))}
        return self._on_device[key]

    def train_batch(self, step, device):
        images, labels = self._train_split(device)
        g = seeded_generator(self.seed, 1 + step)  # CPU generator: the same batches on any device
        idx = torch.randint(0, len(labels), (self.batch_size,), generator=g).to(labels.device)
        return pixel_sequences(images[idx], self.gap, self.order), labels[idx]

    def eval_indices(self, split: str) -> torch.Tensor:
        """Indices into the split scored at `split`: all, or a fixed sample (seeded by 0, the same for every job)."""
        n = len(self.data[SPLITS[split]][1])
        size = self.val_size if split == "val" else self.test_size
        if size is None or size >= n:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(0 if split == "test" else 1))[:size].sort().values

    def eval_batches(self, split):
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        return [{"split": SPLITS[split], "idx": i} for i in self.eval_indices(split).split(self.eval_batch_size)]

    def training_loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean().detach()}

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        images, labels = self.data[batch["split"]]
        x = pixel_sequences(images[batch["idx"]].to(device), self.gap, self.order)
        y = labels[batch["idx"]].to(device)
        logits = model(x)
        return {"nll_sum": F.cross_entropy(logits, y, reduction="sum").item(),
                "hits": (logits.argmax(-1) == y).sum().item(), "n": len(y)}

    def eval_metrics(self, outputs):
        n = sum(o["n"] for o in outputs)
        return {"loss": sum(o["nll_sum"] for o in outputs) / n if n else math.nan,
                "acc": sum(o["hits"] for o in outputs) / n if n else math.nan, "baseline_loss": math.log(10)}


class PermutedSeqMNIST(SeqMNIST):
    """seq_mnist with permute=true by default: its own name, so its rows, tables and published numbers
    stay apart from the unpermuted task's."""
    name = "pmnist"
    title = "Permuted sequential MNIST"
    default_permute = True
