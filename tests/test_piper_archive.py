"""The Piper training archive: layout, validation, atomic writes, check_archive, and Piper's
own data loader (piper-tts[train]) reading the extracted archive."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from chara_assets.voice.piper_archive import (
    ArchiveError,
    Clip,
    build_archive,
    check_archive,
    wav_header,
)

from .conftest import speak

SPEAKER = "kiki"
TEXTS = {
    "s001": "The quick brown fox jumps over the lazy dog.",
    "s002": '"Quoted," she said, and left.',  # a leading quote: csv quoting must round-trip
    "s003": "Grüße aus Köln, sagte sie.",  # non-ASCII: UTF-8 everywhere
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real speech: two espeak-ng WAVs (22050 Hz mono) and one made 16 kHz stereo."""
    folder = tmp_path_factory.mktemp("sources")
    paths = {cid: speak(text, folder / f"{cid}.wav") for cid, text in TEXTS.items()}
    data, rate = sf.read(paths["s003"], dtype="float32")
    assert rate == 22050
    low = soxr.resample(data, rate, 16000)
    sf.write(folder / "s003_16k.wav", np.stack([low, 0.5 * low], axis=1), 16000, "PCM_16")
    paths["s003"] = folder / "s003_16k.wav"
    return paths


@pytest.fixture
def clips(sources: dict[str, Path]) -> list[Clip]:
    return [Clip(cid, sources[cid], text) for cid, text in TEXTS.items()]


@pytest.fixture
def archive(tmp_path: Path, clips: list[Clip]) -> Path:
    dst = tmp_path / "out" / "dataset.zip"
    build_archive(clips, dst, speaker=SPEAKER)
    return dst


def test_layout_metadata_and_audio(
    tmp_path: Path, clips: list[Clip], sources: dict[str, Path]
) -> None:
    dst = tmp_path / "out" / "dataset.zip"
    stats = build_archive(iter(clips), dst, speaker=SPEAKER)  # a one-shot iterator is enough

    assert (stats.clips, stats.resampled, stats.downmixed) == (3, 1, 1)
    assert stats.size_bytes == dst.stat().st_size
    assert list(dst.parent.iterdir()) == [dst]  # no temporary file left beside it
    with zipfile.ZipFile(dst) as zf:
        names = zf.namelist()
        assert names == [f"{SPEAKER}/{cid}.{ext}" for cid in TEXTS for ext in ("wav", "txt")] + [
            f"{SPEAKER}/metadata.csv"
        ]
        rows = list(
            csv.reader(io.StringIO(zf.read(f"{SPEAKER}/metadata.csv").decode()), delimiter="|")
        )
        assert rows == [[cid, text] for cid, text in TEXTS.items()]
        # Plain LJSpeech rows where no quoting is needed.
        raw = zf.read(f"{SPEAKER}/metadata.csv").decode("utf-8")
        assert raw.splitlines()[0] == f"s001|{TEXTS['s001']}"
        total = 0.0
        for cid, text in TEXTS.items():
            assert zf.read(f"{SPEAKER}/{cid}.txt").decode("utf-8") == text
            data = zf.read(f"{SPEAKER}/{cid}.wav")
            info = sf.info(io.BytesIO(data))
            assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
            assert data[:4] == b"RIFF" and len(data) == 44 + 2 * info.frames
            total += info.frames / 22050
            source = sf.info(sources[cid])
            # Same duration after resampling (soxr keeps the length to a sample).
            assert abs(info.duration - source.duration) < 2 / 16000
        # A clip that was already right is copied sample for sample.
        copied, _ = sf.read(io.BytesIO(zf.read(f"{SPEAKER}/s001.wav")), dtype="int16")
        original, _ = sf.read(sources["s001"], dtype="int16")
        assert np.array_equal(copied, original)
        # The resampled one still carries the speech: about the level of the (mixed) source.
        resampled, _ = sf.read(io.BytesIO(zf.read(f"{SPEAKER}/s003.wav")), dtype="float32")
        source, _ = sf.read(sources["s003"], dtype="float32")
        rms = np.sqrt(np.mean(resampled**2)), np.sqrt(np.mean(source.mean(axis=1) ** 2))
        assert rms[0] == pytest.approx(rms[1], rel=0.05)
    assert stats.duration_s == pytest.approx(total)
    assert check_archive(dst) == []


