"""kaia-brainbox's own server with its production controllers, on loopback, without Docker.

    python -m tests.contract.server --port P --data DIR

The controllers are kaia's (``brainbox.deciders``: CosyVoice, Vosk, EspeakPhonemizer, Ollama,
Resemblyzer, InsightFace, PiperTraining, Piper), so is everything they do: argument marshalling,
the decider APIs that call each container app over HTTP, cache and result files. Only ``docker``
is another program (tests/contract/docker_standin.py, first on this process's PATH), which starts
each container app as a local process. ``images.json`` in the stand-in's state folder tells it
where each image's app is and which of the image's files this environment provides.
"""

import argparse
import inspect
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRODUCTION_DECIDERS = (
    "CosyVoice",
    "Vosk",
    "EspeakPhonemizer",
    "Ollama",
    "Resemblyzer",
    "InsightFace",
    "PiperTraining",
    "Piper",
)


def image_files(image: str) -> dict[str, str]:
    """Files an image has that its app calls by absolute path, from this environment."""
    bin_dir = Path(sys.executable).parent
    files = {
        "espeak_phonemizer": {"/home/app/.local/bin/espeak-phonemizer": "espeak-phonemizer"},
        "piper": {"/lsiopy/bin/piper": "piper"},
    }.get(image, {})
    found = {}
    for target, tool in files.items():
        path = bin_dir / tool
        if not path.exists():
            path = Path(shutil.which(tool) or bin_dir / tool)
        found[target] = str(path)
    standin_files = HERE / "standins" / f"{image}.files.json"
    if standin_files.is_file():  # e.g. /bin/ollama: the model server's stand-in
        for target, relative in json.loads(standin_files.read_text()).items():
            found[target] = str(HERE / "standins" / relative)
    return found


def write_images(registry, state: Path) -> None:
    images = {}
    for name in registry.get_deciders_names():
        controller = registry.get_controller(name)
        image = controller.get_image_source().get_image_name().split(":")[0]
        app = Path(inspect.getfile(type(controller))).parent / "app"
        pythonpath = HERE / "standins" / f"{image}.pythonpath"
        images[image] = {
            "decider": name,
            "app": str(app),
            "files": image_files(image),
            "pythonpath": [str(pythonpath)] if pythonpath.is_dir() else [],
        }
    state.mkdir(parents=True, exist_ok=True)
    (state / "images.json").write_text(json.dumps(images, indent=1))


def serve(port: int, folder: Path) -> None:
    import brainbox.deciders as deciders

    from chara_resources.embedded.server import serve_controllers

    state = Path(os.environ["CHARA_CONTRACT_DOCKER_STATE"])
    serve_controllers(
        port,
        folder,
        [getattr(deciders, name) for name in PRODUCTION_DECIDERS],
        on_registry=lambda registry: write_images(registry, state),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    serve(args.port, args.data)


if __name__ == "__main__":
    main()
