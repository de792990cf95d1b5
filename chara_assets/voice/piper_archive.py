"""Package verified clips as a ZIP that Piper training reads, built by streaming.

Layout (one speaker folder, nothing at the top level)::

    <speaker>/<id>.wav       22050 Hz (by default) mono 16-bit PCM
    <speaker>/<id>.txt       the transcript, UTF-8, no trailing newline
    <speaker>/metadata.csv   LJSpeech-style ``id|text`` rows, one per clip

Why this layout:

* The BrainBox PiperTraining decider splits every entry name into exactly
  ``character/filename`` and reads ``<id>.txt`` beside each ``<id>.wav``; an entry at the
  top level (say ``metadata.csv``) would make it fail, one in the speaker folder that is
  not a ``.wav`` is skipped.
* Piper's own data module (``piper.train`` in ``piper-tts[train]``) takes ``csv_path`` and
  an ``audio_dir`` that defaults to the csv's folder, and finds ``<audio_dir>/<id>`` or
  ``<audio_dir>/<id>.wav``. With metadata.csv inside the speaker folder, the extracted
  archive loads with ``csv_path=<root>/<speaker>/metadata.csv`` and nothing else.
* Piper reads metadata.csv with ``csv.reader(delimiter="|")`` (default quoting), so rows are
  written with ``csv.writer``: a text with a ``"`` is quoted and reads back exactly; other
  rows are plain ``id|text``.

Memory does not grow with the clips' audio: one clip is read, converted and written at a
time, metadata rows are spooled to a temporary file. What does grow is small: zipfile keeps
one ZipInfo per entry (a few hundred bytes) to write the central directory at the end.
"""

from __future__ import annotations

import csv
import io
import os
import re
import struct
import tempfile
import unicodedata
import wave
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr

METADATA = "metadata.csv"
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
# Safe in any file system and URL, and free of dots: the decider derives the transcript name
# with name.replace(".wav", ".txt"), and Piper tries "<id>" before "<id>.wav".
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# A fixed time stamp: the same clips give byte-identical archives.
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class ArchiveError(ValueError):
    """A clip, id, text or speaker name that cannot go into a Piper archive."""


class Clip(NamedTuple):
    """One verified clip: ``id`` becomes the file stem, ``wav`` is any libsndfile-readable
    audio file (any rate, any channel count), ``text`` is its transcript."""

    id: str
    wav: Path
    text: str


@dataclass(frozen=True)
class ArchiveStats:
    """What :func:`build_archive` wrote."""

    path: Path
    clips: int
    resampled: int  # clips whose source rate differed from the archive's
    downmixed: int  # clips that had more than one channel
    duration_s: float  # total audio duration after conversion
    size_bytes: int  # size of the ZIP file


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a safe clip id or speaker name; raise ArchiveError if not."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ArchiveError(
            f"{what} {value!r}: use 1-128 letters, digits, '_' or '-' (first a letter or digit)"
        )
    return value


def text_problem(text: object) -> str | None:
    """Why ``text`` cannot be a transcript in metadata.csv, or None when it can."""
    if not isinstance(text, str):
        return f"is not a string ({type(text).__name__})"
    if not text.strip():
        return "is empty"
    if "|" in text:
        return "contains '|', the metadata.csv field separator"
    # Readers differ on which characters end a line: refuse all that str.splitlines() breaks
    # at, and every other control character too.
    if any(c in _LINE_BREAKS or unicodedata.category(c) == "Cc" for c in text):
        return "contains a line break or control character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (lone surrogate)"
    return None


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
    info.external_attr = 0o644 << 16  # rw-r--r-- when extracted on Unix
    return info


def wav_header(frames: int, sample_rate: int, channels: int = 1) -> bytes:
    """The 44-byte header of a plain PCM 16-bit WAV with ``frames`` frames."""
    data = frames * channels * SAMPLE_WIDTH
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        sample_rate,
        sample_rate * channels * SAMPLE_WIDTH,
        channels * SAMPLE_WIDTH,
        8 * SAMPLE_WIDTH,
        b"data",
        data,
    )


