"""Vosk with a model that recognises: a marked model folder runs Whisper base, in Vosk's JSON.

Loaded by tests/contract/container_app.py in kaia's Vosk container app before its main.py. No
en/de/ru Vosk model can be installed from a package registry, and chara's tiny generated model
(``make_tiny_vosk_model``) decodes for real but hears garbage words. This module puts a ``vosk``
module in ``sys.modules`` that is the real ``vosk`` except for two names:

* ``Model(path)``: a folder holding :data:`MARKER` (made by :func:`install_whisper_vosk_model`)
  gives a :class:`WhisperStandInModel` (the packaged multilingual Whisper base model, run with
  faster-whisper, for the marker's language); any other folder gives real ``vosk.Model``.
* ``KaldiRecognizer(model, rate, ...)``: for a Whisper stand-in model, a
  :class:`WhisperStandInRecognizer`; otherwise real ``vosk.KaldiRecognizer``, untouched.

The stand-in recogniser takes the same calls as Vosk's (``SetWords``, ``SetPartialWords``,
``AcceptWaveform``, ``Result``, ``PartialResult``, ``FinalResult``, ``Reset``) and answers with
Vosk's JSON: ``{"result": [{"conf", "end", "start", "word"}, ...], "text": "..."}`` for an
utterance with words (``result`` only with ``SetWords(True)``), ``{"text": ""}`` for one without,
``{"partial": "..."}`` for partial results. Like Vosk, it ends an utterance at an endpoint:
``AcceptWaveform`` returns True once speech has been followed by 0.5 s of silence (or after 5 s
of silence alone, or 20 s of speech), and times count from the start of the stream. So a clip that
ends in a second of silence gives a last part ``{"text": ""}``, as real Vosk does. Silence is told
by energy (a 10 ms frame below -40 dBFS), not by an acoustic model. Words are lower-case without
punctuation, as Vosk's; ``conf`` is Whisper's word probability.
"""

import json
import sys
import types
from pathlib import Path
from typing import Any

MARKER = "chara-whisper-standin.json"
WHISPER_FOLDER = "whisper-base"
KAIA_LANGUAGES = ("en", "de", "ru")  # VoskSettings.models_to_install
_WHISPER_RATE = 16000
_FRAME_S = 0.01
_SILENCE_RMS = 0.01  # -40 dBFS
_ENDPOINT_SILENCE_S = 0.5  # after speech (Vosk's rule 2 in its usual model.conf)
_ENDPOINT_NOTHING_S = 5.0  # silence alone (Kaldi's rule 1)
_ENDPOINT_LONGEST_S = 20.0  # an utterance this long ends anyway (Kaldi's rule 5)
_LEAD_S = 0.1  # silence kept before an utterance's first loud frame


class WhisperStandInModel:
    """What ``vosk.Model(folder)`` gives for a marked folder: Whisper base for one language."""

    def __init__(self, folder: Path) -> None:
        from chara_resources.embedded.recognition import load_whisper

        self.folder = Path(folder)
        marker = json.loads((self.folder / MARKER).read_text())
        self.language = marker["language"]
        self.whisper = load_whisper(self.folder / WHISPER_FOLDER)


