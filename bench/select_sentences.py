"""How long phoneme-coverage selection takes on a large pool.

    .venv/bin/python bench/select_sentences.py [--language en] [--pool 100000] [--runs 3]

A real pool (Debian fortune files, sentences of 60-120 characters, phonemized with espeak-ng)
is resampled word by word into ``--pool`` synthetic sentences: each takes the word count of
a random real sentence and that many random real words, so rows are distinct and phoneme
frequencies, sentence lengths and foreign words are realistic. Then 500, 1,000 and 2,000
sentences are selected; the median of ``--runs`` runs per size is printed, and the ratio
time(2000) / time(500) (4 or less: at most linear growth in the number selected).
Target: 2,000 from 100,000 in 10 s or less.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chara_assets.voice.selection import PhonemeMatrix, coverage, select_sentences
from chara_resources.embedded.phonemes import EspeakPhonemes
from chara_resources.languages import get_language

FORTUNES = {
    "en": Path("/usr/share/games/fortunes"),  # Debian fortunes, fortunes-min
    "de": Path("/usr/share/games/fortunes/de"),  # fortunes-de
    "ru": Path("/usr/share/games/fortunes/ru"),  # fortunes-ru
}


def fortune_sentences(folder: Path) -> list[str]:
    """Distinct sentences of 60-120 characters from the fortune files directly in folder."""
    sentences: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix:  # skip the .dat indexes and .u8 links
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%$", text, flags=re.MULTILINE):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(entry.split())):
                if 60 <= len(sentence) <= 120:
                    sentences.append(sentence)
    return list(dict.fromkeys(sentences))


def synthetic_pool(
    phonemized: list[list[list[str]]], language: str, size: int, seed: int = 1
) -> PhonemeMatrix:
    """``size`` sentences made of random real words, with real sentence lengths."""
    rng = np.random.default_rng(seed)
    words = [word for sentence in phonemized for word in sentence]
    lengths = [len(sentence) for sentence in phonemized if sentence]
    counts = rng.choice(lengths, size=size)
    picks = rng.integers(0, len(words), size=int(counts.sum()))
    sentences: list[list[list[str]]] = []
    start = 0
    for n in counts:
        sentences.append([words[i] for i in picks[start : start + n]])
        start += n
    return PhonemeMatrix.from_phonemes(sentences, language)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="en", choices=sorted(FORTUNES))
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    args = parser.parse_args()

    folder = FORTUNES[args.language]
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: install the Debian fortune packages")
    texts = fortune_sentences(folder)
    started = time.perf_counter()
    phonemized = EspeakPhonemes().phonemize(texts, get_language(args.language).espeak_voice)
    print(f"real pool: {len(texts)} sentences, phonemized in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    matrix = synthetic_pool(phonemized, args.language, args.pool)
    foreign = sum(1 for markers in matrix.foreign if markers)
    print(
        f"synthetic pool: {len(matrix)} sentences x {len(matrix.phonemes)} phonemes "
        f"({foreign} with foreign markers), built in {time.perf_counter() - started:.1f} s"
    )

    medians: dict[int, float] = {}
    for size in args.sizes:
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            selected = select_sentences(matrix, size)
            times.append(time.perf_counter() - started)
        medians[size] = statistics.median(times)
        lowest = min(coverage(matrix, selected).values())
        print(
            f"select {size:>5}: median {medians[size]:.2f} s of {args.runs} "
            f"(runs: {', '.join(f'{t:.2f}' for t in times)}; rarest phoneme x{lowest})"
        )
    if len(args.sizes) > 1:
        first, last = args.sizes[0], args.sizes[-1]
        print(
            f"ratio time({last}) / time({first}): {medians[last] / medians[first]:.2f} "
            f"(linear growth: <= {last / first:.0f})"
        )


if __name__ == "__main__":
    main()
