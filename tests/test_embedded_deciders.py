"""The embedded BrainBox's deciders, run for real through the server on speech made here."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_resources.brainbox_client import BrainBoxClient
from chara_resources.brainbox_jobs import Call, Job, run_jobs
from chara_resources.embedded.deciders import DEFAULT_DECIDERS, guess_language, vosk_models_from_env
from chara_resources.embedded.launcher import EmbeddedBrainBox
from chara_resources.work_cache import WorkCache

from .conftest import speak

SAMPLES = {
    "en": ("Hello, I am your helper and I like to talk.", "The weather is nice and warm today."),
    "de": ("Hallo, ich bin deine Helferin.", "Das Wetter ist heute schön und warm."),
    "ru": ("Привет, я твой помощник.", "Сегодня хорошая тёплая погода."),
}
VOICES = {"en": "en-us", "de": "de", "ru": "ru"}


@pytest.fixture(scope="module")
def box(tmp_path_factory, monkeypatch_module):
    folder = tmp_path_factory.mktemp("embedded")
    monkeypatch_module.setenv("CHARA_HOME", str(folder / "home"))
    server = EmbeddedBrainBox(folder / "brainbox", DEFAULT_DECIDERS)
    url = server.ensure_running()
    with BrainBoxClient(url) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _words(text: str) -> list[str]:
    return re.findall(r"[a-zäöüßа-яё]+", text.lower().replace("ё", "е"))


def _similarity(said: str, heard: list[dict]) -> float:
    """Character-level similarity of the normalised texts (word endings may differ)."""
    heard_text = " ".join(_words(" ".join(w["word"] for w in heard)))
    return difflib.SequenceMatcher(None, " ".join(_words(said)), heard_text).ratio()


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "de", "ru"])
def test_stand_in_voice_speaks_and_the_recognizer_hears_it(
    box: BrainBoxClient, tmp_path: Path, language: str
) -> None:
    reference_text, line = SAMPLES[language]
    reference = speak(reference_text, tmp_path / "reference.wav", VOICES[language])
    box.upload(f"reference-{language}.wav", reference)
    work = WorkCache(tmp_path / "work")
    quiet = {"log": lambda _: None}

    voice = f"kiki-{language}"
    registered = run_jobs(
        box,
        work.step("voice"),
        Call("StandInVoice", "train"),
        [Job({"voice": voice, "text": reference_text, "file": f"reference-{language}.wav"})],
        **quiet,
    )
    assert next(registered.records()).result == voice

    spoken = run_jobs(
        box,
        work.step("speech"),
        Call("StandInVoice", "voice_to_text"),
        [Job({"voice": voice, "text": line})],
        result_file=".wav",
        **quiet,
    )
    record = next(spoken.records())
    assert record.ok, record.error
    info = sf.info(record.files[".wav"])
    assert info.samplerate == 22050 and info.channels == 1 and info.duration > 1.0

    box.upload(f"line-{language}.wav", record.files[".wav"])
    heard = run_jobs(
        box,
        work.step("words"),
        Call("EmbeddedRecognizer", "transcribe_to_array"),
        [Job({"file": f"line-{language}.wav", "model": language})],
        **quiet,
    )
    words = next(heard.records()).result
    assert words and set(words[0]) == {"word", "start", "end", "conf"}
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and words[-1]["end"] <= info.duration + 0.1
    assert _similarity(line, words) >= 0.7, (line, [w["word"] for w in words])


@pytest.mark.slow
def test_unregistered_voice_and_missing_file_are_item_errors(box, tmp_path: Path) -> None:
    outcome = run_jobs(
        box,
        WorkCache(tmp_path).step("speech"),
        Call("StandInVoice", "voice_to_text"),
        [Job({"voice": "nobody", "text": "Hi."})],
        result_file=".wav",
        log=lambda _: None,
    )
    assert "voice 'nobody' is not registered" in next(outcome.records()).error
    missing = run_jobs(
        box,
        WorkCache(tmp_path).step("words"),
        Call("EmbeddedRecognizer", "transcribe_to_array"),
        [Job({"file": "../../etc/passwd", "model": "en"})],
        log=lambda _: None,
    )
    assert "not allowed" in next(missing.records()).error


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello! I am Kiki, your cheerful helper.", "en"),
        ("Hallo! Ich bin Kiki, deine fröhliche Helferin.", "de"),
        ("Das ist nicht mein Hund.", "de"),
        ("Добрый вечер. Меня зовут Борис.", "ru"),
    ],
)
def test_guess_language(text: str, language: str) -> None:
    assert guess_language(text) == language


def test_vosk_models_setting() -> None:
    assert vosk_models_from_env("en=/m/en, de=/m/de") == {"en": Path("/m/en"), "de": Path("/m/de")}
    assert vosk_models_from_env("") == {}
    with pytest.raises(ValueError, match="CHARA_VOSK_MODELS: 'en' must look like"):
        vosk_models_from_env("en")


@pytest.mark.slow
def test_resemblyzer_tells_voices_apart(box: BrainBoxClient, tmp_path: Path) -> None:
    clips = {
        "m-1.wav": ("en-us+m7", "The weather is nice today, let us go for a walk."),
        "m-2.wav": ("en-us+m7", "Please remind me to call my sister tomorrow morning."),
        "f-1.wav": ("en-us+f3", "The weather is nice today, let us go for a walk."),
    }
    for name, (voice, text) in clips.items():
        box.upload(name, speak(text, tmp_path / name, voice))
    outcome = run_jobs(
        box,
        WorkCache(tmp_path).step("vectors"),
        Call("Resemblyzer", "vector"),
        [Job({"file": name}) for name in clips],
        log=lambda _: None,
    )
    m1, m2, f1 = (np.array(r.result) for r in outcome.records())
    assert m1.shape == (256,) and abs(np.linalg.norm(m1) - 1) < 1e-3
    assert float(m1 @ m2) > float(m1 @ f1)  # same voice, other words beats same words, other voice


@pytest.mark.slow
def test_llama_cpp_answers_with_the_packaged_model(box: BrainBoxClient, tmp_path: Path) -> None:
    outcome = run_jobs(
        box,
        WorkCache(tmp_path).step("answers"),
        Call("LlamaCpp", "question", "smollm2-135m-instruct"),
        [Job({"prompt": "Say hello to Sam.", "system_prompt": "You are Kiki, a cheerful helper."})],
        log=lambda _: None,
    )
    answer = next(outcome.records())
    assert answer.ok, answer.error
    assert isinstance(answer.result, str) and answer.result.strip()


@pytest.mark.slow
def test_configured_vosk_model_is_used_by_the_recognizer(tmp_path: Path, monkeypatch) -> None:
    from .tiny_vosk import make_tiny_vosk_model

    vocabulary = ["alpha", "bravo", "charlie"]
    model = make_tiny_vosk_model(tmp_path / "vosk-en", vocabulary)
    monkeypatch.setenv("CHARA_VOSK_MODELS", f"en={model}")
    server = EmbeddedBrainBox(tmp_path / "brainbox", DEFAULT_DECIDERS)
    try:
        with BrainBoxClient(server.ensure_running()) as client:
            client.upload("counting.wav", speak("one, two, three", tmp_path / "c.wav"))
            outcome = run_jobs(
                client,
                WorkCache(tmp_path).step("words"),
                Call("EmbeddedRecognizer", "transcribe_to_array"),
                [Job({"file": "counting.wav", "model": "en"})],
                log=lambda _: None,
            )
    finally:
        server.stop()
    words = next(outcome.records()).result
    # The tiny model's words are garbage, but they come from its vocabulary: Vosk ran.
    assert words and {w["word"] for w in words} <= set(vocabulary)
    assert all(0 <= w["start"] < w["end"] for w in words)
