"""Image captioning in the manner of Vinyals et al. 2015 ("Show and Tell"): an image of K MNIST digits
side by side, captioned by the digits as words ("three one four <eos>"). gap = the longest caption in
words: K is drawn uniformly from 1..gap per example, so the last word is written up to gap steps after
the model saw the image.

Image: `gap` slots of 28x28 pixels side by side (28 x 28*gap), the K digits in the first K slots, the rest
black; pixels normalised as in seq_mnist ((p / 255 - 0.1307) / 0.3081). Caption: the K digit words, then
<eos>. Model (Show and Tell, §3.1): an encoder maps the image to one vector in the word-embedding space,
x_{-1} = CNN(I); the decoder cell reads it once, at t = -1, from a zero state, so the image sets the
decoder's state before the first word; then x_t = W_e S_t with S_0 = <bos>, and p_{t+1} = softmax(W h_t).
Departure: the CNN is a small convolutional projection (`conv_channels` filters of 28x28 with stride 28,
one per digit slot, ReLU, then a linear map to the embedding), not a pretrained ImageNet network.
Training: teacher forcing, cross-entropy over the K words and <eos>. Test: greedy decoding of up to
gap + 1 words; recurrent models step with `step` from the state after the image, non-recurrent ones
(tcn, transformer) rerun their causal forward over the growing prefix [image; <bos>; words so far],
the image being their first input token.

Score: word accuracy, the fraction of reference words (the K digits and <eos>) that the greedy caption
has at the same position (a caption that stops early misses the rest); `bleu`: corpus BLEU of the
captions without <eos> (sacreBLEU, default 13a tokenisation; n-grams up to min(4, gap), since shorter
captions have no 4-grams). Baseline: the caption that writes the most
frequent word of each position under the training distribution (K uniform on 1..gap, digits with the
training labels' frequencies) until that word is <eos>, scored the same way on the test captions.
Data: MNIST as seq_mnist loads it (`path`); images of the test captions come from the official test
set, validation from the 10,000 held out of training. Sets of `val_size` / `test_size` captions are
fixed per seed.
"""
from __future__ import annotations

import functools
import math

import sacrebleu
import torch
import torch.nn.functional as F
from torch import nn

from gapbench.tasks import mnist_data
from gapbench.tasks.base import Task, TaskError, check_int, seeded_generator
from gapbench.tasks.seq_mnist import normalise
from gapbench.tasks.speech_data import DIGIT_WORDS

PAD, BOS, EOS = 0, 1, 2
WORDS = ("<pad>", "<bos>", "<eos>", *DIGIT_WORDS)  # digit d is token 3 + d
VOCAB = len(WORDS)
SIDE = 28
SPLITS = {"train": "train", "val": "valid", "test": "test"}

_check_int = functools.partial(check_int, "captioning")


def digit_token(d: torch.Tensor) -> torch.Tensor:
    return d + 3


class ShowAndTell(nn.Module):
    def __init__(self, make_cell, slots: int, emb_size: int, hidden_size: int, conv_channels: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, conv_channels, SIDE, stride=SIDE), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(conv_channels * slots, emb_size))
        self.embed = nn.Embedding(VOCAB, emb_size)
        self.decoder = make_cell(emb_size)
        self.readout = nn.Linear(hidden_size, VOCAB)

    def image_input(self, images):
        """x_{-1} [B, 1, E] for images [B, 28, 28 * slots]."""
        return self.encoder(images.unsqueeze(1)).unsqueeze(1)

    def forward(self, images, words_in):
        """Teacher-forced logits [B, T, V]: the outputs after <bos>, w_1, ... (the image step's is unused)."""
        out, _ = self.decoder(torch.cat([self.image_input(images), self.embed(words_in)], 1))
        return self.readout(out[:, 1:])


