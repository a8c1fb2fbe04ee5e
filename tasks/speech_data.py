"""Spoken-digit corpora as log-mel frames: the shipped espeak-ng corpus, or a folder of WAV recordings.

Features (the same function for every source, and for `scripts/make_speech_digits.py`): the waveform at
16 kHz (other rates are resampled with librosa), trimmed of leading and trailing silence
(`librosa.effects.trim`, 30 dB below the peak), then 40 log-mel bands every 10 ms: a 25 ms Hann window,
512-point `torch.stft`, power spectrum, librosa's (Slaney) mel filter bank, log(mel + 1e-6).

Sources (`path`):
  * null: `tasks/data/speech_digits.npz`, made once by `scripts/make_speech_digits.py` (espeak-ng voices,
    see docs/data.md); its train/valid/test split by voice is stored in the file.
  * a folder in the Free Spoken Digit Dataset's layout, `{digit}_{speaker}_{index}.wav` (any depth);
  * a folder in Speech Commands' layout, `zero/ one/ ... nine/` of `{speaker}_nohash_{n}.wav` (other
    words' folders are ignored).
  WAV folders are split by speaker: a fixed permutation of the sorted speaker names (seeded by
  `split_seed`) gives the test speakers, then the validation speakers, then the training speakers.

Background noise (the gap): the shipped corpus stores frames of the white noise mixed into its
utterances; for WAV folders it is white noise at the recordings' own background level (the median over
files of the 10th-percentile RMS of 10 ms frames, before trimming), through the same features.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import torch

from gapbench.tasks.base import TaskError

SAMPLE_RATE = 16_000
N_MELS = 40
HOP = 160           # 10 ms
WIN = 400           # 25 ms
N_FFT = 512
TOP_DB = 30         # silence trimmed below peak - TOP_DB
NOISE_FRAMES = 3000
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "speech_digits.npz"
FSDD_NAME = re.compile(r"^([0-9])_(.+)_([0-9]+)\.wav$", re.IGNORECASE)
SPLIT_NAMES = ("train", "valid", "test")


@functools.lru_cache(maxsize=1)
def mel_filters() -> torch.Tensor:
    import librosa
    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).float()


def log_mel(wave_16k: np.ndarray) -> np.ndarray:
    """float32 [frames, 40] log-mel bands of a mono 16 kHz waveform, one frame per 10 ms."""
    x = torch.from_numpy(np.ascontiguousarray(wave_16k, dtype=np.float32))
    spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN, window=torch.hann_window(WIN),
                      center=True, return_complex=True).abs().pow(2)
    return torch.log(mel_filters() @ spec + 1e-6).T.contiguous().numpy()


def trim(wave_16k: np.ndarray) -> np.ndarray:
    import librosa
    trimmed, _ = librosa.effects.trim(wave_16k, top_db=TOP_DB)
    return trimmed if len(trimmed) else wave_16k


def background_rms(wave_16k: np.ndarray) -> float:
    """The recording's background level: the 10th percentile of the RMS of its 10 ms frames."""
    n = len(wave_16k) // HOP
    if n == 0:
        return 0.0
    frames = wave_16k[:n * HOP].reshape(n, HOP)
    return float(np.percentile(np.sqrt((frames ** 2).mean(1)), 10))


def noise_frames(rms: float, seed: int = 0, frames: int = NOISE_FRAMES) -> np.ndarray:
    """Features of `frames` x 10 ms of white Gaussian noise of standard deviation `rms`."""
    noise = np.random.default_rng(seed).normal(0.0, max(rms, 1e-5), frames * HOP).astype(np.float32)
    return log_mel(noise)[:frames]


def read_wav(path: Path) -> np.ndarray:
    """A mono float32 waveform at 16 kHz; TaskError (one line) for a file that is not readable audio."""
    import soundfile
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors: not a WAV, truncated, unknown format
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TaskError(f"cannot read {path} as a WAV file: {first}") from None
    if len(data) == 0:
        raise TaskError(f"{path} holds no audio samples")
    mono = data.mean(1)
    if rate != SAMPLE_RATE:
        import librosa
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE)
    return mono.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# finding recordings
# ----------------------------------------------------------------------------------------------------------
def _speech_commands_files(root: Path) -> list[tuple[Path, int, str]]:
    files = []
    for digit, word in enumerate(DIGIT_WORDS):
        for f in sorted((root / word).glob("*.wav")) if (root / word).is_dir() else []:
            files.append((f, digit, f.name.split("_nohash_")[0]))
    return files


def _fsdd_files(root: Path) -> list[tuple[Path, int, str]]:
    files = []
    for f in sorted(root.rglob("*")):
        m = FSDD_NAME.match(f.name)
        if m and f.is_file():
            files.append((f, int(m.group(1)), m.group(2)))
    return files


