"""task=captioning: the exact image and caption layout, the per-position baseline, greedy decoding (with
`step`, and by rerunning the prefix for models without one) and scoring, on a tiny fake MNIST."""
import pytest
import torch

from gapbench import cells
from gapbench.tasks import TaskError, build_task, task_class
from gapbench.tasks.captioning import BOS, EOS, PAD, Captioning, greedy_caption, position_hits, strip, words
from gapbench.tasks.seq_mnist import normalise

from test_task_suite import tiny_mnist


@pytest.fixture
def mnist(tmp_path):
    tiny_mnist(tmp_path, n_train=12, n_test=10)  # train labels 0..9 once each (10 train, 2 valid images)
    return str(tmp_path)


def test_image_and_caption_layout(mnist):
    gap = 4
    task = build_task("captioning", gap=gap, seed=0, batch_size=256, path=mnist)
    assert task.seq_len == gap + 2
    b = task.train_batch(0, "cpu")
    assert b["images"].shape == (256, 28, 28 * gap)
    assert b["words_in"].shape == b["targets"].shape == (256, gap + 1)
    images, labels = task.data["train"]
    by_label = {int(lab): img for img, lab in zip(images, labels)}
    assert set(b["lengths"].tolist()) == set(range(1, gap + 1)), "K uniform on 1..gap"
    for i in range(256):
        K = int(b["lengths"][i])
        tgt = b["targets"][i].tolist()
        assert tgt[K] == EOS and all(t == PAD for t in tgt[K + 1:]) and all(3 <= t <= 12 for t in tgt[:K])
        assert b["words_in"][i].tolist() == [BOS] + tgt[:K] + [PAD] * (gap - K)
        for j in range(gap):
            slot = b["images"][i, :, 28 * j:28 * (j + 1)]
            want = by_label[tgt[j] - 3].view(28, 28) if j < K else torch.zeros(28, 28, dtype=torch.uint8)
            assert torch.equal(slot, normalise(want)), f"slot {j} of example {i}"
    again = task.train_batch(0, "cpu")
    assert torch.equal(again["images"], b["images"]) and not torch.equal(task.train_batch(1, "cpu")["targets"], b["targets"])


def test_frequent_caption_baseline(mnist):
    task = build_task("captioning", gap=20, seed=0, batch_size=4, path=mnist, test_size=50)
    # uniform train labels (one of each): P(d at i) = (20 - i) / 20 * 0.1 < P(<eos> at i) = 1 / 20 once 20 - i < 10
    assert task.frequent_caption() == [3] * 11 + [EOS]
    ref = task._references(task._eval_set("test"))
    hits = sum(sum(h == r for h, r in zip([3] * 11 + [EOS], c)) for c in ref)
    assert task.baseline == pytest.approx(hits / sum(map(len, ref)))


def test_scoring_helpers():
    assert strip([4, 5, EOS, EOS]) == [4, 5, EOS] and strip([4, 5]) == [4, 5]
    assert position_hits([4, 5, EOS, EOS], [4, 6, EOS]) == 2 and position_hits([4], [4, 6, EOS]) == 1
    assert position_hits([4, EOS, 6], [4, 6, EOS]) == 1, "nothing after the first <eos> counts"
    assert words([4, 5, EOS]) == "one two"


@pytest.mark.parametrize("name", ["gru", "lstm", "transformer", "tcn"])
def test_greedy_decoding_and_metrics(mnist, name):
    task = build_task("captioning", gap=3, seed=0, batch_size=8, path=mnist, test_size=20, eval_batch_size=8)
    torch.manual_seed(0)
    model = task.build_model(lambda n: cells.build(name, n, 8, max_len=task.seq_len), 8)
    batch = task.eval_batches("test")[0]
    caps = greedy_caption(model, batch["images"], 4)
    assert caps.shape[0] == 8 and caps.shape[1] <= 4
    # teacher forcing on the model's own greedy words reproduces them: decoding is greedy on forward's logits
    prev = torch.cat([torch.full((8, 1), BOS), caps[:, :-1]], 1)
    forced = model(batch["images"], prev).argmax(-1)[:, :caps.shape[1]].tolist()
    assert [strip(f) for f in forced] == [strip(c) for c in caps.tolist()]  # (after <eos>, greedy pads with <eos>)
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    assert 0 <= m["word_acc"] <= 1 and 0 <= m["bleu"] <= 100 and m["loss"] > 0


def test_step_and_prefix_decoding_agree(mnist, monkeypatch):
    task = build_task("captioning", gap=3, seed=0, batch_size=8, path=mnist)
    torch.manual_seed(1)
    model = task.build_model(lambda n: cells.build("gru", n, 8), 8)
    images = task.eval_batches("test")[0]["images"]
    stepped = greedy_caption(model, images, 4)
    monkeypatch.setattr(model.decoder, "has_step", False)  # decode as a model without step does
    assert torch.equal(stepped, greedy_caption(model, images, 4))


@pytest.mark.parametrize("gap", [1, 3, 6])
def test_perfect_captions_score_one(mnist, gap):
    task = build_task("captioning", gap=gap, seed=0, batch_size=8, path=mnist, test_size=20)
    batch = task.eval_batches("test")[0]
    refs = task._references(batch)
    hits, total, hyps, ref_words = task._scores(refs, refs)
    assert hits == total and task._bleu(hyps, ref_words) == pytest.approx(100.0), "BLEU-min(4, gap)"
    assert task._bleu(["one"] * len(refs), ref_words) < 100


def test_bad_input_one_line(tmp_path):
    with pytest.raises(TaskError, match="does not exist") as e:
        task_class("captioning").check_options(3, path=str(tmp_path / "nope"))
    assert "\n" not in str(e.value)
    with pytest.raises(TaskError, match="gap=0 is invalid"):
        Captioning(0, 0, 4)
    with pytest.raises(TaskError, match="conv_channels=0"):
        Captioning.check_options(3, conv_channels=0)
