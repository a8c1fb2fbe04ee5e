"""The standard LM protocol (contiguous rows, carried state, full-stream score), the optimiser schedule,
the model options (tied weights, uniform init) and a user's own corpus folder, on small files."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gapbench import cells
from gapbench.train import optim
from gapbench.tasks.base import TaskError
from gapbench.tasks.lm_char import CharLM
from gapbench.tasks.lm_word import WordLM

CPU = torch.device("cpu")
WORDS = "the cat sat on a mat and the dog ran after it while birds sang".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_corpus(folder: Path, lines_per_split=(300, 40, 50), seed=0) -> str:
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train", "valid", "test"), lines_per_split):
        lines = [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(torch.randint(3, 12, (1,), generator=g)),),
                                                              generator=g)) for _ in range(n)]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)


def lstm(layers=2, hidden=8):
    return lambda n_in: cells.build("lstm", n_in, hidden, layers=layers)


def test_own_corpus_streams_and_vocabulary(tmp_path):
    path = write_corpus(tmp_path / "c")
    (tmp_path / "c" / "test.txt").write_text("the cat\n\nzebra sat\n", encoding="utf-8")
    task = WordLM(4, 0, 2, path=path)
    v = task.vocab
    assert v.itos[:2] == ["<unk>", "<eos>"] and set(v.itos[2:]) == set(WORDS)
    # every line ends with <eos>, blank lines included (as the WikiText reference code reads them); unseen -> <unk>
    assert v.decode(task.streams["test"].tolist(), strip=()) == ["the", "cat", "<eos>", "<eos>", "<unk>", "sat", "<eos>"]
    assert len(WordLM(4, 0, 2, path=path, vocab_size=6).vocab) == 6
    chars = CharLM(4, 0, 2, path=path)
    assert chars.vocab.itos[:2] == ["<eos>", "<unk>"] and " " in chars.vocab
    assert "".join(chars.vocab.decode(chars.streams["test"][:7].tolist())) == "the cat"


def test_own_corpus_errors(tmp_path):
    with pytest.raises(TaskError, match="is not a directory"):
        WordLM.check_options(4, path=str(tmp_path / "nope"))
    path = write_corpus(tmp_path / "c")
    (tmp_path / "c" / "valid.txt").unlink()
    with pytest.raises(TaskError, match=r"has no valid.txt"):
        WordLM(4, 0, 2, path=path)
    path = write_corpus(tmp_path / "e")
    (tmp_path / "e" / "test.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"test.txt is empty"):
        CharLM.check_options(4, path=path)
    path = write_corpus(tmp_path / "b")
    (tmp_path / "b" / "train.txt").write_bytes("a cat\nse\xf1or\n".encode("latin-1"))
    with pytest.raises(TaskError, match=r"train.txt, line 2: not UTF-8"):
        WordLM(4, 0, 2, path=path)
    with pytest.raises(TaskError, match=r"protocol='bptt' is invalid"):
        WordLM.check_options(4, path=write_corpus(tmp_path / "d"), protocol="bptt")
    with pytest.raises(TaskError, match=r"init_range=-1 is invalid"):
        WordLM.check_options(4, path=str(tmp_path / "d"), init_range=-1)
    with pytest.raises(TaskError, match=r"tie_weights=true needs emb_size"):
        WordLM(4, 0, 2, path=str(tmp_path / "d"), emb_size=6, tie_weights=True).build_model(lstm(), 8)


def test_standard_protocol_carries_the_state_across_windows(tmp_path):
    """Windows read the rows left to right; the loss of each window, from the carried state, equals that
    of the same positions in one pass over the rows; a second call for the same step (the gradient
    probe) does not disturb the carry; every epoch starts from a zero state."""
    gap = 5
    task = WordLM(gap, 0, 3, path=write_corpus(tmp_path / "c"), protocol="standard", emb_size=8, init_range=0.1)
    torch.manual_seed(0)
    model = task.build_model(lstm(), 8)
    rows = task.train_rows(CPU)
    n = task.streams["train"].numel()
    assert rows.shape == (3, n // 3) and torch.equal(rows.flatten(), task.streams["train"][:rows.numel()])
    assert task.steps_per_epoch == (n // 3 - 1) // gap
    full, _ = model(rows[:, :4 * gap])
    for step in range(4):
        task.training_loss(model, task.train_batch(step, CPU))  # as the probe would, first
        batch = task.train_batch(step, CPU)
        assert torch.equal(batch["ids"], rows[:, step * gap:(step + 1) * gap + 1])
        assert (batch["state"] is None) == (step == 0)
        loss, _ = task.training_loss(model, batch)
        ref = F.cross_entropy(full[:, step * gap:(step + 1) * gap].flatten(0, 1), rows[:, step * gap + 1:(step + 1) * gap + 1].flatten())
        assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    saved = task.checkpoint_state()
    fresh = WordLM(gap, 0, 3, path=str(tmp_path / "c"), protocol="standard", emb_size=8)
    fresh.load_checkpoint_state(saved)
    assert all(torch.equal(a, b) for a, b in zip(fresh.train_batch(4, CPU)["state"][0], task.train_batch(4, CPU)["state"][0]))
    epoch = task.steps_per_epoch
    assert task.train_batch(epoch, CPU)["state"] is None and torch.equal(task.train_batch(epoch, CPU)["ids"], rows[:, :gap + 1])


@pytest.mark.parametrize("protocol", ["context", "standard"])
def test_both_scores_and_the_headline(tmp_path, protocol):
    """The full-stream score is the loss of the whole split read as one sequence; the test row holds it
    and the fixed-context score; the headline is the protocol's own."""
    task = WordLM(6, 0, 4, path=write_corpus(tmp_path / "c"), protocol=protocol, emb_size=8, eval_tokens=100)
    torch.manual_seed(0)
    model = task.build_model(lstm(), 8).eval()
    m = task.eval_metrics([task.eval_step(model, b) for b in task.eval_batches("test")])
    s = task.streams["test"]
    with torch.no_grad():
        ref = F.cross_entropy(model(s[None, :-1])[0][0], s[1:]).item()
    assert m["loss_stream"] == pytest.approx(ref, rel=1e-5) and m["tokens_stream"] == s.numel() - 1
    assert m["tokens"] == 100 and m["ppl_stream"] == pytest.approx(math.exp(ref), rel=1e-5)
    headline = "stream" if protocol == "standard" else "context"
    assert m["ppl"] == m[f"ppl_{headline}"] and m["loss"] == m[f"loss_{headline}"]
    val_kinds = {b["kind"] for b in task.eval_batches("val")}
    assert val_kinds == {headline}