def find_recordings(root: Path) -> list[tuple[Path, int, str]]:
    """(file, digit, speaker) of every digit recording under `root`, Speech Commands layout first."""
    files = _speech_commands_files(root) or _fsdd_files(root)
    if not files:
        raise TaskError(f"task.path={root} holds no digit recordings: expected FSDD's {{digit}}_{{speaker}}_{{index}}.wav "
                        f"files or Speech Commands' folders {', '.join(DIGIT_WORDS[:3])}, ... of .wav files")
    return files


def speaker_split(speakers: list[str], valid_frac: float, test_frac: float, split_seed: int) -> dict[str, set[str]]:
    """Disjoint train/valid/test speaker sets: at least one speaker each, then by fraction."""
    names = sorted(set(speakers))
    if len(names) < 3:
        raise TaskError(f"the recordings have {len(names)} speaker(s) ({', '.join(names)}); splitting by speaker "
                        f"into train, valid and test needs at least 3")
    perm = torch.randperm(len(names), generator=torch.Generator().manual_seed(split_seed)).tolist()
    n_test = max(1, round(len(names) * test_frac))
    n_valid = max(1, round(len(names) * valid_frac))
    if n_test + n_valid >= len(names):
        n_test, n_valid = 1, 1
    order = [names[i] for i in perm]
    return {"test": set(order[:n_test]), "valid": set(order[n_test:n_test + n_valid]),
            "train": set(order[n_test + n_valid:])}


def check_path(path: str | None) -> Path:
    """Cheap validation of the source: the shipped file, or a folder with digit recordings."""
    if path is None:
        if not DEFAULT_CORPUS.is_file():
            raise TaskError(f"the shipped corpus {DEFAULT_CORPUS} is missing: run `python scripts/make_speech_digits.py`")
        return DEFAULT_CORPUS
    p = Path(path).expanduser()
    if not p.exists():
        raise TaskError(f"task.path={path} does not exist; give a folder of FSDD-style or Speech Commands WAV files, or null")
    if p.is_file() and p.suffix == ".npz":
        return p
    if not p.is_dir():
        raise TaskError(f"task.path={path} is not a folder; give a folder of FSDD-style or Speech Commands WAV files "
                        f"(or an .npz made by scripts/make_speech_digits.py)")
    find_recordings(p)
    return p


# ----------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------
def pack(features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Utterances as one frame array and offsets: utterance i is frames[offsets[i]:offsets[i+1]]."""
    offsets = np.cumsum([0] + [len(f) for f in features]).astype(np.int64)
    return np.concatenate(features).astype(np.float32), offsets


def _from_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("frames", "offsets", "digits", "speakers", "split", "noise")}
    except KeyError as e:
        raise TaskError(f"{path} lacks array {e}; a speech-digits corpus has frames, offsets, digits, speakers, "
                        f"split and noise (made by scripts/make_speech_digits.py)") from None
    except Exception as e:
        raise TaskError(f"cannot read {path} as a speech-digits .npz: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    n = len(data["digits"])
    if (data["frames"].ndim != 2 or data["frames"].shape[1] != N_MELS or len(data["offsets"]) != n + 1
            or data["offsets"][-1] != len(data["frames"]) or data["noise"].shape[1:] != (N_MELS,)):
        raise TaskError(f"{path} is malformed: frames {data['frames'].shape}, offsets {data['offsets'].shape}, "
                        f"{n} digits, noise {data['noise'].shape}; expected [F, 40], [n+1], [n], [N, 40]")
    data["frames"], data["noise"] = data["frames"].astype(np.float32), data["noise"].astype(np.float32)
    return data


def _from_wavs(root: Path, valid_frac: float, test_frac: float, split_seed: int) -> dict[str, np.ndarray]:
    files = find_recordings(root)
    speakers = [s for _, _, s in files]
    split = speaker_split(speakers, valid_frac, test_frac, split_seed)
    feats, levels = [], []
    for f, _, _ in files:
        w = read_wav(f)
        levels.append(background_rms(w))
        feats.append(log_mel(trim(w)))
    frames, offsets = pack(feats)
    which = {s: name for name, group in split.items() for s in group}
    return {"frames": frames, "offsets": offsets, "digits": np.array([d for _, d, _ in files], dtype=np.int64),
            "speakers": np.array(speakers), "split": np.array([which[s] for s in speakers]),
            "noise": noise_frames(float(np.median(levels)))}


@functools.lru_cache(maxsize=2)
def load_corpus(path: str | None = None, valid_frac: float = 0.1, test_frac: float = 0.1,
                split_seed: int = 0) -> dict[str, np.ndarray]:
    """frames float32 [F, 40], offsets [n+1], digits [n], speakers [n], split [n] ("train"/"valid"/"test"),
    noise float32 [N, 40]; not normalised."""
    p = check_path(path)
    data = _from_npz(p) if p.suffix == ".npz" and p.is_file() else _from_wavs(p, valid_frac, test_frac, split_seed)
    for name in SPLIT_NAMES:
        if not (data["split"] == name).any():
            raise TaskError(f"the corpus {p} has no {name} recordings")
    if data["digits"].min() < 0 or data["digits"].max() > 9:
        raise TaskError(f"the corpus {p} has digit labels outside 0..9")
    return data
