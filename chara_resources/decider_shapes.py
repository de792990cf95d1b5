"""How a role's call becomes a production decider's arguments, and its result chara's.

Assets speak in roles with plain JSON (``recognizer.transcribe_to_array(file, model)`` gives word
timings). Most deciders take and give exactly that; where kaia-brainbox 5.2.0's production
deciders differ, the difference lives here, once, keyed by decider and method (measured on kaia's
own server and container apps: tests/contract/):

* ``PiperTraining.train(parameters: PiperTrainingParameters)`` and ``export(ckpt: CkptData)`` are
  dataclass-typed; BrainBox's marshalling refuses a plain dict ("is not a dataclass") and takes
  the serialised form that kaia's task builder writes: the fields plus ``@type: dataclass`` and
  ``@subtype: <module>.<class>`` as the server imports it.
* ``Vosk.transcribe_to_array`` reads ``part['result']`` of every Vosk result part, and a final
  part with no words after the last endpoint (a clip ending in a second of silence) has none: the
  job fails with ``KeyError: 'result'``. chara calls ``transcribe`` (the raw parts) and flattens
  them itself.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .languages import PerLanguage

_PIPER_TRAINING = "brainbox.deciders.voice_generation.piper_training.app.interface"


def dataclass_form(subtype: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as kaia's marshalling serialises an instance of the dataclass ``subtype``."""
    return {**fields, "@type": "dataclass", "@subtype": subtype}


def _piper_train_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    parameters = dataclass_form(
        f"{_PIPER_TRAINING}.PiperTrainingParameters", arguments["parameters"]
    )
    return {**arguments, "parameters": parameters}


def _piper_export_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    return {**arguments, "ckpt": dataclass_form(f"{_PIPER_TRAINING}.CkptData", arguments["ckpt"])}


def vosk_words(parts: Any) -> list[dict[str, Any]]:
    """Word timings from Vosk's raw result parts; a part without words adds none."""
    if not isinstance(parts, list):
        raise ValueError(f"Vosk returned {type(parts).__name__}, not a list of result parts")
    return [word for part in parts for word in (part.get("result") or [])]


@dataclass(frozen=True)
class Shape:
    """What chara's call of one role method becomes on one decider."""

    method: str  # the decider's method
    arguments: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    result: Callable[[Any], Any] | None = None


# (decider, the role's method) -> shape
SHAPES: dict[tuple[str, str], Shape] = {
    ("PiperTraining", "train"): Shape("train", arguments=_piper_train_arguments),
    ("PiperTraining", "export"): Shape("export", arguments=_piper_export_arguments),
    ("Vosk", "transcribe_to_array"): Shape("transcribe", result=vosk_words),
}


def shape_of(decider: str, method: str) -> Shape:
    return SHAPES.get((decider, method), Shape(method))


# The model each production decider needs per language, where a role names one by language:
# kaia's PiperTraining base checkpoints, and Vosk's models (named by the language code).
PIPER_TRAINING_BASE_MODELS = PerLanguage(lambda lang: lang.piper_base_checkpoint)
# Base models per language by trainer: kaia's PiperTraining has Piper's public checkpoints;
# the embedded trainer has the packaged English voice to warm-start from (and whatever a
# person put in its base folder, named in the config).
BASE_MODELS = {
    "PiperTraining": PIPER_TRAINING_BASE_MODELS,
    "PiperTrainer": PerLanguage(lambda lang: lang.embedded_base_voice),
}


def role_models(decider: str, role: str, languages) -> list[str]:
    """The models a role's jobs will name for ``languages`` (its ``model`` argument)."""
    if decider == "Vosk":
        return list(languages)
    if decider == "PiperTraining":
        return [
            PIPER_TRAINING_BASE_MODELS[lang]
            for lang in languages
            if lang in PIPER_TRAINING_BASE_MODELS
        ]
    return []


def base_epochs(decider: str, base_model: str) -> int:
    """Epochs the base model was trained for: kaia's PiperTraining counts a checkpoint's epoch
    from there (lessac's first new checkpoint is epoch 2165); chara counts epochs trained here.
    The figures are kaia's own (PiperTrainingSettings); 0 for a model it does not list."""
    if decider != "PiperTraining":
        return 0
    from brainbox.deciders.voice_generation.piper_training.settings import (
        PiperTrainingSettings,
    )

    spec = PiperTrainingSettings.models_to_install.get(base_model)
    return int(spec.epoch) if spec is not None else 0
