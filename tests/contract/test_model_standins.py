"""kaia's GPU deciders on its own server and container apps, with only the model call stood in.

CosyVoice, Ollama, InsightFace and a recognising Vosk model cannot run here (GPU models, weights
from hubs); tests/contract/standins/ replaces exactly the model each container app loads
(``cosyvoice.cli.cosyvoice.AutoModel``, the ``/bin/ollama`` server, ``insightface.app.
FaceAnalysis``, ``vosk.Model`` for a marked folder) and every other line of kaia's apps runs. The
jobs go through chara's production role profile, as they would to a GPU BrainBox.
"""

import difflib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pytest
import soundfile as sf

from chara_assets.voice.verification import frame_line, normalise_words, verify_clip
from chara_resources.brainbox import BrainBoxResource
from chara_resources.brainbox_client import BrainBoxClient
from chara_resources.brainbox_jobs import Call, Job, run_jobs
from chara_resources.decider_shapes import dataclass_form
from chara_resources.embedded.launcher import free_port
from chara_resources.embedded.speech import StandInVoices
from chara_resources.work_cache import WorkCache

from ..conftest import speak
from .conftest import ContractBrainBox
from .standins import cosy_voice, insight_face, ollama_serve
from .standins import vosk as vosk_standin

OLLAMA_OPTIONS = "brainbox.deciders.text.ollama.app.interface.OllamaOptions"
VOICE = "contract-cosy"
REFERENCE_TEXT = "This is how my voice sounds when I read aloud."
SHORT_LINE = "We can go to the market in the morning and buy some fresh fruit for the children."
# Twelve sentences, about 150 tokens: more than one of CosyVoice 3's segments.
LONG_LINE = (
    "The morning was cold and the streets were still empty. "
    "A baker opened his shop and put fresh bread in the window. "
    "Two children ran past him on their way to the school. "
    "Their teacher was already waiting at the gate with a smile. "
    "Later that day the sun came out and the snow began to melt. "
    "People walked in the park and talked about the long winter. "
    "An old man fed the birds that sat on the frozen fountain. "
    "In the evening the lights of the town came on one by one. "
    "The baker closed his shop and walked home through the park. "
    "His wife had cooked a warm soup with carrots and potatoes. "
    "They ate together and listened to the radio for an hour. "
    "Then the whole family went to sleep under a heavy blanket."
)


def production(server: ContractBrainBox) -> BrainBoxResource:
    return BrainBoxResource(url=server.url, role_profile="production")


def _upload(server: ContractBrainBox, files: dict[str, Path]) -> None:
    with BrainBoxClient(server.url) as client:
        for name, path in files.items():
            client.upload(name, path)


def _words(text: str) -> list[str]:
    return normalise_words(text, "en")


def test_cosy_voice_speaks_the_text_and_returns_only_the_first_segment(
    contract_brainbox, tmp_path
) -> None:
    """CosyVoice train + voice_to_text through kaia's app: the clip says the line (chara's
    verify_clip passes it on the Whisper-backed Vosk); a long line comes back as its first
    segment only (kaia 5.2's service returns the first item CosyVoice 3 yields) and chara
    rejects it as ``truncated``."""
    cosy_voice.install_default_model(contract_brainbox)
    vosk_standin.install_whisper_vosk_model(contract_brainbox, "en")
    box, work = production(contract_brainbox), WorkCache(tmp_path)
    context = dg.build_asset_context()
    reference = speak(REFERENCE_TEXT, tmp_path / "ref.wav")
    _upload(contract_brainbox, {"chara-contract-cosy-ref.wav": reference})
    job = Job({"voice": VOICE, "text": REFERENCE_TEXT, "file": "chara-contract-cosy-ref.wav"})
    trained = next(box.run(context, work.step("register"), "cloner", "train", [job]).records())
    assert trained.ok, trained.error
    registry = contract_brainbox.resources("CosyVoice") / "pretrained_models"
    saved = json.loads((registry / cosy_voice.DEFAULT_MODEL / cosy_voice.SPEAKERS_FILE).read_text())
    assert saved[VOICE]["register"] == "low"  # espeak-ng's voice is a low one

    lines = {"short": SHORT_LINE, "long": LONG_LINE}
    jobs = [
        Job({"voice": VOICE, "text": frame_line(line, "en")}, label=name)
        for name, line in lines.items()
    ]
    voiced = box.run(
        context, work.step("voiced"), "cloner", "voice_to_text", jobs, result_file=".wav"
    )
    records = dict(zip(lines, voiced.records(), strict=True))
    assert all(r.ok for r in records.values()), [r.error for r in records.values()]
    clips = {name: record.files[".wav"] for name, record in records.items()}
    info = sf.info(clips["short"])  # what kaia's service saves: torchaudio's float WAV, 24 kHz
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "FLOAT")

    names = {name: f"chara-contract-cosy-{name}.wav" for name in lines}
    _upload(contract_brainbox, {names[n]: clips[n] for n in lines})
    heard = box.run(
        context,
        work.step("recognized"),
        "recognizer",
        "transcribe_to_array",
        [Job({"file": names[n], "model": "en"}, label=n) for n in lines],
    )
    words = {n: r.result for n, r in zip(lines, heard.records(), strict=True)}
    assert all(w is not None for w in words.values()), [r.error for r in heard.records()]

    verdict = verify_clip(clips["short"], words["short"], SHORT_LINE, "en")
    assert verdict.ok, verdict
    assert verdict.details["distance"] <= 2

    verdict = verify_clip(clips["long"], words["long"], LONG_LINE, "en")
    assert verdict.reason == "truncated", verdict
    segments = cosy_voice.text_segments(frame_line(LONG_LINE, "en"))
    assert len(segments) >= 2
    heard_long = _words(" ".join(w["word"] for w in words["long"]))
    first, last = set(_words(segments[0])), set(_words(" ".join(segments[1:])))
    assert len(set(heard_long) & (first - last)) >= 5  # the first segment's own words...
    assert "blanket" not in heard_long and "radio" not in heard_long  # ...and not the last's


