#!/usr/bin/env python
"""Build the shipped English->Spanish Bible corpus (tasks/data/bible.en-es.tsv.gz) from SWORD modules.

One-off conversion, run by a maintainer, never at job time:

    sudo apt-get install sword-text-kjv sword-text-sparv    # Debian/Ubuntu: the two SWORD zText modules
    pip install pysword                                    # reader for SWORD modules; only this script needs it
    python scripts/make_bible_corpus.py                    # -> tasks/data/bible.en-es.tsv.gz

Source: King James Version (module engKJV2006eb, Debian sword-text-kjv 14.3) and Reina-Valera 1909
(module spaRV1909eb, Debian sword-text-sparv 2.60), both eBible.org / CrossWire modules whose conf
files state "DistributionLicense=Public Domain". Both modules store KJV versification, so verse
(book, chapter, verse) of one is paired with the same reference in the other.

Cleaning, in order:
  * OSIS markup is removed: footnotes (<note>...</note>) are dropped with their text; every other tag
    (<w lemma="strong:...">, <transChange>, <divineName>, <q>, <title>, milestones...) is removed and its
    text kept. Strong's numbers only live in tag attributes, so they go with the tags. Pilcrows (¶) go.
    Psalm titles are kept because the Spanish module has them inside verse 1 as well.
  * Spanish chapter openings are printed with a capitalised first word ("EN el principio", "Y HABLÓ
    Jehová"): the first two words of verse 1 are re-cased.
  * Alignment: the Spanish module numbers some verses differently from the KJV (e.g. Jonah 1:17 is its
    2:1), leaving empty verses and shifted chapters. A chapter is dropped when either side has an empty
    verse, when its verses are on average far apart in length (mean |log length ratio| > 0.35, typical is
    0.12), or when pairing each verse with its neighbour's translation fits better. Then single pairs whose
    character lengths differ by more than a factor 2.2 are dropped.
Output: gzip (mtime 0, so reruns are byte-identical), UTF-8, one verse pair per line: English<TAB>Spanish.
"""
from __future__ import annotations

import argparse
import gzip
import html
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tasks" / "data" / "bible.en-es.tsv.gz"

NOTE = re.compile(r"<note\b.*?</note>", re.S)
TAG = re.compile(r"<[^>]*>")
USFM = re.compile(r"\\\+?[a-z]+\*?")  # stray USFM character markers such as \nd ... \nd*


def clean(osis: str) -> str:
    text = TAG.sub(" ", NOTE.sub(" ", osis))
    text = USFM.sub(" ", html.unescape(text)).replace("¶", " ").replace("\t", " ")
    text = " ".join(text.split())
    # tag removal leaves "word ," where a tag closed right before punctuation
    return re.sub(r" ([,;:.!?)\]»])", r"\1", text).replace("¡ ", "¡").replace("¿ ", "¿")


def recase_drop_cap(text: str) -> str:
    """The chapter's first word, printed in capitals, back to normal case: 'EN el principio' -> 'En el
    principio', 'Y HABLÓ Jehová' -> 'Y habló Jehová', '...de Coré. COMO el ciervo' -> '...de Coré. Como el
    ciervo' (after a psalm title). Only the first such word of the verse is touched."""
    words = text.split(" ")
    for i, w in enumerate(words):
        starts_sentence = i == 0 or words[i - 1][-1:] in ".:"
        if i > 1 and not starts_sentence:
            continue
        if sum(c.isalpha() for c in w) >= 2 and w.isupper():
            low = w.lower()
            if starts_sentence:
                j = next(k for k, c in enumerate(low) if c.isalpha())
                low = low[:j] + low[j].upper() + low[j + 1:]
            words[i] = low
            break
    return " ".join(words)


def read_module(modules, name: str) -> dict[tuple[str, int], list[str]]:
    bible = modules.get_bible_from_module(name)
    chapters: dict[tuple[str, int], list[str]] = {}
    for books in bible.get_structure().get_books().values():
        for book in books:
            for chapter, n_verses in enumerate(book.chapter_lengths, 1):
                verses = list(bible.get_iter(books=[book.osis_name], chapters=[chapter], clean=False))
                if len(verses) != n_verses:
                    sys.exit(f"{name} {book.osis_name} {chapter}: {len(verses)} verses, expected {n_verses}")
                chapters[(book.osis_name, chapter)] = [clean(v) for v in verses]
    return chapters


def log_ratio(a: str, b: str) -> float:
    return abs(math.log((len(b) + 5) / (len(a) + 5)))


def chapter_is_aligned(pairs: list[tuple[str, str]]) -> bool:
    if any(not e or not s for e, s in pairs):
        return False
    n = len(pairs)
    aligned = sum(log_ratio(e, s) for e, s in pairs) / n
    if aligned > 0.35:
        return False
    if n >= 3 and aligned > 0.2:
        ahead = sum(log_ratio(pairs[i][0], pairs[i + 1][1]) for i in range(n - 1)) / (n - 1)
        behind = sum(log_ratio(pairs[i + 1][0], pairs[i][1]) for i in range(n - 1)) / (n - 1)
        if min(ahead, behind) < 0.8 * aligned:
            return False
    return True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sword-dir", default="/usr/share/sword", help="SWORD library root (has mods.d/)")
    p.add_argument("--source", default="engKJV2006eb", help="source-language module (English KJV)")
    p.add_argument("--target", default="spaRV1909eb", help="target-language module (Spanish RV1909)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--max-char-ratio", type=float, default=2.2, help="drop pairs whose lengths differ more")
    args = p.parse_args(argv)

    from pysword.modules import SwordModules  # conversion-time dependency only

    modules = SwordModules(args.sword_dir)
    found = modules.parse_modules()
    for name in (args.source, args.target):
        if name not in found:
            sys.exit(f"SWORD module {name} not found in {args.sword_dir} (found: {', '.join(found) or 'none'}); "
                     "install sword-text-kjv and sword-text-sparv")
    src, tgt = read_module(modules, args.source), read_module(modules, args.target)
    if src.keys() != tgt.keys():
        sys.exit("the two modules have different chapter lists; both must use KJV versification")

    stats: dict[str, int] = defaultdict(int)
    lines = []
    for ref, src_verses in src.items():
        pairs = list(zip(src_verses, tgt[ref]))
        stats["verses"] += len(pairs)
        if not chapter_is_aligned(pairs):
            stats["dropped: misaligned chapter"] += len(pairs)
            continue
        for v, (e, s) in enumerate(pairs, 1):
            if v == 1:
                s = recase_drop_cap(s)
            if log_ratio(e, s) > math.log(args.max_char_ratio):
                stats["dropped: length ratio"] += 1
                continue
            lines.append(f"{e}\t{s}\n")
    stats["kept"] = len(lines)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write("".join(lines).encode("utf-8"))
    for key, value in stats.items():
        print(f"{key}: {value}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
