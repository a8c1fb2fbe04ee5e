"""Sentence translation with an encoder-decoder built from the cell under test (Cho et al. 2014; with
`attention: true`, Bahdanau et al. 2015's additive attention). gap = source-sentence length.

Corpus: by default English -> Spanish Bible verses (King James Version -> Reina-Valera 1909, both
public domain, ~30k verse pairs shipped in tasks/data/bible.en-es.tsv.gz; see docs/data.md), or any
`path: FILE.tsv[.gz]` with one 'source<TAB>target' pair per line. Both sides are tokenised with
sacreBLEU's 13a tokenizer (optionally lower-cased). A fixed split (seeded by `split_seed`, not by the job
seed, so every job tests on the same pairs) gives train/valid/test; then pairs are bucketed by source
length in tokens: the bucket that ends at edge e holds lengths (previous edge, e] (the first one 1..e).
Pairs longer than the last edge are in no bucket and never used. By default (`train_on: all`, as
Bahdanau et al. 2015, Fig. 2) a job trains one model on every bucket and tests it on each bucket
separately: the headline is bucket e = gap, and the row also holds every bucket's BLEU and test size
(`bleu_<e>`, `sentences_<e>`); buckets with fewer than 100 test sentences are flagged in
`small_buckets`. `train_on: bucket` trains on bucket e only (a separate, smaller training set per gap).

Model: source embedding -> encoder cell; the decoder (same cell type) starts from the encoder's final
state and reads [target embedding of the previous word; context], where the context is the encoder's
final output (no attention: the whole sentence has to pass through the cell's state, as in Cho et al.
2014) or an additive-attention average of all encoder outputs. Read-out: linear softmax on
[decoder output; context]. Training batches hold sources of one exact length, so the encoder needs no
padding or masking. Score: corpus BLEU of greedy (or `beam_size` beam-search) translations of the test
bucket, scored as the papers scored: case-sensitive unless `lowercase: true` (then the training text is
lower-cased too and sacreBLEU's signature says case:lc), `<unk>` kept in the hypotheses, hypotheses
detokenised (`detokenize: true`: the Moses detokeniser of sacremoses for `tgt_lang`) and handed with the
untokenised references to sacreBLEU, whose signature is stored in the row (`bleu_signature`).
Baseline: BLEU of copying the source sentence unchanged.
"""
from __future__ import annotations

import bisect
import functools
import math
from collections import defaultdict

import sacrebleu
import torch
import torch.nn.functional as F
from torch import nn

from gapbench.tasks import text
from gapbench.tasks.base import Task, TaskError, seeded_generator

DEFAULT_CORPUS = "bible.en-es.tsv.gz"
DEFAULT_BUCKETS = (10, 20, 30, 40, 50, 60)
SPLITS = {"val": "valid", "test": "test"}
TRAIN_ON = ("bucket", "all")
SMALL_BUCKET = 100  # test sentences below which a bucket's BLEU is flagged as noisy


@functools.lru_cache(maxsize=4)
def _detokenizer(lang: str):
    from sacremoses import MosesDetokenizer
    return MosesDetokenizer(lang=lang)


def detokenize(tokens: list[str], lang: str | None) -> str:
    """Tokens as running text: the Moses detokeniser for `lang`, or joined by spaces when lang is None."""
    return _detokenizer(lang).detokenize(tokens) if lang else " ".join(tokens)


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------
def bucket_index(length: int, edges) -> int | None:
    """Index of the bucket (edges[i-1], edges[i]] holding `length`; None if longer than the last edge."""
    i = bisect.bisect_left(edges, length)
    return i if i < len(edges) else None


def split_indices(n: int, valid_frac: float, test_frac: float, split_seed: int) -> dict[str, torch.Tensor]:
    """A fixed partition of range(n) into train/valid/test by a seeded permutation."""
    g = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(n, generator=g)
    n_test, n_valid = round(n * test_frac), round(n * valid_frac)
    return {"test": perm[:n_test].sort().values, "valid": perm[n_test:n_test + n_valid].sort().values,
            "train": perm[n_test + n_valid:].sort().values}