def _utterances_with_silence(path: Path) -> tuple[Path, float]:
    """'the sun is warm today', 1 s of silence, 'we walk to the river', 1.5 s of silence;
    returns the file and where the second sentence starts (s)."""
    voices = StandInVoices()
    parts = []
    for i, text in enumerate(["The sun is warm today.", "We walk to the river."]):
        voices.speak(text, "en", path.with_name(f"part{i}.wav"))
        audio, rate = sf.read(path.with_name(f"part{i}.wav"), dtype="int16")
        parts.append(audio)
    silence = [np.zeros(rate, np.int16), np.zeros(int(1.5 * rate), np.int16)]
    sf.write(path, np.concatenate([parts[0], silence[0], parts[1], silence[1]]), rate, "PCM_16")
    return path, (len(parts[0]) + len(silence[0])) / rate


def test_whisper_vosk_model_answers_in_vosks_shape(contract_brainbox, tmp_path) -> None:
    """A marked model folder recognises for real (Whisper base) and kaia's service gets Vosk's
    parts: one per utterance, words with conf/end/start, and the trailing silence as a last
    part ``{"text": ""}``; another model folder is real Vosk (the tiny model's own words)."""
    vosk_standin.install_whisper_vosk_model(contract_brainbox, "en")
    tiny = ["eins", "zwei", "drei", "vier"]  # as test_brainbox_contract.py installs it
    contract_brainbox.install_vosk_model("de", tiny)
    wav, second_start = _utterances_with_silence(tmp_path / "clip.wav")
    _upload(contract_brainbox, {"chara-contract-utterances.wav": wav})
    with BrainBoxClient(contract_brainbox.url) as client:
        outcome = run_jobs(
            client,
            WorkCache(tmp_path).step("raw"),
            Call("Vosk", "transcribe"),
            [Job({"file": "chara-contract-utterances.wav", "model": m}) for m in ("en", "de")],
            log=lambda _: None,
            timeout_s=300,
        )
    whisper, real = (r.result for r in outcome.records())
    assert whisper is not None and real is not None, [r.error for r in outcome.records()]

    assert len(whisper) == 3 and whisper[2] == {"text": ""}, whisper
    for part, text in zip(
        whisper[:2], ["the sun is warm today", "we walk to the river"], strict=True
    ):
        assert list(part) == ["result", "text"]
        assert all(list(w) == ["conf", "end", "start", "word"] for w in part["result"])
        assert part["text"] == " ".join(w["word"] for w in part["result"])
        # the sentence's words (Whisper may hear "walked" for the stand-in voice's "walk")
        assert difflib.SequenceMatcher(None, part["text"], text).ratio() > 0.8, part["text"]
    times = [(w["start"], w["end"]) for part in whisper[:2] for w in part["result"]]
    assert all(s <= e for s, e in times) and times == sorted(times)
    assert whisper[1]["result"][0]["start"] > second_start - 0.3  # stream time, not utterance
    assert whisper[0]["result"][-1]["end"] < second_start - 0.5

    heard = {w["word"] for part in real for w in part.get("result", [])}
    assert heard and heard <= set(tiny)