def test_model_options(tmp_path):
    task = WordLM(4, 0, 2, path=write_corpus(tmp_path / "c"), emb_size=8, tie_weights=True, init_range=0.05)
    torch.manual_seed(0)
    model = task.build_model(lstm(), 8)
    assert model.readout.weight is model.embed.weight
    assert all(p.abs().max() <= 0.05 for p in model.parameters())
    n_untied = sum(p.numel() for p in WordLM(4, 0, 2, path=str(tmp_path / "c"), emb_size=8).build_model(lstm(), 8).parameters())
    assert n_untied - sum(p.numel() for p in model.parameters()) == 8 * len(task.vocab)


def test_step_decay_schedule():
    """Zaremba et al.'s schedule: the rate for 4 epochs, then halved at the start of every further epoch."""
    rates = [optim.decay(e * 10, 10, 4, 0.5) for e in range(7)]
    assert rates == [1, 1, 1, 1, 0.5, 0.25, 0.125] and optim.decay(39, 10, 4, 0.5) == 1
    model = torch.nn.Linear(2, 2)
    opt, sched = optim.build(model.parameters(), {"name": "sgd", "lr": 20.0, "decay_after_epochs": 1,
                                                  "decay_factor": 0.5}, steps_per_epoch=3)
    assert isinstance(opt, torch.optim.SGD)
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [20, 20, 20, 10, 10, 10, 5]
    assert optim.build(model.parameters(), {"lr": 1e-3}, None)[1] is None
    for bad, what in [({"name": "rmsprop"}, "unknown optim.name"), ({"decay_factor": 0}, "decay_factor=0"),
                      ({"decay_after_epochs": -1}, "decay_after_epochs=-1")]:
        with pytest.raises(optim.OptimError, match=what):
            optim.check({"lr": 1.0, **bad})
    with pytest.raises(optim.OptimError, match="needs a task with epochs"):
        optim.build(model.parameters(), {"lr": 1.0, "decay_after_epochs": 2}, None)


def test_zaremba_small_config_is_the_paper_recipe():
    """13 epochs of the reference code's 2,323 steps, and lr 20 / clip 0.25 on a mean loss = lr 1 / clip 5
    on the loss summed over the 20 steps of a window (plain SGD)."""
    from omegaconf import OmegaConf

    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "experiment" / "zaremba_small.yaml")
    task = WordLM(conf.gap, 0, conf.task.batch_size, protocol="standard")
    assert task.steps_per_epoch == 2323 and conf.trainer.max_steps == 13 * 2323
    assert conf.trainer.val_check_interval == task.steps_per_epoch
    g = torch.randn(1000)

    def clip(v, c):
        return v * min(1.0, c / v.norm().item())

    for scale in (0.01, 1.0, 100.0):  # below and above the clipping threshold
        gm = scale * g
        summed = gm * conf.gap
        assert torch.allclose(1.0 * clip(summed, 5.0), conf.optim.lr * clip(gm, conf.trainer.gradient_clip_val), rtol=1e-5)


@pytest.mark.slow
def test_standard_protocol_job_end_to_end_and_checkpoint_hooks(tmp_path):
    """A job through run_job (SGD, step decay, probe on): its row holds both scores and the headline is
    the full-stream one; the carried state goes into checkpoints and comes back from them."""
    from hydra import compose, initialize_config_dir

    from gapbench.train.job import make_model, make_task, run_job
    from gapbench.train.lightning_module import GapModule

    corpus = write_corpus(tmp_path / "c")
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "task=lm_word", f"task.path={corpus}", "task.protocol=standard", "task.emb_size=8", "task.batch_size=4",
            "task.init_range=0.1", "task.eval_tokens=50", "gap=5", "cell.hidden_size=8", "cell.layers=2",
            "optim.name=sgd", "optim.lr=1.0", "optim.decay_after_epochs=1", "trainer.max_steps=6",
            "trainer.val_check_interval=3", "probe.at=[0.0,1.0]", f"results_dir={tmp_path / 'r'}", "logger=none",
            "progress=false", "threads=1"])
    row = run_job(cfg)
    assert row["status"] == "finished" and row["score"] == row["test/ppl_stream"] != row["test/ppl_context"]
    assert row["test/tokens_stream"] > 0 and row["test/tokens"] == 50
    task = make_task(cfg)
    module = GapModule(task, make_model(cfg, task))
    task.training_loss(module.model, task.train_batch(0, CPU))
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    other = make_task(cfg)
    GapModule(other, make_model(cfg, other)).on_load_checkpoint(ckpt)
    assert set(other._carry) == {1} and torch.equal(other.train_batch(1, CPU)["state"][0][0], task.train_batch(1, CPU)["state"][0][0])
