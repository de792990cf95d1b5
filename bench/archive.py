"""How fast the Piper training archive is built, and how much memory it takes.

    .venv/bin/python bench/archive.py [--clips 10000] [--compression both|stored|deflated]

Sources: eight sentences spoken by espeak-ng (2-4 s each, 22050 Hz) with a -60 dBFS noise
floor added, as a real microphone has (espeak's silence is exact zeros, which deflate would
flatter). Half are kept at 22050 Hz mono; the others become 16 kHz mono or 16 kHz stereo,
so about half the clips are resampled by soxr. ``--clips`` clips reuse them under distinct
ids. Each build runs in a fresh child process that reports its own peak RSS (ru_maxrss)
and its RSS after the imports, so the peak is the build's and nothing else's; then the
child runs check_archive on the result. Without espeak-ng, tones with noise stand in.

Target: peak RSS of the build 300 MB or less, whatever --clips is. Also prints the archive
size and clips/s for ZIP_STORED and ZIP_DEFLATED, the measurement the default rests on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chara_assets.voice.piper_archive import Clip, build_archive, check_archive

SENTENCES = [
    "The weather today is mild, with a light breeze from the west.",
    "Please remind me to water the plants tomorrow morning.",
    "I have turned off the lights in the kitchen and the hall.",
    "Your next appointment is on Thursday at half past three.",
    "The timer for the pasta will ring in eight minutes.",
    "Would you like me to play some quiet music for the evening?",
    "The front door is locked and the windows are closed.",
    "It is going to rain this afternoon, so take an umbrella.",
]
COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_sources(folder: Path) -> list[tuple[Path, str]]:
    """Eight (wav, text) sources: 22050 mono, 16000 mono and 16000 stereo, with noise."""
    rng = np.random.default_rng(7)
    sources = []
    for index, text in enumerate(SENTENCES):
        path = folder / f"src{index}.wav"
        if shutil.which("espeak-ng"):
            subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
            speech, rate = sf.read(path, dtype="float32")
        else:  # a stand-in of the same length: a gliding tone
            rate, seconds = 22050, 2.0 + 0.25 * index
            t = np.arange(int(rate * seconds)) / rate
            speech = (0.3 * np.sin(2 * np.pi * (150 + 50 * t) * t)).astype("float32")
        speech = speech + rng.normal(0, 10 ** (-60 / 20), speech.shape).astype("float32")
        if index % 4 == 2:
            speech, rate = soxr.resample(speech, rate, 16000), 16000
        elif index % 4 == 3:
            mono = soxr.resample(speech, rate, 16000)
            speech, rate = np.stack([mono, 0.8 * mono], axis=1), 16000
        sf.write(path, speech, rate, "PCM_16")
        sources.append((path, text))
    return sources


def clips(sources: list[tuple[Path, str]], count: int) -> Iterator[Clip]:
    """``count`` clips cycling through the sources; generated lazily, never held."""
    for index in range(count):
        path, text = sources[index % len(sources)]
        yield Clip(f"clip{index:06d}", path, text)


def child(args: argparse.Namespace) -> None:
    """Build one archive and print what it measured as one JSON line."""
    sources = [(Path(p), t) for p, t in json.loads(Path(args.sources).read_text())]
    base = rss_mb()
    start = time.perf_counter()
    stats = build_archive(
        clips(sources, args.clips),
        Path(args.out),
        speaker="bench",
        compression=COMPRESSION[args.compression],
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    start = time.perf_counter()
    problems = check_archive(Path(args.out))
    check_seconds = time.perf_counter() - start
    result = {
        "compression": args.compression,
        "clips": stats.clips,
        "resampled": stats.resampled,
        "hours": stats.duration_s / 3600,
        "size_mb": stats.size_bytes / 1e6,
        "seconds": seconds,
        "clips_per_s": stats.clips / seconds,
        "rss_base_mb": base,
        "rss_peak_mb": peak,
        "check_seconds": check_seconds,
        "check_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "problems": len(problems),
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--compression", choices=["both", *COMPRESSION], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sources", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    modes = list(COMPRESSION) if args.compression == "both" else [args.compression]
    with tempfile.TemporaryDirectory(prefix="chara-bench-archive-") as tmp:
        folder = Path(tmp)
        sources = make_sources(folder)
        listing = folder / "sources.json"
        listing.write_text(json.dumps([(str(p), t) for p, t in sources]))
        seconds = [sf.info(p).duration for p, _ in sources]
        print(
            f"{len(sources)} sources, {min(seconds):.1f}-{max(seconds):.1f} s; "
            f"{args.clips} clips; CPU cores: {len(os.sched_getaffinity(0))}"
        )
        print(
            f"{'mode':9} {'clips':>6} {'resampl':>7} {'hours':>6} {'MB':>8} {'s':>7} "
            f"{'clips/s':>8} {'rss0 MB':>8} {'peak MB':>8} {'check s':>8} {'problems':>8}"
        )
        failed = False
        for mode in modes:
            out = folder / f"{mode}.zip"
            done = subprocess.run(
                [sys.executable, __file__, "--child", f"--clips={args.clips}"]
                + [f"--compression={mode}", f"--sources={listing}", f"--out={out}"],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{mode:9} {r['clips']:>6} {r['resampled']:>7} {r['hours']:>6.2f} "
                f"{r['size_mb']:>8.1f} {r['seconds']:>7.1f} {r['clips_per_s']:>8.0f} "
                f"{r['rss_base_mb']:>8.0f} {r['rss_peak_mb']:>8.0f} "
                f"{r['check_seconds']:>8.1f} {r['problems']:>8}"
            )
            failed |= r["rss_peak_mb"] > 300 or r["problems"] > 0
            out.unlink()  # a 10,000-clip archive is over a GB: one at a time on disk
        print("target: peak RSS <= 300 MB and no problems:", "FAILED" if failed else "met")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
