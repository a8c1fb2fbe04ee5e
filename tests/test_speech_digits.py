"""task=speech_digits: features, the WAV loaders (FSDD and Speech Commands layouts, built here from
tiny tones), the speaker split, the exact layout of a sequence, and one-line errors for bad input."""
import inspect
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from gapbench.tasks import TaskError, build_task, task_class
from gapbench.tasks import speech_data
from gapbench.tasks.base import seeded_generator
from gapbench.tasks.speech_digits import SpeechDigits

ROOT = Path(__file__).resolve().parents[1]


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def tone(digit: int, rate: int, seconds: float = 0.2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * (300 + 100 * digit) * t)


def fsdd(root: Path, speakers=("ann", "bob", "cy"), rate=8000) -> Path:
    for s in speakers:
        for d in range(10):
            write_wav(root / f"{d}_{s}_0.wav", tone(d, rate), rate)
    return root


def test_log_mel_frames_every_10_ms():
    feats = speech_data.log_mel(np.zeros(3200, dtype=np.float32) + 0.1 * np.sin(np.arange(3200)))
    assert feats.shape == (1 + 3200 // speech_data.HOP, 40) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_fsdd_folder_is_read_and_split_by_speaker(tmp_path):
    root = fsdd(tmp_path / "recordings")
    data = speech_data.load_corpus(str(root))
    assert len(data["digits"]) == 30 and len(data["offsets"]) == 31
    assert sorted(data["digits"].tolist()) == sorted(list(range(10)) * 3)
    assert set(data["speakers"].tolist()) == {"ann", "bob", "cy"}
    # 0.2 s at 8 kHz -> 3200 samples at 16 kHz -> 21 frames of 40 bands (a tone has no silence to trim)
    assert np.diff(data["offsets"]).tolist() == [21] * 30 and data["frames"].shape == (630, 40)
    by_split = {s: set(data["speakers"][data["split"] == s].tolist()) for s in ("train", "valid", "test")}
    assert all(len(v) == 1 for v in by_split.values()) and set.union(*by_split.values()) == {"ann", "bob", "cy"}
    assert data["noise"].shape == (speech_data.NOISE_FRAMES, 40)
    # the same files, the same features: a digit's 300 + 100 d Hz tone peaks in a band rising with d
    peaks = [int(data["frames"][data["offsets"][i]:data["offsets"][i + 1]].mean(0).argmax()) for i in range(30)]
    for d in range(9):
        assert max(p for p, dd in zip(peaks, data["digits"]) if dd == d) <= min(p for p, dd in zip(peaks, data["digits"]) if dd == d + 1)


def test_speech_commands_folders(tmp_path):
    for word in ("zero", "one", "two", "house"):
        for spk in ("aa11", "bb22", "cc33", "dd44"):
            write_wav(tmp_path / word / f"{spk}_nohash_0.wav", tone(3, 16000, 0.1), 16000)
    files = speech_data.find_recordings(tmp_path)
    assert len(files) == 12, "only the digit words' folders"
    assert {(d, s) for _, d, s in files} == {(d, s) for d in range(3) for s in ("aa11", "bb22", "cc33", "dd44")}


def test_speaker_split_is_fixed_and_disjoint():
    names = [f"s{i}" for i in range(20)]
    a, b = speech_data.speaker_split(names, 0.1, 0.2, 0), speech_data.speaker_split(names * 2, 0.1, 0.2, 0)
    assert a == b and [len(a[s]) for s in ("train", "valid", "test")] == [14, 2, 4]
    assert not (a["train"] & a["test"]) and not (a["valid"] & a["test"]) and not (a["train"] & a["valid"])
    assert speech_data.speaker_split(names, 0.1, 0.2, 1) != a


@pytest.mark.parametrize("K,gap", [(1, 0), (1, 7), (3, 5)])
def test_sequence_layout_on_the_shipped_corpus(K, gap):
    task = build_task("speech_digits", gap=gap, seed=0, batch_size=4, n_digits=K, max_frames=100)
    assert task.seq_len == K * 100 + gap + K
    x, y = task.train_batch(0, "cpu")
    assert x.shape == (4, task.seq_len, 41) and y.shape == (4, K) and ((y >= 0) & (y <= 9)).all()
    assert (x[:, -K:, -1] == 1).all() and (x[:, :-K, -1] == 0).all() and (x[:, -K:, :40] == 0).all()
    utts = task.utterances["train"][:K].tolist()
    seq = task.sequence(utts, seeded_generator(0, 5))
    speech = torch.cat([task.frames[task.offsets[u]:task.offsets[u + 1]][:100] for u in utts])
    end = K * 100
    assert torch.equal(seq[end - len(speech):end, :40], speech), "the utterances end K * max_frames steps in"
    rows = {tuple(r.tolist()) for r in task.noise}
    assert all(tuple(r.tolist()) in rows for r in seq[end:end + gap, :40]), "then gap noise frames"
    assert all(tuple(r.tolist()) in rows for r in seq[:end - len(speech), :40]), "left padding is noise"
    a, b = task.train_batch(3, "cpu"), task.train_batch(3, "cpu")
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], task.train_batch(4, "cpu")[0])


