"""Spoken digits, remembered across background noise. gap = frames of noise between the end of the
utterance and the answer.

Each example: K utterances of digits (`n_digits`, default 1) drawn at random from the split, their log-mel
frames one after the other (40 bands every 10 ms, see gapbench.tasks.speech_data), then `gap` frames of
background noise, then K answer steps; the model reads out the i-th digit at the i-th answer step
(K = 1: classification; K > 1: "repeat the number you heard"). The utterances are left-padded with
noise to K * `max_frames` frames (longer utterances are cut to their first `max_frames`), so every
sequence in a batch has one length and exactly `gap` noise frames lie between the last speech frame and
the first answer step. Inputs: the 40 bands (normalised per band by the training frames' mean and standard
deviation) and one marker channel, 1 at the answer steps (whose bands are 0, the mean) and 0 elsewhere.

    steps   K*max_frames - L   L (the K utterances)   gap     K
    bands   noise              speech                 noise   0
    marker  0                  0                      0       1      <- digit i read out at answer step i

Data: the shipped espeak-ng corpus (12 voices; the 2 test voices are never heard in training) or
`path:` a folder of FSDD or Speech Commands recordings, split by speaker (gapbench.tasks.speech_data).
Training examples are drawn from the training speakers per (seed, step); val and test sets are fixed
per seed (`val_size`, `test_size` sequences from the held-out speakers). Score: digit accuracy at the
answer steps; `seq_acc`: all K digits right; baseline 1/10 (guessing).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from gapbench.tasks.readout import Tagger
from gapbench.tasks import speech_data
from gapbench.tasks.base import Task, TaskError, check_int, seeded_generator

N_CLASSES = 10
INPUT_SIZE = speech_data.N_MELS + 1  # bands + answer marker
SPLITS = {"train": "train", "val": "valid", "test": "test"}

_check_int = functools.partial(check_int, "speech_digits")


class SpeechDigits(Task):
    name = "speech_digits"
    score_name = "digit_acc"
    higher_is_better = True
    gap_meaning = "frames (10 ms each) of background noise between the end of the spoken digits and the first answer step"
    title = "Spoken digits"
    score_title = "digit accuracy"
    solved_text = "digit accuracy ≥ 0.9"
    min_gap = 0

    def __init__(self, gap, seed, batch_size, path=None, n_digits=1, max_frames=128, valid_frac=0.1, test_frac=0.1,
                 split_seed=0, val_size=500, test_size=1000, eval_batch_size=500):
        super().__init__(gap, seed, batch_size, n_digits=n_digits, max_frames=max_frames)  # opts: steps_for_gap
        type(self).check_options(gap, path=path, n_digits=n_digits, max_frames=max_frames, valid_frac=valid_frac,
                                 test_frac=test_frac, split_seed=split_seed, val_size=val_size, test_size=test_size,
                                 eval_batch_size=eval_batch_size)
        self.n_digits, self.max_frames = n_digits, max_frames
        self.val_size, self.test_size, self.eval_batch_size = val_size, test_size, eval_batch_size
        data = speech_data.load_corpus(path, valid_frac, test_frac, split_seed)
        frames = torch.from_numpy(data["frames"])
        train_rows = torch.cat([frames[a:b] for a, b, s in zip(data["offsets"][:-1], data["offsets"][1:], data["split"])
                                if s == "train"])
        self.mean, self.std = train_rows.mean(0), train_rows.std(0).clamp_min(1e-3)
        self.frames = (frames - self.mean) / self.std
        self.noise = (torch.from_numpy(data["noise"]) - self.mean) / self.std
        self.offsets = torch.from_numpy(data["offsets"])
        self.digits = torch.from_numpy(data["digits"])
        self.utterances = {s: torch.from_numpy(np.flatnonzero(data["split"] == s)) for s in speech_data.SPLIT_NAMES}

    @classmethod
    def check_options(cls, gap, path=None, n_digits=1, max_frames=128, valid_frac=0.1, test_frac=0.1, split_seed=0,
                      val_size=500, test_size=1000, eval_batch_size=500, **_):
        _check_int("n_digits", n_digits, 1)
        _check_int("max_frames", max_frames, 1)
        _check_int("split_seed", split_seed, 0)
        _check_int("val_size", val_size, 1)
        _check_int("test_size", test_size, 1)
        _check_int("eval_batch_size", eval_batch_size, 1)
        for name, value in (("valid_frac", valid_frac), ("test_frac", test_frac)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise TaskError(f"{name}={value!r} is invalid for task {cls.name}: use a fraction in (0, 1)")
        if path is not None and not isinstance(path, str):
            raise TaskError(f"path={path!r} is invalid for task {cls.name}: give a folder of WAV recordings, or null")
        speech_data.check_path(path)

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.9

    @classmethod
    def steps_for_gap(cls, gap, n_digits=1, max_frames=128, **opts):
        return n_digits * max_frames + gap + n_digits

    @property
    def baseline(self):
        return 1.0 / N_CLASSES

    def build_model(self, make_cell, hidden_size):
        return Tagger(make_cell(INPUT_SIZE), hidden_size, N_CLASSES)

    def _noise(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n consecutive noise frames from a random start in the pool (wrapping around)."""
        start = int(torch.randint(len(self.noise), (1,), generator=g))
        return self.noise[(start + torch.arange(n)) % len(self.noise)]

    def sequence(self, utterances: list[int], g: torch.Generator) -> torch.Tensor:
        """Inputs [K*max_frames + gap + K, 41] for the given utterance indices (layout in the module doc)."""
        speech = torch.cat([self.frames[self.offsets[u]:self.offsets[u + 1]][:self.max_frames] for u in utterances])
        K = len(utterances)
        pad = K * self.max_frames - len(speech)
        bands = torch.cat([self._noise(pad, g), speech, self._noise(self.gap, g), torch.zeros(K, speech_data.N_MELS)])
        marker = torch.zeros(len(bands), 1)
        marker[-K:] = 1.0
        return torch.cat([bands, marker], 1)

    def make_batch(self, split: str, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [size, seq_len, 41], digits [size, K]) from utterances of `split` ("train", "valid", "test")."""
        pool = self.utterances[split]
        picks = pool[torch.randint(len(pool), (size, self.n_digits), generator=g)]
        x = torch.stack([self.sequence(row.tolist(), g) for row in picks])
        return x, self.digits[picks]

    def train_batch(self, step, device):
        x, y = self.make_batch("train", self.batch_size, seeded_generator(self.seed, 1 + step))
        return x.to(device), y.to(device)

    def eval_batches(self, split):
        if split not in ("val", "test"):
            raise TaskError(f"unknown split '{split}'; valid: val, test")
        size = self.val_size if split == "val" else self.test_size
        x, y = self.make_batch(SPLITS[split], size, seeded_generator(self.seed, -1 if split == "val" else -2))
        return list(zip(x.split(self.eval_batch_size), y.split(self.eval_batch_size)))

    def _logits(self, model, batch):
        x, y = batch
        return model(x)[:, -self.n_digits:], y

    def training_loss(self, model, batch):
        logits, y = self._logits(model, batch)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return loss, {"digit_acc": (logits.argmax(-1) == y).float().mean().detach()}

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        logits, y = self._logits(model, tuple(t.to(device) for t in batch))
        right = logits.argmax(-1) == y
        return {"nll_sum": F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item(),
                "hits": int(right.sum()), "digits": y.numel(), "whole": int(right.all(1).sum()), "n": len(y)}

    def eval_metrics(self, outputs):
        digits, n = sum(o["digits"] for o in outputs), sum(o["n"] for o in outputs)
        if not digits:
            return {"loss": math.nan, "digit_acc": math.nan, "seq_acc": math.nan}
        return {"loss": sum(o["nll_sum"] for o in outputs) / digits, "digit_acc": sum(o["hits"] for o in outputs) / digits,
                "seq_acc": sum(o["whole"] for o in outputs) / n, "baseline_loss": math.log(N_CLASSES)}
