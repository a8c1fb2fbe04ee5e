"""Character-level language modelling on the Penn Treebank: the usual PTB-char construction
(Mikolov et al. 2012) from the same 10k-vocabulary word-level text as lm_word; or on a corpus of one's
own (`path`: a folder with train.txt, valid.txt, test.txt). gap = context length in characters.

Each sentence is written as its characters with '_' for the spaces between words, followed by an
end-of-line symbol <eos>; the splits are concatenated into one character stream each. Word-level
placeholders stay as they are in the text: "<unk>" is spelled with its five characters and numbers are
the letter "N". Training and evaluation are those of lm_word (see `gapbench.tasks.lm_word`), counted in
characters, with the same two protocols (`protocol`: context | standard) and both test scores (full
stream, fixed context). Score: test bits per character `bpc`; baseline: the unigram bpc of the test
stream under training-set character frequencies.

A user's corpus is read as it is: every character of a line (spaces stay spaces), then <eos> for the
line end; the vocabulary is <eos>, <unk>, then the training characters by frequency; a valid/test
character never seen in training maps to <unk>.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from gapbench.tasks import text
from gapbench.tasks.base import TaskError
from gapbench.tasks.lm_word import StreamLM

SPACE = "_"


def ptb_char_text(split: str) -> str:
    """A split as one string: words joined by '_', one sentence per line ('\\n' becomes <eos>)."""
    return "".join(SPACE.join(words) + "\n" for words in text.ptb_lines(split))


@functools.lru_cache(maxsize=1)
def ptb_char_data() -> tuple[text.Vocab, dict[str, torch.Tensor]]:
    """Character vocabulary of the training text (<eos> first, then characters by frequency) and each
    split as one id stream (uint8 lookup: the PTB text is ASCII)."""
    texts = {s: ptb_char_text(s) for s in text.PTB_SPLITS}
    vocab = text.Vocab.build([texts["train"]], specials=("\n",))  # a string is a sequence of characters
    vocab = text.Vocab([text.EOS] + vocab.itos[1:], vocab.counts)  # show the line end as <eos>
    lut = np.full(256, -1, dtype=np.int64)
    lut[ord("\n")] = vocab.eos
    for i, c in enumerate(vocab.itos[1:], 1):
        lut[ord(c)] = i
    streams = {}
    for split, t in texts.items():
        ids = lut[np.frombuffer(t.encode("ascii"), dtype=np.uint8)]
        if (ids < 0).any():  # a character the training text never uses (not the case for the PTB)
            bad = t[int(np.argmax(ids < 0))]
            raise ValueError(f"PTB {split} has character {bad!r} that the training split never uses")
        streams[split] = torch.from_numpy(ids)
    return vocab, streams


def corpus_char_data(path: str) -> tuple[text.Vocab, dict[str, torch.Tensor]]:
    """A user's corpus folder as character streams (see the module docstring)."""
    files = text.lm_corpus_files(path)
    return _corpus_char_data(tuple((s, *text._stamp(f)) for s, f in files.items()))


@functools.lru_cache(maxsize=2)
def _corpus_char_data(stamps):
    lines = {split: text._read_text_lines(*stamp) for split, *stamp in stamps}
    vocab = text.Vocab.build(lines["train"], specials=(text.EOS, text.UNK))  # a line is a sequence of characters
    return vocab, {s: text.encode_stream(ls, vocab) for s, ls in lines.items()}


class CharLM(StreamLM):
    name = "lm_char"
    score_name = "bpc"
    gap_meaning = "context length in characters: the BPTT length, and exactly the characters each test character is predicted from"
    unit = "characters"
    title = "Character-level language model"
    score_title = "bits per character"

    def __init__(self, gap, seed, batch_size, emb_size=64, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                 eval_batch_size=256, protocol="context", tie_weights=False, init_range=None, path=None):
        super().__init__(gap, seed, batch_size, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                         val_tokens=val_tokens, eval_batch_size=eval_batch_size, protocol=protocol,
                         tie_weights=tie_weights, init_range=init_range, path=path)

    @classmethod
    def check_options(cls, gap, emb_size=64, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                      eval_batch_size=256, protocol="context", tie_weights=False, init_range=None, path=None):
        super().check_options(gap, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                              val_tokens=val_tokens, eval_batch_size=eval_batch_size, protocol=protocol,
                              tie_weights=tie_weights, init_range=init_range, path=path)

    @classmethod
    def check_data_options(cls, path=None):
        if path is not None and not isinstance(path, str):
            raise TaskError(f"path={path!r} is invalid; give a folder with train.txt, valid.txt, test.txt, or null")

    @classmethod
    def load(cls, path=None):
        return ptb_char_data() if path is None else corpus_char_data(path)

    def to_score(self, nats):
        return nats / math.log(2)