def test_same_clips_same_bytes_and_deflate_option(tmp_path: Path, clips: list[Clip]) -> None:
    a = build_archive(clips, tmp_path / "a.zip", speaker=SPEAKER)
    b = build_archive(clips, tmp_path / "b.zip", speaker=SPEAKER)
    assert a.path.read_bytes() == b.path.read_bytes()
    deflated = build_archive(
        clips, tmp_path / "c.zip", speaker=SPEAKER, compression=zipfile.ZIP_DEFLATED
    )
    assert check_archive(deflated.path) == []
    with zipfile.ZipFile(deflated.path) as zf:
        assert zf.getinfo(f"{SPEAKER}/s001.wav").compress_type == zipfile.ZIP_DEFLATED


def test_other_sample_rate(tmp_path: Path, clips: list[Clip]) -> None:
    stats = build_archive(clips, tmp_path / "16k.zip", speaker=SPEAKER, sample_rate=16000)
    assert stats.resampled == 2  # the two espeak clips; the 16 kHz one only downmixed
    assert check_archive(stats.path, sample_rate=16000) == []
    problems = check_archive(stats.path)
    assert len(problems) == 3 and all("16000 Hz, expected 22050" in p for p in problems)


def _bad_clips(sources: dict[str, Path], tmp_path: Path) -> dict[str, tuple[list, str]]:
    good = Clip("ok", sources["s001"], "Fine.")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype="int16"), 22050)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    return {
        "path in id": ([good, Clip("../evil", sources["s002"], "x")], "clip id"),
        "dot in id": ([Clip("a.wav", sources["s002"], "x")], "clip id"),
        "empty id": ([Clip("", sources["s002"], "x")], "clip id"),
        "pipe": ([good, Clip("b", sources["s002"], "a|b")], "'|'"),
        "newline": ([Clip("b", sources["s002"], "two\nlines")], "line break"),
        "line separator": ([Clip("b", sources["s002"], "two\u2028lines")], "line break"),
        "carriage return": ([Clip("b", sources["s002"], "a\r")], "line break"),
        "empty text": ([Clip("b", sources["s002"], "  ")], "empty"),
        "not UTF-8": ([Clip("b", sources["s002"], "bad \udcff")], "UTF-8"),
        "duplicate": ([good, Clip("ok", sources["s002"], "Again.")], "twice"),
        "missing file": ([good, Clip("b", tmp_path / "nope.wav", "x")], "cannot read"),
        "not audio": ([Clip("b", junk, "x")], "cannot read"),
        "no samples": ([Clip("b", empty, "x")], "no samples"),
        "no clips": ([], "no clips"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "path in id",
        "dot in id",
        "empty id",
        "pipe",
        "newline",
        "line separator",
        "carriage return",
        "empty text",
        "not UTF-8",
        "duplicate",
        "missing file",
        "not audio",
        "no samples",
        "no clips",
    ],
)
def test_bad_input_raises_and_keeps_the_old_archive(
    case: str, tmp_path: Path, sources: dict[str, Path]
) -> None:
    (tmp_path / "src").mkdir()
    bad, message = _bad_clips(sources, tmp_path / "src")[case]
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "dataset.zip"
    dst.write_bytes(b"previous archive")
    with pytest.raises(ArchiveError, match=message):
        build_archive(bad, dst, speaker=SPEAKER)
    assert dst.read_bytes() == b"previous archive"
    assert list(out.iterdir()) == [dst]


@pytest.mark.parametrize("speaker", ["", "a/b", "..", "with space", "é"])
def test_bad_speaker(speaker: str, tmp_path: Path, clips: list[Clip]) -> None:
    with pytest.raises(ArchiveError, match="speaker"):
        build_archive(clips, tmp_path / "x.zip", speaker=speaker)
    assert list(tmp_path.iterdir()) == []