def test_ollama_answers_with_an_installed_model_and_refuses_a_missing_one(
    contract_brainbox, tmp_path
) -> None:
    """The llm role (chara's production model name) answers through kaia's Ollama app and the
    stand-in ``ollama serve``; a model without a manifest fails with Ollama's own 404 text."""
    ollama_serve.install_model(contract_brainbox, "llama3.1:8b")
    options = dataclass_form(OLLAMA_OPTIONS, {"num_predict": 24, "temperature": 0.0, "seed": 7})
    job = Job(
        {
            "prompt": "Name one colour.",
            "system_prompt": "Answer in three words.",
            "options": options,
        }
    )
    outcome = production(contract_brainbox).run(
        dg.build_asset_context(), WorkCache(tmp_path).step("answers"), "llm", "question", [job]
    )
    record = next(outcome.records())
    assert record.ok, record.error
    assert isinstance(record.result, str) and record.result.strip()

    with BrainBoxClient(contract_brainbox.url) as client:
        missing = run_jobs(
            client,
            WorkCache(tmp_path).step("missing"),
            Call("Ollama", "question", "llama3.2:1b"),  # kaia's default, never pulled here
            [Job({"prompt": "Hello?"})],
            log=lambda _: None,
            timeout_s=300,
        )
    error = next(missing.records()).error
    assert error == '{"error":"model \\"llama3.2:1b\\" not found, try pulling it first"}'


def _image(path: Path, seed: int) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    image = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (15, 15), 0)
    assert cv2.imwrite(str(path), image)
    return path


def test_insight_face_gives_one_unit_vector_per_image(contract_brainbox, tmp_path) -> None:
    """InsightFace.analyze through kaia's app (cv2 decodes the upload): one "face" per image,
    a 512-d unit vector, equal for equal images, different for different ones."""
    insight_face.install_default_model(contract_brainbox)
    a, b = _image(tmp_path / "a.jpg", 1), _image(tmp_path / "b.jpg", 2)
    files = {"webcam_contract-a.jpg": a, "webcam_contract-a2.jpg": a, "webcam_contract-b.jpg": b}
    _upload(contract_brainbox, files)
    outcome = production(contract_brainbox).run(
        dg.build_asset_context(),
        WorkCache(tmp_path).step("faces"),
        "face_embedder",
        "analyze",
        [Job({"image": name}) for name in files],
    )
    results = [r.result for r in outcome.records()]
    assert all(r is not None for r in results), [r.error for r in outcome.records()]
    assert all(len(faces) == 1 for faces in results)
    assert all(faces[0]["bbox"] == [0, 0, 160, 120] for faces in results)
    vectors = [np.array(faces[0]["embedding"]) for faces in results]
    assert all(v.shape == (512,) and abs(np.linalg.norm(v) - 1) < 1e-6 for v in vectors)
    assert np.array_equal(vectors[0], vectors[1])
    assert float(vectors[0] @ vectors[2]) < 0.9


@pytest.fixture
def ollama_standin(tmp_path):
    """``ollama serve`` (the stand-in) on a free port with SmolLM2 installed as ``smol:1``."""

    class Folder:
        def resources(self, decider: str) -> Path:
            return tmp_path / decider

        def record_installed(self, decider: str, models: dict) -> None:
            pass

    ollama_serve.install_model(Folder(), "smol:1")
    port = free_port()
    env = {**os.environ, "OLLAMA_MODELS": str(tmp_path / "Ollama/main/models")}
    env["OLLAMA_HOST"] = f"127.0.0.1:{port}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(Path(ollama_serve.__file__)), "serve"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).text == "Ollama is running":
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url, command, env
    process.terminate()
    process.wait(10)


def test_ollama_standin_speaks_ollamas_api(ollama_standin) -> None:
    url, command, env = ollama_standin
    tags = httpx.get(f"{url}/api/tags").json()["models"]
    assert [m["name"] for m in tags] == ["smol:1"]
    assert tags[0]["details"]["format"] == "gguf" and tags[0]["size"] > 90e6
    loaded = httpx.post(f"{url}/api/generate", json={"model": "smol:1"}).json()
    assert loaded["done_reason"] == "load" and loaded["response"] == ""
    missing = httpx.post(f"{url}/api/show", json={"model": "nope"})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope' not found"})
    image = {"model": "smol:1", "messages": [{"role": "user", "content": "?", "images": ["x"]}]}
    refused = httpx.post(f"{url}/api/chat", json=image)
    assert refused.status_code == 400 and "images" in refused.json()["error"]
    assert httpx.post(f"{url}/api/chat", json={"messages": []}).json() == {
        "error": "model is required"
    }
    # the port is fixed: a second server fails at once, naming it
    second = subprocess.run([*command], env=env, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"listen tcp {env['OLLAMA_HOST']}: bind" in second.stderr
    pulled = subprocess.run([command[0], "pull", "x"], env=env, capture_output=True, text=True)
    assert pulled.returncode == 1 and "cannot pull" in pulled.stderr
