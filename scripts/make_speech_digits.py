"""Build tasks/data/speech_digits.npz, the offline spoken-digit corpus of task=speech_digits.

Needs Debian's espeak-ng and sox (`apt-get install espeak-ng sox`) and librosa; run once:

    python scripts/make_speech_digits.py [--out tasks/data/speech_digits.npz]

Each voice (an espeak-ng accent with a voice variant) says the ten digit words at every pitch and rate
below; sox converts espeak-ng's 22.05 kHz output to 16 kHz mono; each utterance is scaled to peak 0.5 and
white Gaussian noise of standard deviation NOISE_STD is added (seeded, so the file is reproducible);
then gapbench.tasks.speech_data trims the silence and computes the 40 log-mel bands (the same functions
the task uses on WAV folders), stored as float16 rounded to 1/16 nat. Voices are split between train, valid and test: the test voices are
never heard in training. The noise frames stored with the corpus are the same noise process alone.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from gapbench.tasks import speech_data

VOICES = {
    "train": ["en-us+m1", "en-gb+f2", "en-gb-scotland+m3", "en-gb-x-rp+f3", "en-029+m2", "en-gb-x-gbclan+f1",
              "en-us-nyc+m4", "en-gb-x-gbcwmd+f4"],
    "valid": ["en-us+f5", "en-gb+m5"],
    "test": ["en-gb-x-rp+m6", "en-us+f4"],
}
PITCHES = (35, 50, 65)      # espeak-ng -p (0-99)
RATES = (130, 165, 200)     # espeak-ng -s, words per minute
NOISE_STD = 0.005           # white noise on waveforms of peak 0.5
SEED = 0
STORE_STEP = 1 / 16         # features stored as float16 rounded to 1/16 nat (0.27 dB): a 3.4 MB file, not 5 MB


def stored(features: np.ndarray) -> np.ndarray:
    return (np.round(features / STORE_STEP) * STORE_STEP).astype(np.float16)


def speak(word: str, voice: str, pitch: int, rate: int, tmp: Path) -> np.ndarray:
    raw, wav = tmp / "raw.wav", tmp / "16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", str(raw), word], check=True)
    subprocess.run(["sox", str(raw), "-r", str(speech_data.SAMPLE_RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    audio, rate_hz = soundfile.read(str(wav), dtype="float32")
    assert rate_hz == speech_data.SAMPLE_RATE
    return 0.5 * audio / max(float(np.abs(audio).max()), 1e-6)


def build(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    feats, digits, speakers, split = [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        for part, voices in VOICES.items():
            for voice in voices:
                for digit, word in enumerate(speech_data.DIGIT_WORDS):
                    for pitch in PITCHES:
                        for rate in RATES:
                            audio = speak(word, voice, pitch, rate, Path(d))
                            noisy = audio + rng.normal(0.0, NOISE_STD, len(audio)).astype(np.float32)
                            feats.append(speech_data.log_mel(speech_data.trim(noisy)))
                            digits.append(digit), speakers.append(voice), split.append(part)
    frames, offsets = speech_data.pack(feats)
    noise = speech_data.noise_frames(NOISE_STD, seed=SEED + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, frames=stored(frames), offsets=offsets, digits=np.array(digits),
                        speakers=np.array(speakers), split=np.array(split), noise=stored(noise))
    lengths = np.diff(offsets)
    print(f"{out}: {len(digits)} utterances ({', '.join(f'{k} {len(v)} voices' for k, v in VOICES.items())}), "
          f"{lengths.min()}-{lengths.max()} frames (median {int(np.median(lengths))}), {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=speech_data.DEFAULT_CORPUS)
    build(parser.parse_args().out)