@torch.no_grad()
def greedy_caption(model: ShowAndTell, images: torch.Tensor, max_words: int) -> torch.Tensor:
    """Token ids [B, <= max_words], up to and including each caption's first <eos>, then <eos> filling."""
    B = len(images)
    y = torch.full((B,), BOS, dtype=torch.long, device=images.device)
    done = torch.zeros(B, dtype=torch.bool, device=images.device)
    stepping = getattr(model.decoder, "has_step", False)
    if stepping:
        _, state = model.decoder(model.image_input(images))
    else:
        prefix = model.image_input(images)
    out = []
    for _ in range(max_words):
        if stepping:
            h, state = model.decoder.step(model.embed(y), state)
        else:
            prefix = torch.cat([prefix, model.embed(y).unsqueeze(1)], 1)
            h = model.decoder(prefix)[0][:, -1]
        y = model.readout(h).argmax(-1).masked_fill(done, EOS)
        out.append(y)
        done |= y == EOS
        if bool(done.all()):
            break
    return torch.stack(out, 1)


def strip(ids: list[int]) -> list[int]:
    """A caption up to and including its first <eos>."""
    return ids[:ids.index(EOS) + 1] if EOS in ids else ids


def words(ids: list[int]) -> str:
    return " ".join(WORDS[i] for i in ids if i not in (PAD, BOS, EOS))


def position_hits(hyp: list[int], ref: list[int]) -> int:
    """Reference words (with its <eos>) matched at the same position by the hypothesis."""
    return sum(h == r for h, r in zip(strip(hyp), ref))


