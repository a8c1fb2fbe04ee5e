#!/usr/bin/env python
"""Build the shipped Bach-chorale piano rolls (tasks/data/bach_chorales.npz) from the corpus of music21.

One-off conversion, run by a maintainer, never at job time:

    pip install music21==10.5.1               # only this script needs it; gapbench does not
    python scripts/make_bach_chorales.py      # -> tasks/data/bach_chorales.npz

Source: the J. S. Bach four-part chorales in music21's bundled corpus (MusicXML/MIDI encodings
distributed with music21 under its BSD licence; the music is public domain), in Riemenschneider's
numbering (`music21.corpus.chorales.Iterator(numberingSystem='riemenschneider')`), one piece per distinct
corpus file.

Piano roll, as in the JSB Chorales set of Boulanger-Lewandowski et al. 2012 (Allan & Williams 2005's
chorales, sampled at quarter notes):
  * frame k samples the score at quarter-note beat k (offset k in quarter lengths from the start of
    the first bar, pickup included); a key is on when a note or chord of any part sounds at that
    instant (onset <= k < onset + duration, tied notes merged first by stripTies), so notes shorter
    than a beat show only when they sound on the beat;
  * keys are the 88 piano keys, MIDI 21 (A0) .. 108 (C8); no transposition (the pieces stay in their
    keys, as in the standard .mat file); repeats are not expanded; grace notes (no duration) are dropped;
  * a piece with no frame or a pitch outside the 88 keys is skipped (none is, with music21 10.5.1).
Split: a permutation of the pieces (sorted by corpus name) seeded with 0: 60% train, 20% valid, 20%
test, like JSB's 229/76/77.
Output: np.savez_compressed with, per split, `<split>_rolls` (uint8 [frames, 88], the pieces one after
another), `<split>_lengths` (int64 frames per piece) and `<split>_names` (corpus names). Reruns give the
same arrays.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tasks" / "data" / "bach_chorales.npz"
LOW, KEYS = 21, 88


def piano_roll(score) -> np.ndarray:
    """uint8 [frames, 88]: which keys sound on each quarter-note beat."""
    notes = [n for n in score.stripTies().flatten().notes if n.quarterLength > 0]
    end = max(float(n.offset + n.quarterLength) for n in notes)
    frames = int(np.ceil(end - 1e-9))
    roll = np.zeros((frames, KEYS), dtype=np.uint8)
    for n in notes:
        on, off = float(n.offset), float(n.offset + n.quarterLength)
        first, last = int(np.ceil(on - 1e-9)), int(np.ceil(off - 1e-9))  # beats k with on <= k < off
        for p in n.pitches:
            key = p.midi - LOW
            if not 0 <= key < KEYS:
                raise ValueError(f"pitch {p} outside the 88 keys")
            roll[first:last, key] = 1
    return roll


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from music21 import corpus

    names = sorted(set(corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename")))
    rolls = {}
    for i, name in enumerate(names):
        try:
            roll = piano_roll(corpus.parse(name))
        except Exception as e:  # noqa: BLE001 - report and skip a piece music21 cannot read
            print(f"skip {name}: {e}", file=sys.stderr)
            continue
        if len(roll):
            rolls[name] = roll
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(names)}", file=sys.stderr)
    kept = sorted(rolls)
    perm = np.random.default_rng(0).permutation(len(kept))
    n_train, n_valid = round(0.6 * len(kept)), round(0.2 * len(kept))
    parts = {"train": perm[:n_train], "valid": perm[n_train:n_train + n_valid], "test": perm[n_train + n_valid:]}
    arrays = {}
    for split, idx in parts.items():
        chosen = [kept[j] for j in sorted(idx)]
        arrays[f"{split}_rolls"] = np.concatenate([rolls[n] for n in chosen])
        arrays[f"{split}_lengths"] = np.array([len(rolls[n]) for n in chosen], dtype=np.int64)
        arrays[f"{split}_names"] = np.array(chosen)
        print(f"{split}: {len(chosen)} pieces, {len(arrays[f'{split}_rolls'])} frames")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