class WhisperStandInRecognizer:
    """``vosk.KaldiRecognizer`` for a :class:`WhisperStandInModel`: 16-bit mono PCM in, Vosk's
    result JSON out (see the module docstring for the endpoints)."""

    def __init__(self, model: WhisperStandInModel, sample_rate: float, *grammar: Any) -> None:
        if grammar:
            raise ValueError("chara's Whisper stand-in for Vosk takes no grammar")
        self.model = model
        self.sample_rate = float(sample_rate)
        self._words = False
        self._partial_words = False
        self._stream_s = 0.0  # stream time at which the current utterance starts
        self._pending: str | None = None  # an ended utterance's result, until Result()
        self._start_utterance()

    def _start_utterance(self) -> None:
        self._chunks: list[Any] = []
        self._samples = 0
        self._frame_rest: Any = None
        self._speech = False
        self._silence_s = 0.0

    # Vosk's settings
    def SetWords(self, enabled: bool) -> None:
        self._words = bool(enabled)

    def SetPartialWords(self, enabled: bool) -> None:
        self._partial_words = bool(enabled)

    def SetMaxAlternatives(self, n: int) -> None:
        if n:
            raise ValueError("chara's Whisper stand-in for Vosk gives no alternatives")

    def Reset(self) -> None:
        self._stream_s += self._samples / self.sample_rate
        self._pending = None
        self._start_utterance()

    # Decoding
    def AcceptWaveform(self, data: bytes) -> bool:
        import numpy as np

        audio = np.frombuffer(bytes(data), dtype="<i2").astype(np.float32) / 32768.0
        self._chunks.append(audio)
        self._samples += audio.size
        frame = max(1, int(self.sample_rate * _FRAME_S))
        if self._frame_rest is not None:
            audio = np.concatenate([self._frame_rest, audio])
        self._frame_rest = audio[audio.size // frame * frame :]
        for loud in _frame_rms(audio, frame) > _SILENCE_RMS:
            if loud:
                self._speech, self._silence_s = True, 0.0
            else:
                self._silence_s += _FRAME_S
        length_s = self._samples / self.sample_rate
        endpoint = (
            (self._speech and self._silence_s >= _ENDPOINT_SILENCE_S)
            or (not self._speech and self._silence_s >= _ENDPOINT_NOTHING_S)
            or length_s >= _ENDPOINT_LONGEST_S
        )
        if endpoint:
            self._pending = self._finish_utterance()
        return endpoint

    def Result(self) -> str:
        if self._pending is not None:
            result, self._pending = self._pending, None
            return result
        return self._finish_utterance()

    def FinalResult(self) -> str:
        if self._pending is not None:  # an endpoint nobody asked for: Vosk gives it now
            result, self._pending = self._pending, None
            return result
        return self._finish_utterance()

    def PartialResult(self) -> str:
        words = self._decode() if self._speech else []
        result: dict[str, Any] = {}
        if self._partial_words:
            result["partial_result"] = words
        result["partial"] = " ".join(w["word"] for w in words)
        return _vosk_json(result)

    def _decode(self) -> list[dict[str, Any]]:
        """The current utterance's words, times from the start of the stream."""
        import numpy as np
        import soxr

        from chara_resources.embedded.recognition import _whisper_words

        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        # Whisper puts the first word at the start of what it is given, however much silence
        # comes first: decode from just before the first loud frame, so times stay true.
        frame = max(1, int(self.sample_rate * _FRAME_S))
        loud = np.flatnonzero(_frame_rms(audio, frame) > _SILENCE_RMS)
        skip = max(0, int(loud[0]) - int(_LEAD_S / _FRAME_S)) * frame if loud.size else 0
        offset_s = self._stream_s + skip / self.sample_rate
        audio = audio[skip:]
        if audio.size and self.sample_rate != _WHISPER_RATE:
            audio = soxr.resample(audio, self.sample_rate, _WHISPER_RATE).astype(np.float32)
        words = _whisper_words(self.model.whisper, audio, self.model.language)
        return [
            {
                "conf": round(float(w["conf"]), 6),
                "end": round(offset_s + w["end"], 6),
                "start": round(offset_s + w["start"], 6),
                "word": w["word"],
            }
            for w in words
        ]

    def _finish_utterance(self) -> str:
        words = self._decode() if self._speech else []
        self._stream_s += self._samples / self.sample_rate
        self._start_utterance()
        if not words:
            return _vosk_json({"text": ""})
        result: dict[str, Any] = {"result": words} if self._words else {}
        result["text"] = " ".join(w["word"] for w in words)
        return _vosk_json(result)


def _frame_rms(audio: Any, frame: int) -> Any:
    """RMS of each whole ``frame``-sample frame of ``audio`` (a rest shorter than a frame is
    left out)."""
    import numpy as np

    whole = audio.size // frame * frame
    return np.sqrt((audio[:whole].reshape(-1, frame) ** 2).mean(axis=1))


def _vosk_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False)


def install_whisper_vosk_model(server, language: str) -> Path:
    """A Vosk model folder for ``language`` that the stand-in runs with Whisper base, where
    kaia's Vosk installer puts downloaded models (``resources/Vosk/models/<language>``), and
    its line in ``installation.yaml`` (kaia's spec for that language). ``server`` is a
    ``ContractBrainBox``. The packaged Whisper model is joined into the folder (145 MB, about a
    second). Raises ``ValueError`` for a language kaia's Vosk has no model for, and
    ``FileExistsError`` if the folder already holds another model."""
    from chara_resources.embedded.recognition import packaged_whisper_model

    if language not in KAIA_LANGUAGES:
        raise ValueError(
            f"kaia's Vosk installs models for {', '.join(KAIA_LANGUAGES)}, not {language!r}"
        )
    folder = server.resources("Vosk") / "models" / language
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise FileExistsError(f"{folder} holds another Vosk model; not replacing it")
    folder.mkdir(parents=True, exist_ok=True)
    packaged_whisper_model(folder)  # -> folder / WHISPER_FOLDER
    marker = {
        "what": "chara's contract stand-in: Vosk runs Whisper base on this folder "
        "(tests/contract/standins/vosk.py)",
        "language": language,
        "model": WHISPER_FOLDER,
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=1))
    server.record_installed("Vosk", {language: None})
    return folder


def _install() -> None:
    import vosk as real

    module = types.ModuleType("vosk")
    module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    module.__doc__ = __doc__
    module.__file__ = __file__

    def Model(model_path=None, model_name=None, lang=None):
        if model_path is not None and (Path(model_path) / MARKER).is_file():
            return WhisperStandInModel(Path(model_path))
        return real.Model(model_path, model_name, lang)

    def KaldiRecognizer(model, *args):
        if isinstance(model, WhisperStandInModel):
            return WhisperStandInRecognizer(model, *args)
        return real.KaldiRecognizer(model, *args)

    module.Model = Model
    module.KaldiRecognizer = KaldiRecognizer
    sys.modules["vosk"] = module


if __name__.startswith("chara_contract_standin_"):  # loaded in the container, not by a test
    _install()
