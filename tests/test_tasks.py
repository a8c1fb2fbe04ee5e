import math

import pytest
import torch

from gapbench.tasks import TaskError, build_task, names
from gapbench.tasks.adding import adding_batch
from gapbench.tasks.base import seeded_generator
from gapbench.tasks.copy import copy_memory_batch


@pytest.mark.parametrize("T", [1, 5, 100])
def test_copy_memory_layout(T):
    x, y = copy_memory_batch(32, T, seeded_generator(0, 1))
    assert x.shape == y.shape == (32, T + 20)
    symbols = x[:, :10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (x[:, 10:T + 9] == 0).all(), "T-1 blanks after the symbols"
    assert (x[:, T + 9:] == 9).all() and x[:, T + 9:].shape[1] == 11, "then 11 delimiters"
    assert (y[:, :T + 10] == 0).all(), "T+10 blanks in the target"
    assert torch.equal(y[:, -10:], symbols), "the target really holds the copied symbols"


def test_copy_batches_deterministic_per_seed_and_step():
    task = build_task("copy", gap=20, seed=3, batch_size=8)
    a, b = task.train_batch(7, "cpu"), task.train_batch(7, "cpu")
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(task.train_batch(8, "cpu")[0], a[0])
    other_seed = build_task("copy", gap=20, seed=4, batch_size=8)
    assert not torch.equal(other_seed.train_batch(7, "cpu")[0], a[0])
    test1, test2 = task.eval_batches("test"), build_task("copy", gap=20, seed=3, batch_size=99).eval_batches("test")
    assert all(torch.equal(u[0], v[0]) for u, v in zip(test1, test2)), "test set fixed per seed"
    assert not torch.equal(task.eval_batches("val")[0][0], test1[0][0][:512])


def test_copy_baselines():
    task = build_task("copy", gap=100, seed=0, batch_size=8)
    assert task.baseline == pytest.approx(1 / 8)
    assert task.baseline_loss == pytest.approx(10 * math.log(8) / 120)
    # the memoryless strategy (blank everywhere but uniform over 1..8 at the recall positions) scores exactly baseline_loss
    x, y = task.eval_batches("test")[0]
    logits = torch.full((*y.shape, 10), -1e9)
    logits[..., 0] = 0.0
    logits[:, -10:, :] = -1e9
    logits[:, -10:, 1:9] = 0.0
    stats = task.eval_step(lambda inp: logits, (x, y))
    assert task.eval_metrics([stats])["loss"] == pytest.approx(task.baseline_loss, rel=1e-6)


@pytest.mark.parametrize("markers", ["anywhere", "halves"])
@pytest.mark.parametrize("T", [2, 3, 50, 601])
def test_adding_layout(T, markers):
    x, y = adding_batch(256, T, seeded_generator(0, 1), markers=markers)
    assert x.shape == (256, T, 2) and y.shape == (256,)
    marks = x[..., 1]
    assert ((marks == 0) | (marks == 1)).all() and (marks.sum(1) == 2).all(), "exactly two distinct marked positions"
    if markers == "halves":
        assert (marks[:, : T // 2].sum(1) == 1).all(), "one in the first half, one in the second"
    assert torch.allclose((x[..., 0] * marks).sum(1), y)
    assert ((x[..., 0] >= 0) & (x[..., 0] <= 1)).all()


def test_adding_marker_statistics():
    """Bai et al. 2018 / locuslab/TCN draw two distinct positions uniformly: both land in the second half
    of a long sequence with probability ~1/4 and the earlier one lies 2T/3 before the end on average;
    one-per-half never puts both in the second half and the earlier one lies 3T/4 before the end."""
    T, n = 600, 20000
    for markers, both_late, lead in [("anywhere", 0.25, 2 / 3), ("halves", 0.0, 0.75)]:
        marks = adding_batch(n, T, seeded_generator(0, 1), markers=markers)[0][..., 1]
        pos = marks.nonzero()[:, 1].view(n, 2)
        share = (pos[:, 0] >= T // 2).float().mean().item()
        assert share == pytest.approx(both_late, abs=0.01), markers
        assert ((T - pos[:, 0]).float().mean() / T).item() == pytest.approx(lead, abs=0.01), markers
    counts = adding_batch(n, 8, seeded_generator(0, 2))[0][..., 1].sum(0)  # uniform over positions
    assert (counts / (2 * n) - 1 / 8).abs().max() < 0.01
    with pytest.raises(TaskError, match="markers"):
        build_task("adding", gap=10, seed=0, batch_size=4, markers="ends")


def test_adding_baseline_is_the_variance_of_the_sum():
    task = build_task("adding", gap=50, seed=0, batch_size=8, test_size=20000, eval_batch_size=20000)
    assert task.baseline == pytest.approx(1 / 6)
    (x, y), = task.eval_batches("test")
    always_one = task.eval_metrics([task.eval_step(lambda inp: torch.ones(len(inp), 1), (x, y))])["mse"]
    assert always_one == pytest.approx(1 / 6, rel=0.03)


@pytest.mark.parametrize("name,gap", [("copy", 0), ("copy", -5), ("adding", 1), ("copy", "abc"), ("copy", 2.5)])
def test_bad_gap(name, gap):
    with pytest.raises(TaskError, match=f"gap={gap!r}"):
        build_task(name, gap=gap, seed=0, batch_size=4)


def test_unknown_task_and_option():
    with pytest.raises(TaskError, match="valid tasks: copy, adding"):
        build_task("bar", gap=5, seed=0, batch_size=4)
    with pytest.raises(TaskError, match="wrong_option"):
        build_task("copy", gap=5, seed=0, batch_size=4, wrong_option=1)


def test_registry_lists_synthetic_tasks():
    assert {"copy", "adding"} <= set(names())


def test_every_task_knows_its_metadata():
    from gapbench.tasks import task_class
    for name in names():
        cls = task_class(name)
        assert cls.title and cls.score_title and cls.gap_meaning and cls.score_name, name
        if cls.solved_text is None:
            assert cls.solved_threshold(0.5) is None
    copy, adding = task_class("copy"), task_class("adding")
    assert copy.is_solved(0.99, 0.125) and not copy.is_solved(0.98, 0.125) and not copy.is_solved(float("nan"), 0.125)
    assert adding.is_solved(0.0016, 1 / 6) and not adding.is_solved(0.002, 1 / 6)
