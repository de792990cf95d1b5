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


# --- is this speech? ------------------------------------------------------------------------

SILENCE_DB = -45.0
# Median spectral flatness of the loud frames. White noise: 0.55-0.57 (e^-γ in theory) at any
# level or length; clean speech (espeak-ng en/de/ru, festival ru, the demo voices): 0.000-0.004;
# espeak-ng speech at -21 dBFS with white noise added at -30/-25/-20 dBFS (SNR 9/4/0 dB):
# 0.21/0.37/0.49. So 0.45 refuses noise and speech drowned in it, and passes noisy speech.
MAX_FLATNESS = 0.45
_FLATNESS_FRAME = 1024


def spectral_flatness(samples: np.ndarray, rate: int, silence_db: float = SILENCE_DB) -> float:
    """Median spectral flatness (geometric / arithmetic mean of the power spectrum) of the
    loud frames: louder than ``silence_db`` and within 15 dB of the loudest (the 95th
    percentile), so that a recording's noise floor in its pauses does not count; 0.0 when
    there is no such frame."""
    frame = _FLATNESS_FRAME
    count = len(samples) // frame
    if count == 0:
        return 0.0
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    levels = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)
    loud = (levels > silence_db) & (levels > np.percentile(levels, 95) - 15.0)
    if not loud.any():
        return 0.0
    power = np.abs(np.fft.rfft(frames[loud] * np.hanning(frame), axis=1)) ** 2 + 1e-20
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return float(np.median(flatness))


def speech_problem(path: Path, *, min_s: float, max_s: float) -> str | None:
    """Why ``path`` is not usable speech, or None: unreadable, empty, not finite, shorter than
    ``min_s`` or longer than ``max_s`` seconds, silent, or noise rather than a voice.

    The message does not name the file (callers say which file and field it is). Reads the file
    whole: meant for clips and voice samples, not hours of audio."""
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        return f"cannot read audio ({_short(exc)})"
    if info.frames <= 0 or info.samplerate <= 0:
        return "the audio file is empty"
    duration = info.frames / info.samplerate
    if duration < min_s:
        return f"{duration:.2f} s long, shorter than {min_s:g} s"
    if duration > max_s:
        return f"{duration:.0f} s long, longer than {max_s:g} s"
    try:
        samples, rate = read_mono(path)
    except AudioError as exc:
        return str(exc).removeprefix(f"{path}: ")
    if not np.all(np.isfinite(samples)):
        return "not audio: the samples are not finite numbers"
    level = float(np.max(_frame_levels(samples, rate)))
    if level <= SILENCE_DB:
        return f"no sound louder than {SILENCE_DB:g} dBFS in the recording (silent)"
    flatness = spectral_flatness(samples, rate)
    if flatness > MAX_FLATNESS:
        return (
            f"noise, not speech: spectral flatness {flatness:.2f} (speech is below "
            f"{MAX_FLATNESS:g}, white noise about 0.56)"
        )
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