@functools.lru_cache(maxsize=4)
def prepared_corpus(path: str, lowercase: bool, edges: tuple[int, ...], valid_frac: float, test_frac: float,
                    split_seed: int):
    """Tokenised pairs, their split, and split -> bucket -> list of pair indices. Cached per process."""
    pairs = text.tokenized_parallel(path, lowercase)
    raw = text.read_parallel_tsv(path)
    splits = split_indices(len(pairs), valid_frac, test_frac, split_seed)
    buckets: dict[str, dict[int, list[int]]] = {}
    for split, idx in splits.items():
        by_bucket: dict[int, list[int]] = defaultdict(list)
        for i in idx.tolist():
            b = bucket_index(len(pairs[i][0]), edges)
            if b is not None:
                by_bucket[edges[b]].append(i)
        buckets[split] = dict(by_bucket)
    return pairs, raw, splits, buckets


@functools.lru_cache(maxsize=4)
def corpus_vocabs(path: str, lowercase: bool, edges, valid_frac, test_frac, split_seed, src_vocab_size,
                  tgt_vocab_size, min_freq):
    """Source and target vocabularies of the whole training split (every bucket), so a model has the same
    size at every gap."""
    pairs, _, splits, buckets = prepared_corpus(path, lowercase, edges, valid_frac, test_frac, split_seed)
    train = [pairs[i] for b in buckets["train"].values() for i in b]
    src = text.Vocab.build((s for s, _ in train), specials=(text.PAD, text.UNK), max_size=src_vocab_size,
                           min_freq=min_freq)
    tgt = text.Vocab.build((t for _, t in train), specials=(text.PAD, text.UNK, text.BOS, text.EOS),
                           max_size=tgt_vocab_size, min_freq=min_freq)
    return src, tgt


# ----------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------
def _h(state):
    """The hidden vector of a cell state (h, or h of (h, c))."""
    return state[0] if isinstance(state, tuple) else state