class Captioning(Task):
    name = "captioning"
    score_name = "word_acc"
    higher_is_better = True
    gap_meaning = "the longest caption in words (K digits per image, K uniform on 1..gap, then the end token)"
    title = "Digit captioning"
    score_title = "word accuracy"
    solved_text = "word accuracy ≥ 0.9"

    def __init__(self, gap, seed, batch_size, path=None, emb_size=128, conv_channels=16, val_size=500,
                 test_size=1000, eval_batch_size=500):
        super().__init__(gap, seed, batch_size)
        type(self).check_options(gap, path=path, emb_size=emb_size, conv_channels=conv_channels, val_size=val_size,
                                 test_size=test_size, eval_batch_size=eval_batch_size)
        self.emb_size, self.conv_channels = emb_size, conv_channels
        self.val_size, self.test_size, self.eval_batch_size = val_size, test_size, eval_batch_size
        self.data = mnist_data.load_mnist(path)
        self._eval_sets: dict[str, dict[str, torch.Tensor]] = {}

    @classmethod
    def check_options(cls, gap, path=None, emb_size=128, conv_channels=16, val_size=500, test_size=1000,
                      eval_batch_size=500, **_):
        _check_int("emb_size", emb_size, 1)
        _check_int("conv_channels", conv_channels, 1)
        _check_int("val_size", val_size, 1)
        _check_int("test_size", test_size, 1)
        _check_int("eval_batch_size", eval_batch_size, 1)
        mnist_data.check_option(cls.name, path)

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.9

    @classmethod
    def steps_for_gap(cls, gap, **opts):
        return gap + 2  # the image, <bos>, then up to gap words

    def build_model(self, make_cell, hidden_size):
        return ShowAndTell(make_cell, self.gap, self.emb_size, hidden_size, self.conv_channels)

    # -- data --
    def make_batch(self, split: str, size: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """images [size, 28, 28*gap], words_in [size, gap+1] (<bos>, the K words, <pad>...), targets
        [size, gap+1] (the K words, <eos>, <pad>...), lengths [size] = K."""
        images, labels = self.data[SPLITS[split]]
        K = torch.randint(1, self.gap + 1, (size,), generator=g)
        idx = torch.randint(len(labels), (size, self.gap), generator=g)
        used = torch.arange(self.gap) < K.unsqueeze(1)                       # [size, gap]
        pixels = torch.where(used.unsqueeze(-1), images[idx], torch.zeros((), dtype=images.dtype))
        canvas = normalise(pixels).view(size, self.gap, SIDE, SIDE).permute(0, 2, 1, 3).reshape(size, SIDE, SIDE * self.gap)
        digits = torch.where(used, digit_token(labels[idx]), PAD)
        targets = torch.cat([digits, torch.full((size, 1), PAD)], 1)
        targets[torch.arange(size), K] = EOS
        words_in = torch.cat([torch.full((size, 1), BOS), digits], 1)
        return {"images": canvas, "words_in": words_in, "targets": targets, "lengths": K}

    def train_batch(self, step, device):
        batch = self.make_batch("train", self.batch_size, seeded_generator(self.seed, 1 + step))
        return {k: v.to(device) for k, v in batch.items()}

    def _eval_set(self, split: str) -> dict[str, torch.Tensor]:
        if split not in self._eval_sets:
            size = self.val_size if split == "val" else self.test_size
            self._eval_sets[split] = self.make_batch(split, size, seeded_generator(self.seed, -1 if split == "val" else -2))
        return self._eval_sets[split]

    def eval_batches(self, split):
        if split not in ("val", "test"):
            raise TaskError(f"unknown split '{split}'; valid: val, test")
        data = self._eval_set(split)
        chunks = {k: v.split(self.eval_batch_size) for k, v in data.items()}
        return [{k: chunks[k][i] for k in data} for i in range(len(chunks["images"]))]

    # -- the baseline: the most frequent word of each position --
    def frequent_caption(self) -> list[int]:
        """Position i's most frequent training word, until that is <eos>: P(<eos> at i) = P(K = i) = 1/gap,
        P(digit d at i) = P(K > i) * p_d with p_d the training labels' frequency."""
        p_max, d_max = torch.bincount(self.data["train"][1], minlength=10).double().div(len(self.data["train"][1])).max(0)
        caption = []
        for i in range(self.gap + 1):
            p_eos = 1 / self.gap if i >= 1 else 0.0
            if p_eos > (self.gap - i) / self.gap * float(p_max):
                return caption + [EOS]
            caption.append(int(digit_token(d_max)))
        return caption

    def _scores(self, hyps: list[list[int]], refs: list[list[int]]) -> tuple[int, int, list[str], list[str]]:
        hits = sum(position_hits(h, r) for h, r in zip(hyps, refs))
        return hits, sum(map(len, refs)), [words(strip(h)) for h in hyps], [words(r) for r in refs]

    @staticmethod
    def _references(batch) -> list[list[int]]:
        return [t[:k + 1] for t, k in zip(batch["targets"].tolist(), batch["lengths"].tolist())]

    @functools.cached_property
    def baseline_scores(self) -> dict[str, float]:
        refs = self._references(self._eval_set("test"))
        hits, total, hyps, ref_words = self._scores([self.frequent_caption()] * len(refs), refs)
        return {"word_acc": hits / total, "bleu": self._bleu(hyps, ref_words)}

    @property
    def baseline(self):
        return self.baseline_scores["word_acc"]

    def _bleu(self, hyps: list[str], refs: list[str]) -> float:
        """Corpus BLEU-n, n = min(4, gap): captions of fewer than 4 words have no 4-grams to match."""
        scorer = sacrebleu.metrics.BLEU(max_ngram_order=min(4, self.gap))
        return float(scorer.corpus_score(hyps, [refs]).score) if hyps else math.nan

    # -- training and evaluation --
    def training_loss(self, model, batch):
        logits = model(batch["images"], batch["words_in"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=PAD)
        real = batch["targets"] != PAD
        acc = (logits.argmax(-1) == batch["targets"])[real].float().mean()
        return loss, {"tf_word_acc": acc.detach()}

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        images, words_in, targets = (batch[k].to(device) for k in ("images", "words_in", "targets"))
        logits = model(images, words_in)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum")
        hyps = greedy_caption(model, images, self.gap + 1).tolist()
        hits, total, hyp_words, ref_words = self._scores(hyps, self._references(batch))
        return {"nll_sum": nll.item(), "hits": hits, "total": total, "hyps": hyp_words, "refs": ref_words}

    def eval_metrics(self, outputs):
        total = sum(o["total"] for o in outputs)
        if not total:
            return {"loss": math.nan, "word_acc": math.nan, "bleu": math.nan}
        hyps, refs = [h for o in outputs for h in o["hyps"]], [r for o in outputs for r in o["refs"]]
        return {"loss": sum(o["nll_sum"] for o in outputs) / total, "word_acc": sum(o["hits"] for o in outputs) / total,
                "bleu": self._bleu(hyps, refs), "baseline_bleu": self.baseline_scores["bleu"]}
