"""What it costs that committed asset files no longer share an inode with the work cache.

    .venv/bin/python bench/committed_copies.py [--clips 10000] [--seconds 7] [--folder DIR]

``cloned_audio`` puts every clip of the work cache into its asset folder, and re-does that for
every new version. Until issue 14 this was a hard link (no time, no space, but editing the cache
file changed the committed clip); now it is ``copy_file``: a copy-on-write clone where the
filesystem has reflinks, else a copy. This writes ``--clips`` distinct WAV clips of
``--seconds`` (22050 Hz mono 16-bit, what a cloned line is after resampling) into a work
folder under ``--folder`` (default: a temporary folder on the storage root's filesystem) and
puts them into an asset folder three ways: hard links (the old way), ``copy_file`` (reflink or
copy, whatever this filesystem does) and a plain copy, each timed from a cold start of the
destination folder. Disk use: the filesystem's free-space drop (statvfs) while the copies
exist, which is the only measure that sees shared reflink extents. Also times what a re-run
now pays to verify the cache records' SHA-256 (every clip hashed once).

Everything it writes is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chara_resources.paths import copy_file
from chara_resources.work_cache import file_sha256

RATE = 22050


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def wav_header(frames: int) -> bytes:
    data = frames * 2
    return (
        b"RIFF"
        + (36 + data).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")  # PCM
        + (1).to_bytes(2, "little")  # mono
        + RATE.to_bytes(4, "little")
        + (RATE * 2).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + data.to_bytes(4, "little")
    )


def make_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` clips that differ in content (a tone with noise, the index in the samples)."""
    folder.mkdir(parents=True)
    frames = int(RATE * seconds)
    rng = np.random.default_rng(1)
    t = np.arange(frames) / RATE
    base = (0.2 * np.sin(2 * np.pi * 180 * t) + rng.normal(0, 0.01, frames)) * 32767
    base = base.astype("<i2")
    header = wav_header(frames)
    paths = []
    for i in range(count):
        base[:4] = (i & 0x7FFF, (i >> 15) & 0x7FFF, 7, 7)
        path = folder / f"line-{i:06d}.wav"
        with open(path, "wb") as f:
            f.write(header)
            f.write(base.tobytes())
        paths.append(path)
    return paths


def put(paths: list[Path], target: Path, how: str) -> tuple[float, dict[str, int]]:
    target.mkdir(parents=True)
    methods: dict[str, int] = {}
    os.sync()
    started = time.perf_counter()
    for src in paths:
        dst = target / src.name
        if how == "hard link":
            os.link(src, dst)
            used = "link"
        elif how == "copy_file":
            used = copy_file(src, dst)
        else:
            shutil.copyfile(src, dst)
            used = "copy"
        methods[used] = methods.get(used, 0) + 1
    os.sync()  # the copy is on disk, not only in the page cache
    return time.perf_counter() - started, methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=7.0)
    parser.add_argument("--folder", type=Path, default=None, help="on the filesystem to measure")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="chara-copies-", dir=args.folder))
    try:
        started = time.perf_counter()
        clips = make_clips(root / "work", args.clips, args.seconds)
        os.sync()
        size = sum(p.stat().st_size for p in clips)
        print(
            f"{len(clips)} clips of {args.seconds:g} s, {size / 1e9:.2f} GB, written in "
            f"{time.perf_counter() - started:.1f} s under {root}"
        )
        for how in ("hard link", "copy_file", "plain copy"):
            before = free_bytes(root)
            seconds, methods = put(clips, root / how.replace(" ", "-"), how)
            used = before - free_bytes(root)
            print(
                f"{how:>10}: {seconds:6.1f} s  ({len(clips) / seconds:7.0f} clips/s)  disk "
                f"{used / 1e9:5.2f} GB ({used / max(size, 1):.0%} of the clips)  via {methods}"
            )
            shutil.rmtree(root / how.replace(" ", "-"))
        started = time.perf_counter()
        for path in clips:
            file_sha256(path)
        seconds = time.perf_counter() - started
        print(
            f"   verify: {seconds:6.1f} s to hash every clip (what a re-run pays to check the "
            f"records), {size / 1e6 / seconds:.0f} MB/s"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
