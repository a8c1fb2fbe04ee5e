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
    x, pos, y = assoc_recall_batch(128, gap, D, V, seeded_generator(0, 1))
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
    x, pos, y = assoc_recall_batch(3, 5, 2, 12, seeded_generator(0, 2))
    assert x.shape == (3, 8) and pos.tolist() == [[5, 7]] * 3


def test_assoc_recall_powerlaw_layout():
    gap, D, V = 64, 8, 256
    x, pos, y = assoc_recall_batch(512, gap, D, V, seeded_generator(0, 1), distance="powerlaw", power_a=0.01)
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
    assert task.seq_len == 35 and task.baseline == pytest.approx(1 / 32)
    model = task.build_model(lambda n: torch.nn.LSTM(n, 16, batch_first=True), 16)
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert 0 <= m["recall_acc"] <= 1 and math.isfinite(m["loss"])
    with pytest.raises(TaskError, match="use gap >= 16"):
        task_class("assoc_recall").check_options(10)
    with pytest.raises(TaskError, match="distance='uniform'"):
        task_class("assoc_recall").check_options(20, distance="uniform")
