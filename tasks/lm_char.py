"""Character-level language modelling on the Penn Treebank: the usual PTB-char construction
(Mikolov et al. 2012) from the same 10k-vocabulary word-level text as lm_word. gap = context length in
characters.

Each sentence is written as its characters with '_' for the spaces between words, followed by an
end-of-line symbol <eos>; the splits are concatenated into one character stream each. Word-level
placeholders stay as they are in the text: "<unk>" is spelled with its five characters and numbers are
the letter "N". Training and evaluation are those of lm_word (see `gapbench.tasks.lm_word`), counted in
characters: every scored character sees exactly `gap` characters of context. Score: test bits per
character `bpc`; baseline: the unigram bpc of the test stream under training-set character frequencies.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from gapbench import text
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


class CharLM(StreamLM):
    name = "lm_char"
    score_name = "bpc"
    gap_meaning = "context length in characters: the BPTT length, and exactly the characters each test character is predicted from"
    unit = "characters"
    title = "Character-level language model"
    score_title = "bits per character"

    def __init__(self, gap, seed, batch_size, emb_size=64, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                 eval_batch_size=256):
        super().__init__(gap, seed, batch_size, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                         val_tokens=val_tokens, eval_batch_size=eval_batch_size)

    @classmethod
    def check_options(cls, gap, emb_size=64, dropout=0.0, eval_tokens=20000, val_tokens=5000,
                      eval_batch_size=256):
        super().check_options(gap, emb_size=emb_size, dropout=dropout, eval_tokens=eval_tokens,
                              val_tokens=val_tokens, eval_batch_size=eval_batch_size)

    @classmethod
    def load(cls):
        return ptb_char_data()

    def to_score(self, nats):
        return nats / math.log(2)
