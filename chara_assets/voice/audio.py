"""Audio helpers for voice samples: reading with clear errors, levelling, concatenation.

Level is the mean RMS level of the voiced 20 ms frames in dBFS (pauses do not pull it down),
so recordings with different amounts of silence end up equally loud.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

FRAME_S = 0.02
PEAK_LIMIT = 10 ** (-1 / 20)  # -1 dBFS: head-room so levelling never clips


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """Read any libsndfile-readable file as float32 mono."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the audio file is empty")
    return data.mean(axis=1), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


def _frame_levels(samples: np.ndarray, rate: int) -> np.ndarray:
    frame = max(1, int(rate * FRAME_S))
    count = len(samples) // frame
    if count == 0:
        return np.array([20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-12)])
    frames = samples[: count * frame].reshape(count, frame)
    return 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)


def voiced_level_db(samples: np.ndarray, rate: int, silence_db: float) -> float:
    """Mean RMS level (dBFS) over frames louder than ``silence_db``."""
    levels = _frame_levels(samples, rate)
    voiced = levels[levels > silence_db]
    if voiced.size == 0:
        return float("-inf")
    rms = np.sqrt(np.mean(10 ** (voiced / 10)))
    return float(20 * np.log10(rms))


def trim_silence(samples: np.ndarray, rate: int, silence_db: float, pad_s: float = 0.1):
    """Cut leading and trailing frames quieter than ``silence_db`` (keeping a short pad)."""
    levels = _frame_levels(samples, rate)
    loud = np.flatnonzero(levels > silence_db)
    if loud.size == 0:
        return samples[:0]
    frame = max(1, int(rate * FRAME_S))
    pad = int(rate * pad_s)
    start = max(0, loud[0] * frame - pad)
    end = min(len(samples), (loud[-1] + 1) * frame + pad)
    return samples[start:end]


@dataclass
class LevelledClip:
    source_rate: int
    duration_s: float
    level_before_db: float
    level_db: float
    gain_db: float
    peak_limited: bool


def level_clip(
    src: Path, dst: Path, *, sample_rate: int, target_db: float, silence_db: float = -45.0
) -> LevelledClip:
    """Write ``src`` as mono 16-bit WAV at ``sample_rate`` with edges trimmed and the voiced
    level at ``target_db`` (lower if that would clip). Raises AudioError naming ``src``."""
    samples, rate = read_mono(src)
    samples = resample(samples, rate, sample_rate)
    samples = trim_silence(samples, sample_rate, silence_db)
    if samples.size == 0:
        raise AudioError(f"{src}: no sound louder than {silence_db} dBFS in the recording")
    before = voiced_level_db(samples, sample_rate, silence_db)
    gain = 10 ** ((target_db - before) / 20)
    peak = float(np.max(np.abs(samples))) * gain
    limited = peak > PEAK_LIMIT
    if limited:
        gain *= PEAK_LIMIT / peak
    out = (samples * gain).astype(np.float32)
    sf.write(dst, out, sample_rate, subtype="PCM_16", format="WAV")
    after = voiced_level_db(out, sample_rate, silence_db + 20 * np.log10(gain))
    return LevelledClip(
        source_rate=rate,
        duration_s=round(len(out) / sample_rate, 3),
        level_before_db=round(before, 2),
        level_db=round(after, 2),
        gain_db=round(20 * np.log10(gain), 2),
        peak_limited=limited,
    )


def concatenate(paths: Sequence[Path], dst: Path, *, sample_rate: int, gap_s: float) -> float:
    """Join WAV files (all at ``sample_rate``) with ``gap_s`` of silence, block by block so
    memory does not grow with the total length. Returns the duration in seconds."""
    gap = np.zeros(int(sample_rate * gap_s), dtype=np.float32)
    frames = 0
    with sf.SoundFile(dst, "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as out:
        for i, path in enumerate(paths):
            if i:
                out.write(gap)
                frames += len(gap)
            with sf.SoundFile(path) as src:
                if src.samplerate != sample_rate:
                    raise AudioError(f"{path}: {src.samplerate} Hz, expected {sample_rate} Hz")
                for block in src.blocks(blocksize=65536, dtype="float32", always_2d=True):
                    out.write(block.mean(axis=1))
                    frames += len(block)
    return frames / sample_rate


def as_dict(clip: LevelledClip) -> dict:
    return asdict(clip)
