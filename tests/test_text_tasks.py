"""Text tasks (lm_word, lm_char, translation): published corpus sizes, the meaning of gap, buckets,
offline loading, tiny end-to-end training through the Task interface, and one-line errors."""
import gzip
import inspect
import math
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from gapbench.tasks import text
from gapbench.tasks import lm_char, lm_word, translation
from gapbench.tasks.base import TaskError
from gapbench.tasks.lm_char import CharLM
from gapbench.tasks.lm_word import WordLM
from gapbench.tasks.translation import Translation

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is fastest, and 2 threads on a busy 2-core machine make each small
    LSTM kernel wait for a descheduled thread (measured 1000x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LSTMWrap(nn.Module):
    """nn.LSTM behind the cell interface (forward / step / initial_state), independent of gapbench.cells."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.rnn, self.hidden_size = nn.LSTM(input_size, hidden_size, batch_first=True), hidden_size

    def initial_state(self, batch, device=None, dtype=None):
        z = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return z, z.clone()

    def forward(self, x, state=None):
        out, (h, c) = self.rnn(x, None if state is None else (state[0][None], state[1][None]))
        return out, (h[0], c[0])

    def step(self, x, state):
        out, state = self.forward(x[:, None], state)
        return out[:, 0], state


def make_lstm(hidden):
    return lambda n_in: LSTMWrap(n_in, hidden)


def train_and_score(task, hidden=32, steps=30, lr=1e-2, make_cell=None):
    torch.manual_seed(0)
    model = task.build_model(make_cell or make_lstm(hidden), hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss, logs = task.training_loss(model, task.train_batch(step, CPU))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
    model.eval()
    metrics = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert "loss" in metrics and task.score_name in metrics
    assert math.isfinite(metrics[task.score_name]) and math.isfinite(metrics["loss"])
    return losses, metrics


# --------------------------------------------------------------------------------------------------------
# Penn Treebank: the published counts
# --------------------------------------------------------------------------------------------------------
PTB = {"train": (42068, 887521), "valid": (3370, 70390), "test": (3761, 78669)}


def test_ptb_word_counts_and_vocabulary():
    for split, (lines, tokens) in PTB.items():
        ls = text.ptb_lines(split)
        assert len(ls) == lines and sum(map(len, ls)) == tokens
    vocab, streams = lm_word.ptb_word_data()
    assert len(vocab) == 10000  # 9,999 word types of the training text (incl. <unk>) + <eos>
    assert vocab.itos[:2] == [text.UNK, text.EOS] and text.PAD not in vocab and text.BOS not in vocab
    for split, (lines, tokens) in PTB.items():
        s = streams[split]
        assert s.numel() == tokens + lines  # one <eos> per sentence
        assert int((s == vocab.eos).sum()) == lines
    # every valid/test word is in the training vocabulary (Mikolov's closed 10k vocabulary)
    assert all(w in vocab for split in ("valid", "test") for line in text.ptb_lines(split) for w in line)
    assert vocab.decode(streams["train"][:4].tolist(), strip=()) == list(text.ptb_lines("train")[0][:4])


def test_ptb_char_construction():
    vocab, streams = lm_char.ptb_char_data()
    assert len(vocab) == 50 and vocab.itos[0] == text.EOS and "_" in vocab and " " not in vocab
    first = text.ptb_lines("test")[0]
    n = len("_".join(first))
    assert "".join(vocab.decode(streams["test"][:n].tolist())) == "_".join(first)
    assert int(streams["test"][n]) == vocab.eos
    for split, (lines, tokens) in PTB.items():
        chars = sum(len("_".join(line)) for line in text.ptb_lines(split))
        assert streams[split].numel() == chars + lines
        assert int((streams[split] == vocab.eos).sum()) == lines


def test_unigram_baselines():
    word, char = WordLM(35, 0, 8), CharLM(35, 0, 8)
    assert 500 < word.baseline < 800 and 4.0 < char.baseline < 4.7
    assert word.baseline == pytest.approx(math.exp(word.baseline_loss))


# --------------------------------------------------------------------------------------------------------
# gap = context at evaluation
# --------------------------------------------------------------------------------------------------------
class SpyLM(nn.Module):
    """Stands in for LanguageModel at evaluation and records what it was given to read."""

    def __init__(self, vocab):
        super().__init__()
        self.readout, self.seen = nn.Linear(1, vocab, bias=False), []

    def hidden(self, x, state=None):
        assert state is None  # every window starts from a zero state: no context leaks in
        self.seen.append(x.clone())
        return torch.zeros(*x.shape, 1), None


@pytest.mark.parametrize("cls,gap", [(WordLM, 7), (CharLM, 23)])
def test_eval_context_is_exactly_gap(cls, gap):
    task = cls(gap, 0, 4, eval_tokens=300, eval_batch_size=64)
    stream = task.streams["test"].tolist()
    batches = task.context_batches("test")
    targets = torch.cat([b["targets"] for b in batches])
    assert targets.numel() == 300 and targets.unique().numel() == 300 and int(targets.min()) >= gap
    for b in batches:
        w = task.windows(b)
        assert w.shape == (b["targets"].numel(), gap + 1)
        for row, t in zip(w.tolist(), b["targets"].tolist()):
            assert row == stream[t - gap:t + 1]  # gap tokens of context, then the scored token
    spy = SpyLM(len(task.vocab))
    m = task.eval_metrics([task.eval_step(spy, b) for b in batches])
    assert all(x.shape[1] == gap for x in spy.seen) and m["tokens"] == 300 and m["context"] == gap
    assert m["loss"] == pytest.approx(math.log(len(task.vocab)), rel=1e-4)  # zero logits: uniform


def test_eval_positions_are_fixed_and_shared_across_gaps():
    a = WordLM(5, 0, 4, eval_tokens=1000).context_batches("test")
    b = WordLM(5, 0, 4, eval_tokens=1000).context_batches("test")
    c = WordLM(50, 0, 4, eval_tokens=1000).context_batches("test")
    ta, tb, tc = (torch.cat([x["targets"] for x in bs]) for bs in (a, b, c))
    assert torch.equal(ta, tb)
    assert len(set(ta.tolist()) & set(tc.tolist())) >= 990  # same sample, minus positions < gap
    full = WordLM(5, 0, 4, eval_tokens=None).context_batches("test")
    assert sum(x["targets"].numel() for x in full) == 82430 - 5


def test_train_batches_are_windows_of_the_training_stream():
    task = WordLM(12, 3, 5)
    b1, b2 = task.train_batch(7, CPU), task.train_batch(7, CPU)
    assert b1.shape == (5, 13) and torch.equal(b1, b2) and not torch.equal(b1, task.train_batch(8, CPU))
    s = task.streams["train"]
    for row in b1:
        starts = (s[:-12] == row[0]).nonzero().flatten()
        assert any(torch.equal(s[i:i + 13], row) for i in starts.tolist())


# --------------------------------------------------------------------------------------------------------
# translation: corpus, buckets
# --------------------------------------------------------------------------------------------------------
def test_shipped_bible_corpus():
    path = text.resolve_corpus(None, translation.DEFAULT_CORPUS)
    assert path.stat().st_size < 4 * 2**20
    raw = text.read_parallel_tsv(path)
    assert 29000 < len(raw) < 31102
    assert raw[0] == ("In the beginning God created the heaven and the earth.",
                      "En el principio crió Dios los cielos y la tierra.")
    assert not any("<" in s or "\\" in s or "strong:" in s for pair in raw[:5000] for s in pair)


def test_buckets_partition_the_corpus():
    edges = translation.DEFAULT_BUCKETS
    path = str(text.resolve_corpus(None, translation.DEFAULT_CORPUS))
    pairs, _, splits, buckets = translation.prepared_corpus(path, False, edges, 0.05, 0.1, 0)
    all_idx = torch.cat(list(splits.values())).sort().values
    assert torch.equal(all_idx, torch.arange(len(pairs)))  # splits partition the corpus
    seen = [i for split in buckets.values() for b in split.values() for i in b]
    assert len(seen) == len(set(seen))  # no pair in two buckets
    within = {i for i, (s, _) in enumerate(pairs) if len(s) <= edges[-1]}
    assert set(seen) == within  # every pair up to the last edge is in one
    for split in buckets.values():
        for edge, idx in split.items():
            lo = edges[edges.index(edge) - 1] if edge != edges[0] else 0
            assert all(lo < len(pairs[i][0]) <= edge for i in idx)
    assert len(pairs) - len(within) > 0  # longer verses exist and are left out


def test_translation_task_uses_its_bucket():
    task = Translation(30, 0, 16, test_size=50, train_on="bucket")
    assert all(20 < len(task.pairs[i][0]) <= 30 for split in task.index.values() for i in split)
    b = task.train_batch(0, CPU)
    assert b["src"].shape[0] == 16 and 20 < b["src"].shape[1] <= 30 and (b["src"] != 0).all()
    assert torch.equal((b["tgt_in"] != 0).sum(1), (b["tgt_out"] != 0).sum(1))  # <bos> + y, y + <eos>
    words = b["tgt_in"][:, 1:] != 0
    assert torch.equal(b["tgt_in"][:, 1:][words], b["tgt_out"][:, :-1][words])
    assert (b["tgt_in"][:, 0] == task.tgt_vocab.bos).all()
    assert sum(len(x["refs"]) for x in task.eval_batches("test")) == 50
    allb = Translation(30, 0, 16, train_on="all", test_size=50)
    assert len(allb.index["train"]) > len(task.index["train"]) and allb.index["test"] == task.index["test"]
    tested = [x["bucket"] for x in allb.eval_batches("test")]
    assert sorted(set(tested)) == list(translation.DEFAULT_BUCKETS) and tested.count(30) >= 1


def test_loading_works_offline(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network disabled in this test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    for f in (text.ptb_lines, lm_word.ptb_word_data, text._read_parallel_tsv, text._tokenized_parallel,
              translation.prepared_corpus):
        f.cache_clear()
    WordLM(20, 0, 4)
    Translation(10, 0, 4)
    assert len(text.ptb_lines("valid")) == 3370


# --------------------------------------------------------------------------------------------------------
# tiny end-to-end training through the Task interface
# --------------------------------------------------------------------------------------------------------
def test_lm_word_trains():
    task = WordLM(10, 0, 16, emb_size=16, eval_tokens=500, vocab_size=500)  # small softmax: the full test stream is scored too
    losses, m = train_and_score(task, steps=40)
    assert sum(losses[-5:]) < sum(losses[:5]) and m["tokens"] == 500 and m["ppl"] > 1


def test_lm_char_trains():
    task = CharLM(20, 0, 16, emb_size=8, eval_tokens=500)
    losses, m = train_and_score(task, steps=40)
    assert sum(losses[-5:]) < sum(losses[:5]) and 0 < m["bpc"] < 8 and m["tokens_stream"] == 442423 - 1


def test_translation_trains_greedy_and_beam_with_attention():
    task = Translation(10, 0, 16, src_vocab_size=1000, tgt_vocab_size=1000, emb_size=16, test_size=40, train_on="bucket")
    losses, m = train_and_score(task, steps=30)
    assert sum(losses[-5:]) < sum(losses[:5]) and 0 <= m["bleu"] <= 100 and m["sentences"] == 40
    # attention + beam search, with a real cell whose state is a single tensor
    from gapbench import cells
    att = Translation(10, 0, 8, src_vocab_size=500, tgt_vocab_size=500, emb_size=8, test_size=10, train_on="bucket",
                      attention=True, beam_size=3)
    _, m = train_and_score(att, hidden=16, steps=5, make_cell=lambda n_in: cells.build("gru", n_in, 16))
    assert 0 <= m["bleu"] <= 100


def test_beam_of_one_is_greedy():
    task = Translation(10, 0, 8, src_vocab_size=300, tgt_vocab_size=300, emb_size=8, attention=True)
    torch.manual_seed(1)
    model = task.build_model(make_lstm(12), 12).eval()
    src = task.eval_batches("test")[0]["src"]
    v = task.tgt_vocab
    greedy = translation.greedy_decode(model, src, v.bos, v.eos, 15)
    assert translation.beam_decode(model, src, v.bos, v.eos, 15, 1) == greedy
    beams = translation.beam_decode(model, src, v.bos, v.eos, 15, 4)
    assert len(beams) == src.shape[0] and all(len(b) <= 15 for b in beams)


def test_user_corpus(tmp_path):
    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(20)]
    lines = []
    for _ in range(400):
        n = int(torch.randint(1, 9, (1,), generator=g))
        src = [words[int(j)] for j in torch.randint(20, (n,), generator=g)]
        lines.append(" ".join(src) + "\t" + " ".join(w.upper() for w in reversed(src)))
    path = tmp_path / "toy.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    task = Translation(8, 0, 16, path=str(path), buckets=[4, 8], lowercase=False, emb_size=8)
    assert task.tgt_vocab.itos[:4] == [text.PAD, text.UNK, text.BOS, text.EOS]
    _, m = train_and_score(task, steps=20)
    assert 0 <= m["bleu"] <= 100


@pytest.mark.parametrize("cls", [WordLM, CharLM, Translation])
def test_hydra_config_matches_the_task(cls):
    from omegaconf import OmegaConf
    conf = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "task" /
                                                 f"{cls.name}.yaml"))
    assert conf.pop("name") == cls.name
    batch_size, _lr = conf.pop("batch_size"), conf.pop("lr")
    params = inspect.signature(cls.__init__).parameters
    assert set(conf) == set(params) - {"self", "gap", "seed", "batch_size"}
    for key, value in conf.items():  # the yaml documents the defaults
        default = params[key].default
        assert (list(value) == list(default)) if isinstance(value, list) else value == default, key
    gap = 20 if cls is Translation else 35
    cls.check_options(gap, **conf)
    assert cls(gap, 0, batch_size, **conf).seq_len >= gap


# --------------------------------------------------------------------------------------------------------
# bad input: one clear line
# --------------------------------------------------------------------------------------------------------
def _write(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


def test_bad_translation_inputs(tmp_path):
    with pytest.raises(TaskError, match=r"gap=25 is not a bucket edge.*10, 20, 30, 40, 50, 60"):
        Translation.check_options(25)
    with pytest.raises(TaskError, match=r"gap=25 is not a bucket edge"):
        Translation(25, 0, 8)
    with pytest.raises(TaskError, match=r"corpus file '.*nope.tsv' not found"):
        Translation.check_options(10, path=str(tmp_path / "nope.tsv"))
    bad = _write(tmp_path, "bad.tsv", b"a b\tx y\nc d\tz\n\nno tab here\n")
    with pytest.raises(TaskError, match=r"bad.tsv, line 4: expected 'source<TAB>target'.*1 tab-separated field$"):
        Translation(10, 0, 8, path=bad)
    empty_side = _write(tmp_path, "empty.tsv", b"a\tb\n \tb\n")
    with pytest.raises(TaskError, match=r"line 2: .*found an empty source"):
        Translation(10, 0, 8, path=empty_side)
    latin1 = _write(tmp_path, "latin1.tsv", "a\tb\nse\xf1or\tsir\n".encode("latin-1"))
    with pytest.raises(TaskError, match=r"line 2: not UTF-8"):
        Translation(10, 0, 8, path=latin1)
    short = _write(tmp_path, "short.tsv", "".join(f"a b {i}\tx y {i}\n" for i in range(100)).encode())
    with pytest.raises(TaskError, match=r"bucket gap=20 \(source length 11..20 tokens\).*is empty: the longest "
                                        r"source sentence has 3 tokens; buckets with data: 10"):
        Translation(20, 0, 8, path=short, buckets=[10, 20])
    for opts, what in [({"buckets": [20, 10]}, "buckets="), ({"beam_size": 0}, "beam_size=0"),
                       ({"train_on": "some"}, "train_on='some'"), ({"test_frac": 0.95}, "leaves no training"),
                       ({"attention": "yes"}, "attention='yes'")]:
        with pytest.raises(TaskError, match=what):
            Translation.check_options(10, **opts)


def test_bad_lm_inputs():
    with pytest.raises(TaskError, match=r"gap=100000 is too large for task lm_word: its smallest split \(valid\) has only 73760 tokens"):
        WordLM.check_options(100000)
    with pytest.raises(TaskError, match=r"gap=500000 is too large for task lm_char: its smallest split \(valid\) has only 393042 char"):
        CharLM(500000, 0, 8)
    with pytest.raises(TaskError, match=r"gap=0 is invalid"):
        WordLM(0, 0, 8)
    with pytest.raises(TaskError, match=r"eval_tokens=0 is invalid"):
        WordLM(5, 0, 8, eval_tokens=0)
    with pytest.raises(TaskError, match=r"dropout=1.5"):
        CharLM.check_options(5, dropout=1.5)