def test_shipped_corpus_holds_unheard_test_voices_and_scores():
    data = speech_data.load_corpus(None)
    voices = {s: set(data["speakers"][data["split"] == s].tolist()) for s in ("train", "valid", "test")}
    assert len(voices["train"]) == 8 and len(voices["valid"]) == 2 and len(voices["test"]) == 2
    assert not voices["test"] & (voices["train"] | voices["valid"]) and not voices["valid"] & voices["train"]
    assert np.bincount(data["digits"]).tolist() == [108] * 10
    task = build_task("speech_digits", gap=2, seed=0, batch_size=4, n_digits=2, max_frames=60, test_size=40,
                      eval_batch_size=16)
    for i in task.utterances["test"].tolist():
        assert data["speakers"][i] in voices["test"]
    model = task.build_model(lambda n: torch.nn.LSTM(n, 8, batch_first=True), 8)
    batches = task.eval_batches("test")
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    m = task.eval_metrics([task.eval_step(model, b) for b in batches])
    assert 0 <= m["seq_acc"] <= m["digit_acc"] <= 1 and task.baseline == 0.1
    loss, logs = task.training_loss(model, task.train_batch(0, "cpu"))
    assert loss.requires_grad and 0 <= float(logs["digit_acc"]) <= 1


@pytest.mark.parametrize("name", ["speech_digits", "captioning"])
def test_hydra_config_documents_the_options_and_defaults(name):
    from omegaconf import OmegaConf
    conf = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "task" / f"{name}.yaml"))
    assert conf.pop("name") == name
    conf.pop("batch_size"), conf.pop("lr")
    params = inspect.signature(task_class(name).__init__).parameters
    assert set(conf) == set(params) - {"self", "gap", "seed", "batch_size"}
    assert all(conf[k] == params[k].default for k in conf)


@pytest.mark.parametrize("setup,match", [
    ("missing", "does not exist"),
    ("empty_dir", "holds no digit recordings"),
    ("not_wav", r"cannot read .*3_ann_0.wav as a WAV file"),
    ("empty_wav", "holds no audio samples"),
    ("two_speakers", "needs at least 3"),
    ("bad_npz", "lacks array"),
])
def test_bad_paths_one_line(tmp_path, setup, match):
    path = tmp_path / "rec"
    if setup == "empty_dir":
        path.mkdir()
    elif setup in ("not_wav", "empty_wav"):
        fsdd(path)
        if setup == "not_wav":
            (path / "3_ann_0.wav").write_bytes(b"RIFF....not a wave file")
        else:
            write_wav(path / "3_ann_0.wav", np.zeros(0), 8000)
    elif setup == "two_speakers":
        fsdd(path, speakers=("ann", "bob"))
    elif setup == "bad_npz":
        path = tmp_path / "c.npz"
        np.savez(path, frames=np.zeros((3, 40)))
    with pytest.raises(TaskError, match=match) as e:
        task_class("speech_digits").check_options(5, path=str(path))
        speech_data.load_corpus(str(path))
    assert "\n" not in str(e.value)


def test_bad_options():
    for opts, what in [({"n_digits": 0}, "n_digits=0"), ({"max_frames": 1.5}, "max_frames=1.5"),
                       ({"test_frac": 1.0}, "test_frac=1.0"), ({"path": 3}, "path=3")]:
        with pytest.raises(TaskError, match=what):
            SpeechDigits.check_options(5, **opts)


@pytest.mark.slow
def test_bad_path_exits_2_in_one_line(cli, tmp_path):
    r = cli("task=speech_digits", f"task.path={tmp_path / 'nope'}", f"results_dir={tmp_path / 'res'}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr
    assert not (tmp_path / "res" / "runs").exists()
