"""CosyVoice's model replaced by chara's stand-in voice, which speaks the text and does NOT clone.

Loaded by tests/contract/container_app.py in kaia's CosyVoice container app before its main.py.
kaia's app (``app/model.py``) loads its model with ``cosyvoice.cli.cosyvoice.AutoModel(model_dir=
.../pretrained_models/<model>)``: a 0.5B-parameter GPU model that cannot run here. This module puts
a ``cosyvoice`` package in ``sys.modules`` whose ``AutoModel`` is :class:`StandInVoiceModel`; every
other line of kaia's app (its installer and model storage, ``service.py``, marshalling, the files
in ``/resources``) runs as it is.

What the stand-in does, method by method (the calls kaia's ``service.py`` makes):

* ``add_zero_shot_spk(prompt_text, prompt_wav, spk_id)`` / ``save_spkinfo()``: registers the voice
  id; of the reference recording only its register (a high or a low voice, by median pitch) is
  kept, as chara's embedded ``StandInVoice`` does. The registry is saved in the model folder
  (``chara-standin-spk2info.json``; CosyVoice saves ``spk2info.pt`` there), so a restarted
  container still knows the voices.
* ``inference_zero_shot`` / ``inference_cross_lingual``: speak the text with chara's stand-in
  voices (``chara_resources.embedded.speech``: Piper "joe" for English, espeak-ng for German,
  festival for Russian; the variant chosen from the voice id and register). Like CosyVoice, the
  text is cut into segments at sentence ends, grouped to about 60-80 tokens (CosyVoice's frontend
  does this with its tokenizer; here a token is a word or a punctuation mark), and each segment is
  synthesised when the generator reaches it, yielding ``{"tts_speech": tensor (1, samples)}``.
  kaia 5.2's service returns the first item only, so a text longer than one segment comes back
  cut short, as it does from the real model.
* ``inference_vc`` (voice conversion): refused; speaking text cannot stand in for it.
* ``sample_rate``: 24000 for CosyVoice 2/3 folders, 22050 for CosyVoice 1, as the real models.

``AutoModel`` tells the model generation from the folder as CosyVoice's does: the folder must hold
``cosyvoice3.yaml``, ``cosyvoice2.yaml`` or ``cosyvoice.yaml``. :func:`install_default_model`
puts what kaia's install would leave for the default model (Fun-CosyVoice3-0.5B-2512) into a
contract server's resources, without downloading anything.

``torchaudio`` (service.py saves the tensors with ``torchaudio.save``) cannot be installed next
to chara's torch 2.13 (the newest torchaudio on the registry is built for torch 2.11). Only if
``import torchaudio`` fails, an environment stand-in with just ``torchaudio.save`` is installed: it
writes with soundfile what torchaudio writes (a float32 tensor becomes a 32-bit float WAV).
"""

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "Fun-CosyVoice3-0.5B-2512"  # kaia 5.2's default (app/main.py)
SPEAKERS_FILE = "chara-standin-spk2info.json"
# The file CosyVoice's AutoModel looks for -> the model's output rate.
GENERATIONS = {"cosyvoice3.yaml": 24000, "cosyvoice2.yaml": 24000, "cosyvoice.yaml": 22050}
SEGMENT_MAX_TOKENS = 80
SEGMENT_MIN_TOKENS = 60
_SENTENCE_END = re.compile(r"(?<=[.?!;:])\s+")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def text_segments(text: str) -> list[str]:
    """``text`` cut at sentence ends into segments of about 60-80 tokens, in order.

    A sentence joins the current segment unless that segment already has more than
    ``SEGMENT_MIN_TOKENS`` and would grow past ``SEGMENT_MAX_TOKENS``; a last segment shorter
    than 20 tokens joins the one before. A text with no sentence end is one segment.
    """
    sentences = [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    segments: list[str] = []
    current = ""
    for sentence in sentences:
        joined = f"{current} {sentence}".strip()
        if (
            current
            and _tokens(joined) > SEGMENT_MAX_TOKENS
            and _tokens(current) > SEGMENT_MIN_TOKENS
        ):
            segments.append(current)
            joined = sentence
        current = joined
    if current:
        if segments and _tokens(current) < 20:
            segments[-1] = f"{segments[-1]} {current}"
        else:
            segments.append(current)
    return segments


def _tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


class StandInVoiceModel:
    """Stands where CosyVoice's model is: speaks text in chara's stand-in voices, clones nothing.

    ``model_dir`` must hold one of CosyVoice's config files (see :data:`GENERATIONS`); other
    keyword arguments of CosyVoice's AutoModel (``load_jit``, ``fp16``...) are accepted and
    ignored. Raises ``TypeError`` like AutoModel when the folder holds no model.
    """

    def __init__(self, model_dir: str, **_options: Any) -> None:
        folder = Path(model_dir)
        found = [name for name in GENERATIONS if (folder / name).is_file()]
        if not found:
            raise TypeError(
                f"No valid model type found! {folder} has none of {', '.join(GENERATIONS)} "
                "(chara's contract stand-in: install the model with "
                "tests/contract/standins/cosy_voice.py install_default_model)"
            )
        self.model_dir = folder
        self.sample_rate = GENERATIONS[found[0]]
        self._speakers_path = folder / SPEAKERS_FILE
        self._speakers: dict[str, dict[str, Any]] = {}
        if self._speakers_path.is_file():
            self._speakers = json.loads(self._speakers_path.read_text())
        self._voices = None

    def add_zero_shot_spk(self, prompt_text: str, prompt_wav: str, zero_shot_spk_id: str) -> bool:
        from chara_resources.embedded.speech import register_of

        register = register_of(Path(prompt_wav))  # ValueError naming the file if not audio
        self._speakers[zero_shot_spk_id] = {"prompt_text": prompt_text, "register": register}
        return True

    def save_spkinfo(self) -> None:
        from chara_resources.paths import atomic_write_json

        atomic_write_json(self._speakers_path, self._speakers)

    def inference_zero_shot(
        self,
        tts_text: str,
        prompt_text: str,
        prompt_wav: str | None,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ):
        yield from self._speak_segments(
            tts_text, self._speaker(zero_shot_spk_id, prompt_wav), speed
        )

    def inference_cross_lingual(
        self,
        tts_text: str,
        prompt_wav: str | None,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ):
        yield from self._speak_segments(
            tts_text, self._speaker(zero_shot_spk_id, prompt_wav), speed
        )

    def inference_vc(self, source_wav: str, prompt_wav: str, stream: bool = False, speed=1.0):
        raise NotImplementedError(
            "voice conversion (inference_vc) has no stand-in: chara's contract CosyVoice speaks "
            "text with fixed voices and cannot convert a recording"
        )

    def _speaker(self, spk_id: str, prompt_wav: str | None) -> tuple[str, str | None]:
        """(voice id, register) of a registered voice, or of the reference given directly."""
        if spk_id:
            if spk_id not in self._speakers:
                raise KeyError(f"voice {spk_id!r} is not registered (train it first)")
            return spk_id, self._speakers[spk_id].get("register")
        if prompt_wav is None:
            raise ValueError("neither a registered voice id nor a reference recording was given")
        from chara_resources.embedded.speech import register_of

        return Path(prompt_wav).stem, register_of(Path(prompt_wav))

    def _speak_segments(self, text: str, speaker: tuple[str, str | None], speed: float):
        from chara_resources.embedded.deciders import guess_language
        from chara_resources.embedded.speech import voice_variant

        language = guess_language(text)
        variant = voice_variant(*speaker)
        for segment in text_segments(text):  # lazily: kaia's service stops after the first
            yield {"tts_speech": self._speak(segment, language, variant, speed)}

    def _speak(self, text: str, language: str, variant: int, speed: float):
        import tempfile

        import soundfile
        import soxr
        import torch

        from chara_resources.embedded.speech import StandInVoices

        if self._voices is None:
            self._voices = StandInVoices()
        with tempfile.TemporaryDirectory(prefix="chara-cosy-standin-") as tmp:
            path = Path(tmp) / "segment.wav"
            self._voices.speak(text, language, path, variant=variant, speed=speed)
            audio, rate = soundfile.read(str(path), dtype="float32")
        if rate != self.sample_rate:
            audio = soxr.resample(audio, rate, self.sample_rate).astype("float32")
        return torch.from_numpy(audio).unsqueeze(0)


def AutoModel(**kwargs: Any) -> StandInVoiceModel:
    return StandInVoiceModel(**kwargs)


def install_default_model(server, model: str = DEFAULT_MODEL) -> Path:
    """Leave in a contract server's CosyVoice resources what kaia's install leaves for ``model``
    (its folder under ``pretrained_models/`` with CosyVoice's config file, and its line in
    ``installation.yaml``), without downloading. ``server`` is a ``ContractBrainBox``.

    The config file is a marker here (the real one is the model's hyperpyyaml); kaia's
    service setup (wetext in ``modelscope/``) is not needed by the stand-in and not made.
    """
    folder = server.resources("CosyVoice") / "pretrained_models" / model
    folder.mkdir(parents=True, exist_ok=True)
    config = "cosyvoice3.yaml" if "CosyVoice3" in model else "cosyvoice2.yaml"
    if model.startswith("CosyVoice-"):
        config = "cosyvoice.yaml"
    (folder / config).write_text(
        "# chara's contract stand-in for CosyVoice (tests/contract/standins/cosy_voice.py):\n"
        "# marks the model as installed; no weights, the stand-in does not clone.\n"
    )
    # kaia's install sends the model name as its spec; the spec is the folder name.
    server.record_installed("CosyVoice", {model: model})
    return folder


# --- the torchaudio environment stand-in ------------------------------------------------------

_SUBTYPES = {"float32": "FLOAT", "float64": "DOUBLE", "int32": "PCM_32", "int16": "PCM_16"}


def _torchaudio_save(
    uri,
    src,
    sample_rate: int,
    channels_first: bool = True,
    format: str | None = None,
    encoding: str | None = None,
    bits_per_sample: int | None = None,
    **_ignored: Any,
) -> None:
    """``torchaudio.save`` for WAV and FLAC, written with soundfile; the sample format follows
    the tensor's dtype as torchaudio's default does (float32 -> 32-bit float)."""
    import soundfile

    fmt = format or (Path(str(uri)).suffix.lstrip(".") if isinstance(uri, str | Path) else "")
    fmt = fmt.lower()
    if fmt not in ("wav", "flac"):
        raise ValueError(f"chara's torchaudio stand-in writes wav and flac only, not {fmt!r}")
    if encoding is not None or bits_per_sample is not None:
        raise ValueError("chara's torchaudio stand-in takes no encoding or bits_per_sample")
    data = src.detach().cpu().numpy()
    if data.ndim == 1:
        data = data[None, :] if channels_first else data[:, None]
    frames = data.T if channels_first else data
    subtype = _SUBTYPES.get(str(data.dtype))
    if subtype is None:
        raise ValueError(f"chara's torchaudio stand-in cannot save a {data.dtype} tensor")
    if fmt == "flac":
        subtype = "PCM_24" if subtype in ("FLOAT", "DOUBLE", "PCM_32") else subtype
    soundfile.write(uri, frames, int(sample_rate), subtype=subtype, format=fmt.upper())


def _install_torchaudio() -> None:
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        module = types.ModuleType("torchaudio")
        module.__doc__ = (
            "chara's environment stand-in for torchaudio (tests/contract/standins/cosy_voice.py):"
            " save() only, written with soundfile"
        )
        module.__file__ = __file__
        module.save = _torchaudio_save
        sys.modules["torchaudio"] = module


def _install() -> None:
    package = types.ModuleType("cosyvoice")
    package.__doc__ = __doc__
    package.__path__ = []  # a package, so `import cosyvoice.cli.cosyvoice` resolves
    package.__file__ = __file__
    cli = types.ModuleType("cosyvoice.cli")
    cli.__path__ = []
    cli.__file__ = __file__
    module = types.ModuleType("cosyvoice.cli.cosyvoice")
    module.__file__ = __file__
    module.AutoModel = AutoModel
    module.StandInVoiceModel = StandInVoiceModel
    package.cli = cli
    cli.cosyvoice = module
    sys.modules.update(
        {"cosyvoice": package, "cosyvoice.cli": cli, "cosyvoice.cli.cosyvoice": module}
    )
    _install_torchaudio()


if __name__.startswith("chara_contract_standin_"):  # loaded in the container, not by a test
    _install()