def test_crash_while_streaming_leaves_no_half_archive(tmp_path: Path, clips: list[Clip]) -> None:
    def crashing() -> Iterator[Clip]:
        yield clips[0]
        raise RuntimeError("the clip source died")

    with pytest.raises(RuntimeError, match="died"):
        build_archive(crashing(), tmp_path / "x.zip", speaker=SPEAKER)
    assert list(tmp_path.iterdir()) == []


# --- check_archive on broken archives -------------------------------------------------------

Entries = dict[str, bytes]


def rewrite(src: Path, dst: Path, change: Callable[[Entries], None]) -> Path:
    """Copy the archive ``src`` to ``dst`` with its entries changed in memory (small)."""
    with zipfile.ZipFile(src) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    change(entries)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return dst


def _tone_wav(rate: int, channels: int, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    frames = np.zeros((rate // 10, channels), dtype="float32") + 0.1
    subtype = {1: "PCM_U8", 2: "PCM_16", 3: "PCM_24"}[width]
    sf.write(buffer, frames, rate, subtype, format="WAV")
    return buffer.getvalue()


META = f"{SPEAKER}/metadata.csv"
BROKEN: dict[str, tuple[Callable[[Entries], None], str]] = {
    "wav without transcript": (
        lambda e: e.pop(f"{SPEAKER}/s001.txt"),
        f"{SPEAKER}/s001.wav: no transcript",
    ),
    "transcript without wav": (
        lambda e: e.pop(f"{SPEAKER}/s002.wav"),
        f"{SPEAKER}/s002.txt: no audio",
    ),
    "wrong sample rate": (
        lambda e: e.update({f"{SPEAKER}/s001.wav": _tone_wav(16000, 1)}),
        "s001.wav: sample rate 16000 Hz, expected 22050",
    ),
    "stereo": (
        lambda e: e.update({f"{SPEAKER}/s001.wav": _tone_wav(22050, 2)}),
        "s001.wav: 2 channels, expected mono",
    ),
    "24-bit": (
        lambda e: e.update({f"{SPEAKER}/s001.wav": _tone_wav(22050, 1, 3)}),
        "s001.wav: 24-bit samples",
    ),
    "not a wav": (
        lambda e: e.update({f"{SPEAKER}/s001.wav": b"RIFF nonsense"}),
        "s001.wav: not a PCM WAV",
    ),
    "truncated wav": (
        lambda e: e.update({f"{SPEAKER}/s001.wav": e[f"{SPEAKER}/s001.wav"][:-100]}),
        "s001.wav: truncated",
    ),
    "empty wav": (
        lambda e: e.update({f"{SPEAKER}/s001.wav": wav_header(0, 22050)}),
        "s001.wav: no samples",
    ),
    "metadata row missing": (
        lambda e: e.update({META: b"s001|" + TEXTS["s001"].encode() + b"\n"}),
        "metadata.csv: no row for clip 's002'",
    ),
    "metadata row without wav": (
        lambda e: e.update({META: e[META] + b"s999|Nothing.\n"}),
        "row 4: no WAV for id 's999'",
    ),
    "metadata text differs": (
        lambda e: e.update({META: e[META].replace(b"lazy", b"busy")}),
        "row 1: text differs from s001.txt",
    ),
    "metadata unquoted quote": (
        # What a naive f"{id}|{text}" writer gives: csv.reader (and so Piper) reads
        # different text.
        lambda e: e.update({META: e[META].replace(b'"""Quoted,"" she', b'"Quoted," she')}),
        "row 2: text differs from s002.txt",
    ),
    "metadata three fields": (
        lambda e: e.update({META: e[META].replace(b"s001|", b"s001|kiki|")}),
        "row 1: 3 fields",
    ),
    "metadata duplicate row": (
        lambda e: e.update({META: e[META] + e[META].splitlines(keepends=True)[0]}),
        "id 's001' listed twice",
    ),
    "no metadata": (lambda e: e.pop(META), "no metadata.csv"),
    "metadata at top level": (
        lambda e: e.update({"metadata.csv": e.pop(META)}),
        "metadata.csv: not in the form <speaker>/<file>",
    ),
    "second speaker": (
        lambda e: e.update({"boris/s001.wav": e[f"{SPEAKER}/s001.wav"]}),
        "expected one speaker folder, found 2",
    ),
    "nested folder": (
        lambda e: e.update({f"{SPEAKER}/sub/s001.wav": b""}),
        "sub/s001.wav: not in the form",
    ),
    "stray file": (lambda e: e.update({f"{SPEAKER}/notes.md": b"hi"}), "unexpected file"),
    "transcript not UTF-8": (
        lambda e: e.update({f"{SPEAKER}/s003.txt": TEXTS["s003"].encode("latin-1")}),
        "s003.txt: not UTF-8",
    ),
    "transcript with newline": (
        lambda e: e.update({f"{SPEAKER}/s001.txt": TEXTS["s001"].encode() + b"\n"}),
        "s001.txt: the text contains a line break",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_check_archive_finds(case: str, archive: Path, tmp_path: Path) -> None:
    change, expected = BROKEN[case]
    problems = check_archive(rewrite(archive, tmp_path / "broken.zip", change))
    assert any(expected in p for p in problems), problems


def test_check_archive_rewritten_copy_is_clean(archive: Path, tmp_path: Path) -> None:
    # The rewrite helper itself changes nothing that check_archive minds.
    assert check_archive(rewrite(archive, tmp_path / "copy.zip", lambda e: None)) == []


def test_check_archive_not_a_zip_and_damaged_data(archive: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"no zip here")
    assert "not a readable ZIP" in check_archive(junk)[0]
    assert "not a readable ZIP" in check_archive(tmp_path / "missing.zip")[0]
    # Flip a byte inside the stored audio: the CRC check while reading catches it.
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"{SPEAKER}/s001.wav")
    offset = info.header_offset + 30 + len(info.filename.encode()) + 1000
    data[offset] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    assert any("s001.wav: damaged entry" in p for p in check_archive(damaged))


# --- Piper's own loader -----------------------------------------------------------------------


@pytest.mark.slow
def test_piper_training_loader_reads_the_archive(archive: Path, tmp_path: Path) -> None:
    """Extract the archive and load it through piper-tts[train]'s VitsDataModule: the same
    prepare_data/setup/train_dataloader path that ``python -m piper.train fit`` runs.

    Needs ``piper-tts[train]`` (torch first, then the extra; see bench/archive.py's notes).
    """
    from piper.train.vits.dataset import VitsDataModule

    root = tmp_path / "extracted"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(root)
    module = VitsDataModule(
        csv_path=root / SPEAKER / "metadata.csv",  # audio_dir defaults to the csv's folder
        cache_dir=tmp_path / "cache",
        espeak_voice="en-us",
        config_path=tmp_path / "config.json",
        voice_name=SPEAKER,
        sample_rate=22050,
        batch_size=len(TEXTS),
        validation_split=0.0,
        num_test_examples=0,
        num_workers=0,
    )
    module.prepare_data()
    module.setup("fit")

    # Piper skips a row whose audio it cannot find (only a warning): count them all.
    assert len(module.train_dataset) == len(TEXTS)
    utterances = module.train_dataset.dataset.utts
    assert sorted(u.text for u in utterances) == sorted(TEXTS.values())

    batch = next(iter(module.train_dataloader()))
    assert batch.phoneme_ids.shape[0] == len(TEXTS)
    assert batch.audios.shape[0] == len(TEXTS)
    assert (batch.phoneme_lengths > 5).all()
    assert (batch.audio_lengths > 22050 // 2).all()  # each clip is over half a second
    assert batch.spectrograms.shape[0] == len(TEXTS)
    for row, length in zip(batch.phoneme_ids, batch.phoneme_lengths, strict=True):
        assert (row[:length] > 0).any() and (row[length:] == 0).all()
    assert float(batch.audios.abs().max()) > 0.05  # speech, not silence
