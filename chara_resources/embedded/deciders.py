"""CPU deciders of the embedded BrainBox, with the production deciders' names and methods.

Each class is a thin ``brainbox.ISelfManagingDecider`` over a plain model module; models load
lazily on the first job, once per server process. Only deciders whose models can run on this
machine are here; roles without one (face embeddings) fail with a clear message.
"""

from __future__ import annotations

from brainbox import ISelfManagingDecider

# Production deciders take a language code where espeak needs a voice name.
_ESPEAK_VOICES = {"en": "en-us"}


class EspeakPhonemizer(ISelfManagingDecider):
    """``phonemize(text, language)``: per sentence, per word, IPA phonemes without stress."""

    def __init__(self) -> None:
        self._espeak = None

    def phonemize(self, text: list[str], language: str) -> list[list[list[str]]]:
        from .phonemes import EspeakPhonemes

        if self._espeak is None:
            self._espeak = EspeakPhonemes()
        if isinstance(text, str):
            text = [text]
        return self._espeak.phonemize(list(text), _ESPEAK_VOICES.get(language, language))


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
    f"{__name__}:EspeakPhonemizer",
    f"{__name__}:NoFaceModel",
]
