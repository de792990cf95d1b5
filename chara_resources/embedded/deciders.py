"""CPU deciders of the embedded BrainBox, with the production deciders' names and methods.

Each class is a thin ``brainbox.ISelfManagingDecider`` over a plain model module; models load
lazily on the first job, once per server process. Only deciders whose models can run on this
machine are here; roles without one (face embeddings) fail with a clear message.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from brainbox import ISelfManagingDecider

from ..languages import guess_language
from ..paths import atomic_write_json, check_relative_file
from ..settings import chara_home


def _cache_file(decider: ISelfManagingDecider, name: str) -> Path:
    """A file the job names in the BrainBox cache (no paths outside it)."""
    path = decider.cache_folder / check_relative_file(name, "cache file")
    if not path.is_file():
        raise FileNotFoundError(f"no file {name!r} in the BrainBox cache")
    return path


def vosk_models_from_env(value: str | None = None) -> dict[str, Path]:
    """``CHARA_VOSK_MODELS="en=/models/vosk-en,de=/models/vosk-de"`` -> language -> folder."""
    value = os.environ.get("CHARA_VOSK_MODELS", "") if value is None else value
    models = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        language, sep, folder = part.partition("=")
        if not sep or not language.strip() or not folder.strip():
            raise ValueError(f"CHARA_VOSK_MODELS: {part!r} must look like 'en=/path/to/model'")
        models[language.strip()] = Path(folder.strip())
    return models


class EmbeddedRecognizer(ISelfManagingDecider):
    """``transcribe_to_array(file, model)`` -> ``[{word, start, end, conf}]``, like Vosk.

    ``model`` is the language code. A Vosk model folder configured for the language
    (``CHARA_VOSK_MODELS``) is used when present; otherwise the models that ship in packages:
    pocketsphinx for English, Whisper base for German and Russian.
    """

    def __init__(self) -> None:
        self._recognizer = None

    def transcribe_to_array(self, file: str, model: str) -> list[dict]:
        from .recognition import Recognizer

        if self._recognizer is None:
            self._recognizer = Recognizer(
                vosk_models_from_env(), whisper_cache_dir=chara_home() / "models"
            )
        return [dict(w) for w in self._recognizer.transcribe(_cache_file(self, file), model)]


class StandInVoice(ISelfManagingDecider):
    """Plays the ``cloner`` role on this machine WITHOUT cloning anything.

    ``train(voice, text, file)`` registers a voice id (of the reference audio only its register,
    high or low, is used) and ``voice_to_text(voice, text)`` speaks with a fixed stand-in voice
    of that register chosen by the id: the
    packaged Piper voice for English, espeak-ng for German, festival (else espeak-ng) for
    Russian. It lets the voice chain run end to end on real speech; real cloning needs a GPU
    BrainBox with CosyVoice.
    """

    def __init__(self) -> None:
        self._voices = None

    def _registry(self) -> Path:
        return self.cache_folder / "stand-in-voices.json"

    def train(self, voice: str, text: str, file: str) -> str:
        from .speech import register_of

        reference = _cache_file(self, file)  # as CosyVoice: the reference must exist
        registry = json.loads(self._registry().read_text()) if self._registry().exists() else {}
        # The one thing taken from the reference: a high or a low voice (median pitch).
        registry[voice] = {"language": guess_language(text), "register": register_of(reference)}
        atomic_write_json(self._registry(), registry)
        return voice

    def voice_to_text(self, voice: str, text: str) -> str:
        from .speech import StandInVoices, voice_variant

        if self._voices is None:
            self._voices = StandInVoices()
        registry = json.loads(self._registry().read_text()) if self._registry().exists() else {}
        if voice not in registry:
            raise ValueError(f"voice {voice!r} is not registered; call train first")
        language, register = registry[voice]["language"], registry[voice].get("register")
        name = f"stand-in-{uuid.uuid4().hex}.wav"
        variant = voice_variant(voice, register)
        self._voices.speak(text, language, self.cache_folder / name, variant=variant)
        return name


class Resemblyzer(ISelfManagingDecider):
    """``vector(file)`` -> 256 floats (unit norm): the voice in one recording."""

    def __init__(self) -> None:
        self._embedder = None

    def vector(self, file: str) -> list[float]:
        from .speaker import SpeakerEmbedder

        if self._embedder is None:
            self._embedder = SpeakerEmbedder()
        return self._embedder.vector(_cache_file(self, file))


class LlamaCpp(ISelfManagingDecider):
    """``question(prompt, system_prompt)`` -> text, like Ollama; the job's ``parameter`` names
    a model that ships in a package (default SmolLM2-135M-Instruct: small, weak, but real)."""

    def __init__(self) -> None:
        self._models: dict[str, object] = {}
        self._parameter: str | None = None

    def warmup(self, parameter: str | None) -> None:
        self._parameter = parameter

    def question(self, prompt: str, system_prompt: str | None = None) -> str:
        from .llm import LocalLLM

        name = self._parameter or "smollm2-135m-instruct"
        if name not in self._models:
            self._models[name] = LocalLLM(name)
        return self._models[name].question(prompt, system_prompt)


class NoFaceModel(ISelfManagingDecider):
    """Stands where InsightFace would: no face model can be had on this machine."""

    def analyze(self, image: str) -> list:
        raise RuntimeError(
            "the embedded BrainBox has no face model (InsightFace's weights cannot be "
            "installed from a package here); point chara at a BrainBox with the InsightFace "
            "decider (CHARA_BRAINBOX_URL) to compute face embeddings"
        )


# "module:Class" of every decider the embedded server hosts by default.
DEFAULT_DECIDERS = [
    f"{__name__}:EmbeddedRecognizer",
    f"{__name__}:StandInVoice",
    f"{__name__}:Resemblyzer",
    f"{__name__}:LlamaCpp",
    f"{__name__}:NoFaceModel",
    "chara_resources.embedded.training:PiperTrainer",
    "chara_resources.embedded.training:PiperVoice",
]