def _map_state(state, fn):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2015: e_j = v^T tanh(W s + U h_j), a = softmax(e), context = sum_j a_j h_j."""

    def __init__(self, query_size: int, key_size: int, attn_size: int):
        super().__init__()
        self.W = nn.Linear(query_size, attn_size, bias=False)
        self.U = nn.Linear(key_size, attn_size)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def keys(self, memory):
        return self.U(memory)  # once per sentence

    def forward(self, query, keys, memory):
        e = self.v(torch.tanh(keys + self.W(query).unsqueeze(1))).squeeze(-1)  # [B, S]
        return torch.bmm(e.softmax(-1).unsqueeze(1), memory).squeeze(1)        # [B, H]


class Seq2Seq(nn.Module):
    def __init__(self, make_cell, src_vocab: int, tgt_vocab: int, emb_size: int, hidden_size: int,
                 attention: bool, dropout: float = 0.0):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, emb_size)
        self.tgt_embed = nn.Embedding(tgt_vocab, emb_size)
        self.encoder = make_cell(emb_size)
        self.decoder = make_cell(emb_size + hidden_size)
        self.attention = AdditiveAttention(hidden_size, hidden_size, hidden_size) if attention else None
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(2 * hidden_size, tgt_vocab)

    def encode(self, src):
        """memory [B, S, H], final state, and what decode_step needs about the source."""
        memory, state = self.encoder(self.drop(self.src_embed(src)))
        keys = self.attention.keys(memory) if self.attention is not None else None
        return memory, state, keys

    def context(self, state, memory, keys):
        if self.attention is None:
            return memory[:, -1]  # the encoder's final output: sources in a batch have one length
        return self.attention(_h(state), keys, memory)

    def decode_step(self, y_prev, state, memory, keys):
        """(logits [B, V], new state) for previous target ids y_prev [B]."""
        ctx = self.context(state, memory, keys)
        h, state = self.decoder.step(torch.cat([self.drop(self.tgt_embed(y_prev)), ctx], -1), state)
        return self.readout(self.drop(torch.cat([h, ctx], -1))), state

    def forward(self, src, tgt_in):
        """Teacher-forced logits [B, T, V]."""
        memory, state, keys = self.encode(src)
        emb = self.drop(self.tgt_embed(tgt_in))
        if self.attention is None:  # fixed context: one fused pass over the whole target
            ctx = memory[:, -1:].expand(-1, tgt_in.shape[1], -1)
            out, _ = self.decoder(torch.cat([emb, ctx], -1), state)
            return self.readout(self.drop(torch.cat([out, ctx], -1)))
        outs = []
        for t in range(tgt_in.shape[1]):  # the context depends on the previous decoder state
            ctx = self.context(state, memory, keys)
            h, state = self.decoder.step(torch.cat([emb[:, t], ctx], -1), state)
            outs.append(torch.cat([h, ctx], -1))
        return self.readout(self.drop(torch.stack(outs, 1)))


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src, bos: int, eos: int, max_len: int) -> list[list[int]]:
    memory, state, keys = model.encode(src)
    B = src.shape[0]
    y = torch.full((B,), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_len):
        logits, state = model.decode_step(y, state, memory, keys)
        y = logits.argmax(-1)
        out.append(y)
        done |= y == eos
        if bool(done.all()):
            break
    seqs = torch.stack(out, 1).tolist()
    return [s[:s.index(eos)] if eos in s else s for s in seqs]


@torch.no_grad()
def beam_decode(model: Seq2Seq, src, bos: int, eos: int, max_len: int, beam: int) -> list[list[int]]:
    """Beam search; finished hypotheses are ranked by log-probability per token (length-normalised)."""
    B, K = src.shape[0], beam
    memory, state, keys = model.encode(src)
    rep = lambda t: t.repeat_interleave(K, 0)  # noqa: E731
    memory, state = rep(memory), _map_state(state, rep)
    keys = rep(keys) if keys is not None else None
    scores = torch.full((B, K), -math.inf, device=src.device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    seqs = [[[] for _ in range(K)] for _ in range(B)]
    y = torch.full((B * K,), bos, dtype=torch.long, device=src.device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    active = [True] * B
    for t in range(max_len):
        logits, state = model.decode_step(y, state, memory, keys)
        V = logits.shape[-1]
        cand = (scores.view(-1, 1) + logits.log_softmax(-1)).view(B, K * V)
        top, idx = cand.topk(min(2 * K, K * V), -1)
        top_l, idx_l = top.tolist(), idx.tolist()
        src_beam = torch.zeros(B, K, dtype=torch.long)
        new_y = torch.full((B, K), eos, dtype=torch.long)
        new_scores = torch.full((B, K), -math.inf)
        new_seqs = []
        for b in range(B):
            kept: list[list[int]] = []
            if active[b]:
                for s, j in zip(top_l[b], idx_l[b]):
                    if s == -math.inf:
                        break
                    k, w = divmod(j, V)
                    if w == eos:
                        finished[b].append((s / (t + 1), seqs[b][k]))
                    elif len(kept) < K:
                        src_beam[b, len(kept)], new_y[b, len(kept)], new_scores[b, len(kept)] = k, w, s
                        kept.append(seqs[b][k] + [w])
                    if len(kept) == K:
                        break
                if len(finished[b]) >= K or not kept:
                    active[b] = False
            new_seqs.append(kept + [[] for _ in range(K - len(kept))])
        if not any(active):
            break
        seqs = new_seqs
        flat = (src_beam + torch.arange(B).unsqueeze(1) * K).view(-1).to(src.device)
        state = _map_state(state, lambda s: s.index_select(0, flat))
        scores = new_scores.to(src.device)
        scores[~torch.tensor(active, device=src.device)] = -math.inf
        y = new_y.view(-1).to(src.device)
    result = []
    for b in range(B):
        if not finished[b]:  # ran out of length: best live hypothesis
            k = int(scores[b].argmax())
            finished[b].append((float(scores[b, k]), seqs[b][k]))
        result.append(max(finished[b], key=lambda f: f[0])[1])
    return result


# ----------------------------------------------------------------------------------------------------------
# the task
# ----------------------------------------------------------------------------------------------------------
def _int(name, value, lo, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise TaskError(f"{name}={value!r} is invalid: use an integer >= {lo}" + (" or null" if allow_none else ""))


def _edges(buckets) -> tuple[int, ...]:
    try:
        edges = tuple(buckets)
    except TypeError:
        edges = None
    if (not edges or any(not isinstance(e, int) or isinstance(e, bool) or e < 1 for e in edges)
            or list(edges) != sorted(set(edges))):
        raise TaskError(f"buckets={buckets!r} is invalid: give increasing positive integers (source-length "
                        f"bucket edges in tokens), e.g. {list(DEFAULT_BUCKETS)}")
    return edges


class Translation(Task):
    name = "translation"
    score_name = "bleu"
    higher_is_better = True
    gap_meaning = ("source-sentence length in tokens: a job trains and tests on the length bucket that ends "
                   "at gap (one of task.buckets)")
    title = "Translation"
    requires = ("recurrent", "has_step")  # the decoder starts from the encoder's state and steps
    score_title = "BLEU"
    continuous_gap = False  # gap must be one of the bucket edges

    def __init__(self, gap, seed, batch_size, path=None, buckets=DEFAULT_BUCKETS, lowercase=False,
                 train_on="all", valid_frac=0.05, test_frac=0.1, split_seed=0, src_vocab_size=8000,
                 tgt_vocab_size=8000, min_freq=1, emb_size=128, attention=False, dropout=0.0, beam_size=1,
                 max_len_ratio=2.0, val_size=200, test_size=None, eval_batch_size=128, detokenize=True,
                 tgt_lang="es"):
        opts = dict(path=path, buckets=buckets, lowercase=lowercase, train_on=train_on, detokenize=detokenize,
                    tgt_lang=tgt_lang, valid_frac=valid_frac,
                    test_frac=test_frac, split_seed=split_seed, src_vocab_size=src_vocab_size,
                    tgt_vocab_size=tgt_vocab_size, min_freq=min_freq, emb_size=emb_size, attention=attention,
                    dropout=dropout, beam_size=beam_size, max_len_ratio=max_len_ratio, val_size=val_size,
                    test_size=test_size, eval_batch_size=eval_batch_size)
        super().__init__(gap, seed, batch_size, **opts)
        self.check_options(gap, **opts)
        _int("batch_size", batch_size, 1)
        self.__dict__.update(opts)
        self.edges = _edges(buckets)
        self.path = str(text.resolve_corpus(path, DEFAULT_CORPUS))
        key = (self.path, bool(lowercase), self.edges, float(valid_frac), float(test_frac), int(split_seed))
        self.pairs, self.raw, _, buckets_by_split = prepared_corpus(*key)
        self._check_buckets(buckets_by_split)
        self.src_vocab, self.tgt_vocab = corpus_vocabs(*key, src_vocab_size, tgt_vocab_size, min_freq)
        pick = [gap] if train_on == "bucket" else list(buckets_by_split["train"])
        self.index = {"train": sorted(i for e in pick for i in buckets_by_split["train"].get(e, [])),
                      "valid": buckets_by_split["valid"].get(gap, []), "test": buckets_by_split["test"][gap]}
        # the buckets tested: the gap's, or with one model for all lengths every bucket with test pairs
        self.test_buckets = {e: buckets_by_split["test"][e] for e in self.edges
                             if (e == gap or train_on == "all") and buckets_by_split["test"].get(e)}
        self.test_info: dict[str, str] = {}  # strings for the result row (job.py adds them as test/<key>)
        # training pairs grouped by exact source length: a batch never pads the source
        self._by_len: dict[int, list[int]] = defaultdict(list)
        for i in self.index["train"]:
            self._by_len[len(self.pairs[i][0])].append(i)
        self._train_lens = torch.tensor([len(self.pairs[i][0]) for i in self.index["train"]])

    @classmethod
    def report_notes(cls, cfg):
        if cfg.get("cfg.task.lowercase") is True:
            return ["BLEU **lowercased** (`task.lowercase=true`): both sides lowercased before training and "
                    "scoring; not comparable with the cased BLEU of Bahdanau et al. 2015 (the default)."]
        return []

    # -- options and sizes --
    @classmethod
    def check_options(cls, gap, path=None, buckets=DEFAULT_BUCKETS, lowercase=False, train_on="all",
                      valid_frac=0.05, test_frac=0.1, split_seed=0, src_vocab_size=8000, tgt_vocab_size=8000,
                      min_freq=1, emb_size=128, attention=False, dropout=0.0, beam_size=1, max_len_ratio=2.0,
                      val_size=200, test_size=None, eval_batch_size=128, detokenize=True, tgt_lang="es"):
        edges = _edges(buckets)
        if gap not in edges:
            raise TaskError(f"gap={gap!r} is not a bucket edge of task translation: use one of "
                            f"{', '.join(map(str, edges))} (task.buckets; gap = {cls.gap_meaning})")
        if path is not None:
            text.resolve_corpus(path, DEFAULT_CORPUS)
        if not isinstance(tgt_lang, str) or not tgt_lang:
            raise TaskError(f"tgt_lang={tgt_lang!r} is invalid: give the target language's code (e.g. es, de, fr) "
                            "for the Moses detokeniser")
        for name, value in (("lowercase", lowercase), ("attention", attention), ("detokenize", detokenize)):
            if not isinstance(value, bool):
                raise TaskError(f"{name}={value!r} is invalid: use true or false")
        if train_on not in TRAIN_ON:
            raise TaskError(f"train_on={train_on!r} is invalid: use one of {', '.join(TRAIN_ON)}")
        for name, value in (("valid_frac", valid_frac), ("test_frac", test_frac)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise TaskError(f"{name}={value!r} is invalid: use a fraction in (0, 1)")
        if valid_frac + test_frac >= 1:
            raise TaskError(f"valid_frac + test_frac = {valid_frac + test_frac} leaves no training pairs; "
                            "keep the sum below 1")
        _int("split_seed", split_seed, 0)
        _int("src_vocab_size", src_vocab_size, 3, allow_none=True)
        _int("tgt_vocab_size", tgt_vocab_size, 5, allow_none=True)
        _int("min_freq", min_freq, 1)
        _int("emb_size", emb_size, 1)
        _int("beam_size", beam_size, 1)
        _int("val_size", val_size, 1, allow_none=True)
        _int("test_size", test_size, 1, allow_none=True)
        _int("eval_batch_size", eval_batch_size, 1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise TaskError(f"dropout={dropout!r} is invalid: use a number in [0, 1)")
        if isinstance(max_len_ratio, bool) or not isinstance(max_len_ratio, (int, float)) or max_len_ratio <= 0:
            raise TaskError(f"max_len_ratio={max_len_ratio!r} is invalid: use a positive number "
                            "(decoding stops after max_len_ratio * source length + 10 tokens)")

    @classmethod
    def steps_for_gap(cls, gap, **opts):
        return 2 * gap + 10  # encoder (<= gap source tokens) + decoder (about as long)

    def _check_buckets(self, buckets_by_split) -> None:
        lo = self.edges[self.edges.index(self.gap) - 1] + 1 if self.gap != self.edges[0] else 1
        counts = {s: len(buckets_by_split[s].get(self.gap, [])) for s in ("train", "test")}
        if self.train_on == "all":
            counts["train"] = sum(map(len, buckets_by_split["train"].values()))
        if all(counts.values()):
            return
        longest = max(len(s) for s, _ in self.pairs)
        nonempty = [e for e in self.edges if buckets_by_split["train"].get(e) and buckets_by_split["test"].get(e)]
        why = (f"the longest source sentence has {longest} tokens" if longest < lo else
               f"it has {counts['train']} training and {counts['test']} test pairs")
        raise TaskError(f"bucket gap={self.gap} (source length {lo}..{self.gap} tokens) of corpus {self.path} "
                        f"is empty: {why}; buckets with data: {', '.join(map(str, nonempty)) or 'none'}")

    @functools.cached_property
    def baseline(self) -> float:
        """BLEU of copying the source sentence as the translation (names and numbers survive)."""
        idx = self._eval_index("test")
        hyps = [self.raw[i][0] for i in idx]
        return float(self._bleu().corpus_score(hyps, [self._refs(idx)]).score)

    def _refs(self, idx) -> list[str]:
        return [self.raw[i][1] for i in idx]

    def _bleu(self):
        """sacreBLEU's corpus BLEU, default 13a tokenisation, case-insensitive only with lowercase: true."""
        return sacrebleu.metrics.BLEU(lowercase=self.lowercase, force=True)

    # -- model --
    def build_model(self, make_cell, hidden_size):
        return Seq2Seq(make_cell, len(self.src_vocab), len(self.tgt_vocab), self.emb_size, hidden_size,
                       self.attention, self.dropout)

    def _encode_batch(self, idx, device):
        v = self.tgt_vocab
        src = torch.tensor([self.src_vocab.encode(self.pairs[i][0]) for i in idx], dtype=torch.long)
        tgt = [v.encode(self.pairs[i][1]) for i in idx]
        tgt_in, _ = text.pad_sequences([[v.bos] + t for t in tgt], v.pad)
        tgt_out, _ = text.pad_sequences([t + [v.eos] for t in tgt], v.pad)
        return {"src": src.to(device), "tgt_in": tgt_in.to(device), "tgt_out": tgt_out.to(device)}

    def train_batch(self, step, device):
        g = seeded_generator(self.seed, 1 + step)
        # a source length drawn in proportion to its number of training pairs, then pairs of that length
        length = int(self._train_lens[torch.randint(len(self._train_lens), (1,), generator=g)])
        same = self._by_len[length]
        if len(same) >= self.batch_size:
            pick = torch.randperm(len(same), generator=g)[:self.batch_size]
        else:
            pick = torch.randint(len(same), (self.batch_size,), generator=g)
        return self._encode_batch([same[j] for j in pick.tolist()], device)

    def training_loss(self, model, batch):
        logits = model(batch["src"], batch["tgt_in"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=self.tgt_vocab.pad)
        return loss, {"ppl": loss.detach().clamp(max=700).exp()}

    # -- evaluation --
    def _eval_index(self, split, bucket=None) -> list[int]:
        idx = self.index[SPLITS[split]] if bucket is None else self.test_buckets[bucket]
        size = self.test_size if split == "test" else self.val_size
        if size is not None and size < len(idx):
            g = torch.Generator().manual_seed(self.split_seed)
            idx = sorted(idx[j] for j in torch.randperm(len(idx), generator=g)[:size].tolist())
        return idx

    def eval_batches(self, split):
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        batches = []
        for bucket in (self.test_buckets if split == "test" else [self.gap]):
            by_len: dict[int, list[int]] = defaultdict(list)
            for i in self._eval_index(split, bucket if split == "test" else None):
                by_len[len(self.pairs[i][0])].append(i)
            for length in sorted(by_len):
                ids = by_len[length]
                for k in range(0, len(ids), self.eval_batch_size):
                    chunk = ids[k:k + self.eval_batch_size]
                    batches.append({**self._encode_batch(chunk, "cpu"), "refs": self._refs(chunk), "bucket": bucket})
        return batches

    @torch.no_grad()
    def eval_step(self, model, batch):
        device = next(model.parameters()).device
        src, tgt_in, tgt_out = (batch[k].to(device) for k in ("src", "tgt_in", "tgt_out"))
        logits = model(src, tgt_in)
        nll = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=self.tgt_vocab.pad,
                              reduction="sum")
        v = self.tgt_vocab
        max_len = int(self.max_len_ratio * src.shape[1]) + 10
        if self.beam_size == 1:
            ids = greedy_decode(model, src, v.bos, v.eos, max_len)
        else:
            ids = beam_decode(model, src, v.bos, v.eos, max_len, self.beam_size)
        lang = self.tgt_lang if self.detokenize else None
        hyps = [detokenize(v.decode(s, strip=(text.PAD, text.BOS, text.EOS)), lang) for s in ids]  # <unk> stays
        return {"nll_sum": nll.item(), "count": int((tgt_out != v.pad).sum()), "hyps": hyps,
                "refs": list(batch["refs"]), "bucket": batch.get("bucket", self.gap)}

    def eval_metrics(self, outputs):
        """Headline over the gap's bucket; with several buckets tested, each one's BLEU and size too."""
        scorer = self._bleu()

        def bleu(outs):
            hyps = [h for o in outs for h in o["hyps"]]
            return float(scorer.corpus_score(hyps, [[r for o in outs for r in o["refs"]]]).score) if hyps else math.nan

        by_bucket: dict[int, list] = defaultdict(list)
        for o in outputs:
            by_bucket[o.get("bucket", self.gap)].append(o)
        own = by_bucket.get(self.gap, outputs)
        count = sum(o["count"] for o in own)
        loss = sum(o["nll_sum"] for o in own) / count if count else math.nan
        metrics = {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "bleu": bleu(own),
                   "sentences": float(sum(len(o["hyps"]) for o in own)), "baseline_bleu": self.baseline,
                   "lowercase": float(self.lowercase)}
        small = []
        if len(by_bucket) > 1:
            for e in sorted(by_bucket):
                n = sum(len(o["hyps"]) for o in by_bucket[e])
                metrics.update({f"bleu_{e}": bleu(by_bucket[e]), f"sentences_{e}": float(n)})
                small += [f"{e} ({n} sentences)"] if n < SMALL_BUCKET else []
            metrics["bleu_all"] = bleu(outputs)
        elif metrics["sentences"] < SMALL_BUCKET:
            small.append(f"{self.gap} ({int(metrics['sentences'])} sentences)")
        self.test_info = {"bleu_signature": str(scorer.get_signature()),
                          "small_buckets": ", ".join(small)}  # BLEU on < 100 sentences is noisy
        return metrics