def _pcm16(clip: Clip, sample_rate: int) -> tuple[np.ndarray, bool, bool]:
    """The clip as mono int16 at ``sample_rate``; also whether it was resampled, downmixed."""
    try:
        info = sf.info(str(clip.wav))
        if info.samplerate == sample_rate and info.channels == 1 and info.subtype == "PCM_16":
            # Already right: copy the samples bit for bit, no float round trip.
            pcm = sf.read(str(clip.wav), dtype="int16", always_2d=True)[0][:, 0]
            return np.ascontiguousarray(pcm, dtype="<i2"), False, False  # WAV is little-endian
        data, rate = sf.read(str(clip.wav), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ArchiveError(f"clip {clip.id}: cannot read {clip.wav} ({exc})") from None
    if data.shape[0] == 0:
        raise ArchiveError(f"clip {clip.id}: {clip.wav} has no samples")
    downmixed = data.shape[1] > 1
    mono = data.mean(axis=1) if downmixed else data[:, 0]
    if not np.isfinite(mono).all():
        raise ArchiveError(f"clip {clip.id}: {clip.wav} has NaN or infinite samples")
    resampled = rate != sample_rate
    if resampled:
        mono = soxr.resample(mono, rate, sample_rate)  # default HQ quality
    # Resampling can overshoot full scale; clip instead of letting int16 wrap around.
    pcm = np.round(np.clip(mono, -1.0, 32767 / 32768) * 32768).astype("<i2")
    return pcm, resampled, downmixed


def build_archive(
    clips: Iterable[Clip],
    dst: Path,
    *,
    speaker: str,
    sample_rate: int = 22050,
    compression: int = zipfile.ZIP_STORED,
) -> ArchiveStats:
    """Write ``clips`` into the ZIP ``dst`` (layout in the module docstring), one at a time.

    Inputs: ``clips`` is consumed once (a generator is fine); ``speaker`` names the folder;
    each clip's audio is downmixed to mono, resampled with soxr to ``sample_rate`` and
    written as 16-bit PCM. ``compression`` is a zipfile constant; ZIP_STORED by default
    because deflate saves little on PCM speech and costs much time (see bench/archive.py).

    Output: the archive is written to a temporary file beside ``dst`` and renamed over it
    only when complete, so a crash never leaves a half archive at ``dst``. Returns counts,
    the total duration and the file size.

    Errors: ArchiveError (a ValueError) for a bad speaker name, clip id (see
    :func:`check_name`), duplicate id, bad text (see :func:`text_problem`), unreadable or
    empty audio, or no clips at all; OSError from the file system. Nothing is left behind.
    """
    check_name(speaker, "speaker")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ArchiveError(f"sample rate {sample_rate!r} is not a positive integer")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    tmp = Path(tmp_name)
    count = resampled = downmixed = frames_total = 0
    try:
        with (
            os.fdopen(fd, "w+b") as raw,
            zipfile.ZipFile(raw, "w", compression=compression) as zf,
            tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as rows,
        ):
            # Same dialect as Piper's csv.reader(delimiter="|"), one "\n" per row.
            metadata = csv.writer(rows, delimiter="|", lineterminator="\n")
            for clip in clips:
                clip = Clip(clip[0], Path(clip[1]), clip[2])
                check_name(clip.id, "clip id")
                problem = text_problem(clip.text)
                if problem:
                    raise ArchiveError(f"clip {clip.id}: text {problem}")
                wav_name = f"{speaker}/{clip.id}.wav"
                # zipfile's own index of names: no extra set of ids to keep.
                if wav_name in zf.NameToInfo:
                    raise ArchiveError(f"clip {clip.id}: the id occurs twice")
                pcm, was_resampled, was_downmixed = _pcm16(clip, sample_rate)
                if pcm.size == 0:
                    raise ArchiveError(f"clip {clip.id}: {clip.wav} has no samples")
                info = _entry(wav_name)
                info.compress_type = compression
                info.file_size = 44 + pcm.nbytes  # lets zipfile pick ZIP64 up front if needed
                with zf.open(info, "w") as out:
                    out.write(wav_header(pcm.size, sample_rate))
                    out.write(memoryview(pcm).cast("B"))
                zf.writestr(
                    _entry(f"{speaker}/{clip.id}.txt"), clip.text.encode("utf-8"), compression
                )
                metadata.writerow([clip.id, clip.text])
                count += 1
                resampled += was_resampled
                downmixed += was_downmixed
                frames_total += pcm.size
            if count == 0:
                raise ArchiveError("no clips to archive")
            rows.seek(0)
            info = _entry(f"{speaker}/{METADATA}")
            info.compress_type = zipfile.ZIP_DEFLATED  # text: deflate pays off here
            with zf.open(info, "w") as out:
                while chunk := rows.read(_CHUNK):
                    out.write(chunk.encode("utf-8"))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())  # the rename must not point at unwritten blocks
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the archive is not secret
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ArchiveStats(
        path=dst,
        clips=count,
        resampled=resampled,
        downmixed=downmixed,
        duration_s=frames_total / sample_rate,
        size_bytes=dst.stat().st_size,
    )


