"""What a test puts on the contract BrainBox so that kaia's installers find their models
installed, without downloading: one place for the voice chain's and the other tests' needs."""

from ..test_piper_training_contract import install_base_model as install_piper_base_model
from .cosy_voice import install_default_model as install_cosyvoice
from .insight_face import install_default_model as install_insightface
from .ollama_serve import install_model as install_ollama_model
from .vosk import install_whisper_vosk_model as install_vosk_whisper

__all__ = [
    "install_cosyvoice",
    "install_insightface",
    "install_ollama_model",
    "install_piper_base_model",
    "install_vosk_whisper",
]