def _check_wav(zf: zipfile.ZipFile, info: zipfile.ZipInfo, sample_rate: int) -> list[str]:
    """Problems of one WAV entry; reads it to the end so that zipfile checks its CRC."""
    name = info.filename
    problems = []
    try:
        with zf.open(info) as stream:
            head = io.BytesIO(stream.read(4096))
            try:
                with wave.open(head) as wav:
                    channels, width = wav.getnchannels(), wav.getsampwidth()
                    rate, frames = wav.getframerate(), wav.getnframes()
                    data_start = head.tell()  # wave stops right after the data chunk header
            except (wave.Error, EOFError) as exc:
                return [f"{name}: not a PCM WAV ({exc})"]
            if rate != sample_rate:
                problems.append(f"{name}: sample rate {rate} Hz, expected {sample_rate}")
            if channels != 1:
                problems.append(f"{name}: {channels} channels, expected mono")
            if width != SAMPLE_WIDTH:
                problems.append(f"{name}: {8 * width}-bit samples, expected 16-bit")
            if frames == 0:
                problems.append(f"{name}: no samples")
            elif data_start + frames * channels * width > info.file_size:
                problems.append(f"{name}: truncated (the header announces more samples)")
            while stream.read(_CHUNK):
                pass
    except zipfile.BadZipFile as exc:
        problems.append(f"{name}: damaged entry ({exc})")
    return problems


def check_archive(path: Path, *, sample_rate: int = 22050) -> list[str]:
    """Problems that would stop Piper training on the archive at ``path``; [] means OK.

    Checks: a readable ZIP; every entry is ``<speaker>/<file>`` in one single speaker folder;
    every ``<id>.wav`` has its ``<id>.txt`` and vice versa; ids and texts are valid; WAVs are
    ``sample_rate`` Hz mono 16-bit PCM with samples and intact data (CRC); metadata.csv,
    read the way Piper reads it, has exactly one ``id|text`` row per clip, with the text of
    its .txt. Never raises for a bad archive: every problem is a line in the result.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"{path}: not a readable ZIP archive ({exc})"]
    problems: list[str] = []
    with zf:
        speakers: set[str] = set()
        wavs: dict[str, zipfile.ZipInfo] = {}
        txts: dict[str, zipfile.ZipInfo] = {}
        metadata: zipfile.ZipInfo | None = None
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                problems.append(f"{info.filename}: not in the form <speaker>/<file>")
                continue
            speaker, filename = parts
            speakers.add(speaker)
            stem, dot, ext = filename.rpartition(".")
            if filename == METADATA:
                metadata = info
            elif dot and ext in ("wav", "txt"):
                if not _ID.fullmatch(stem):
                    problems.append(f"{info.filename}: unsafe clip id {stem!r}")
                (wavs if ext == "wav" else txts)[f"{speaker}/{stem}"] = info
            else:
                problems.append(f"{info.filename}: unexpected file")
        if len(speakers) != 1:
            problems.append(
                f"expected one speaker folder, found {len(speakers)}: {sorted(speakers)}"
            )
        for key in sorted(wavs.keys() - txts.keys()):
            problems.append(f"{key}.wav: no transcript {key}.txt")
        for key in sorted(txts.keys() - wavs.keys()):
            problems.append(f"{key}.txt: no audio {key}.wav")
        for info in wavs.values():
            problems += _check_wav(zf, info, sample_rate)

        texts: dict[str, str] = {}  # clip id -> transcript, for the metadata comparison
        for key, info in txts.items():
            try:
                text = zf.read(info).decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{info.filename}: not UTF-8")
                continue
            except zipfile.BadZipFile as exc:
                problems.append(f"{info.filename}: damaged entry ({exc})")
                continue
            problem = text_problem(text)
            if problem:
                problems.append(f"{info.filename}: the text {problem}")
            texts[key.split("/", 1)[1]] = text

        if metadata is None:
            problems.append(f"no {METADATA} in the speaker folder")
            return problems
        wav_ids = {key.split("/", 1)[1] for key in wavs}
        seen: set[str] = set()
        try:
            with zf.open(metadata) as raw:
                lines = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                for number, row in enumerate(csv.reader(lines, delimiter="|"), start=1):
                    where = f"{metadata.filename} row {number}"
                    if len(row) != 2:
                        problems.append(f"{where}: {len(row)} fields, expected id|text")
                        continue
                    clip_id, text = row
                    if clip_id in seen:
                        problems.append(f"{where}: id {clip_id!r} listed twice")
                    seen.add(clip_id)
                    if clip_id not in wav_ids:
                        problems.append(f"{where}: no WAV for id {clip_id!r}")
                    elif clip_id in texts and texts[clip_id] != text:
                        problems.append(f"{where}: text differs from {clip_id}.txt")
        except (UnicodeDecodeError, csv.Error, zipfile.BadZipFile) as exc:
            problems.append(f"{metadata.filename}: unreadable ({exc})")
            return problems
        for clip_id in sorted(wav_ids - seen):
            problems.append(f"{METADATA}: no row for clip {clip_id!r}")
    return problems
