"""InsightFace's face model replaced by a pixel fingerprint: one "face" per image, NOT a face model.

Loaded by tests/contract/container_app.py in kaia's InsightFace container app before its
main.py. kaia's app (``app/processing.py``) builds ``insightface.app.FaceAnalysis(name,
providers, root)``, calls ``.prepare(ctx_id, det_size)`` and, for each image cv2 decoded,
``.get(img)``, reading ``.bbox`` and ``.normed_embedding`` of every face. Its detector and ArcFace
recogniser (buffalo_l) are ONNX weights downloaded from GitHub, which cannot be had here. This
module puts an ``insightface`` package in ``sys.modules`` whose ``FaceAnalysis`` is
:class:`PixelFingerprintAnalysis`: for every image exactly one "face", the whole image, whose
embedding is the image's grey pixels downsampled to 16x32 (cv2, area interpolation), less their
mean, as a 512-d unit vector. The same image always gives the same vector and different images
give different ones; two photos of one person do not give close ones. cv2, the decoding and every
other line of kaia's app run as they are.

Like InsightFace, the model must be installed: ``<root>/models/<name>`` must be a folder (the
real one downloads ``<name>.zip`` there; this stand-in refuses instead). See
:func:`install_default_model`.
"""

import sys
import types
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "buffalo_l"  # kaia 5.2's default (app/main.py)
GRID = (32, 16)  # cv2 size (width, height): 512 values


def pixel_fingerprint(img: Any) -> Any:
    """A 512-d float32 unit vector from a BGR (or grey) uint8 image's downsampled pixels."""
    import cv2
    import numpy as np

    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    small = cv2.resize(grey, GRID, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    centred = small - small.mean()
    norm = float(np.linalg.norm(centred))
    if norm < 1e-6:  # a flat image: no pattern to normalise
        return np.full(small.size, 1.0 / np.sqrt(small.size), np.float32)
    return (centred / norm).astype(np.float32)


class StandInFace(dict):
    """InsightFace's ``Face``: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def normed_embedding(self) -> Any:
        import numpy as np

        return self["embedding"] / np.linalg.norm(self["embedding"])


class PixelFingerprintAnalysis:
    """Stands where ``insightface.app.FaceAnalysis`` is; see the module docstring."""

    def __init__(
        self, name: str = DEFAULT_MODEL, root: str = "~/.insightface", **_options: Any
    ) -> None:
        folder = Path(root).expanduser() / "models" / name
        if not folder.is_dir():
            raise RuntimeError(
                f"InsightFace model {name!r} is not installed: {folder} is missing (the real "
                "InsightFace downloads it there; chara's contract stand-in does not download: "
                "install it with tests/contract/standins/insight_face.py install_default_model)"
            )
        self.name = name
        self.det_size = (640, 640)

    def prepare(self, ctx_id: int, det_thresh: float = 0.5, det_size=(640, 640)) -> None:
        self.det_size = tuple(det_size)

    def get(self, img: Any, max_num: int = 0) -> list[StandInFace]:
        import numpy as np

        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.dtype != np.uint8:
            raise ValueError("FaceAnalysis.get takes a uint8 image array as cv2 decodes it")
        height, width = img.shape[:2]
        bbox = np.array([0, 0, width, height], dtype=np.float32)
        return [StandInFace(bbox=bbox, det_score=1.0, embedding=pixel_fingerprint(img))]


def install_default_model(server, model: str = DEFAULT_MODEL) -> Path:
    """Leave in a contract server's InsightFace resources what kaia's install leaves for
    ``model``: its folder under ``models/`` (here with a note, not weights) and its line in
    ``installation.yaml`` (kaia's spec). ``server`` is a ``ContractBrainBox``."""
    folder = server.resources("InsightFace") / "models" / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text(
        "chara's contract stand-in for InsightFace (tests/contract/standins/insight_face.py):\n"
        "marks the model as installed; no weights, the stand-in is not a face model.\n"
    )
    server.record_installed("InsightFace", {model: None})
    return folder


def _install() -> None:
    package = types.ModuleType("insightface")
    package.__doc__ = __doc__
    package.__path__ = []
    package.__file__ = __file__
    app = types.ModuleType("insightface.app")
    app.__file__ = __file__
    app.FaceAnalysis = PixelFingerprintAnalysis
    package.app = app
    sys.modules.update({"insightface": package, "insightface.app": app})


if __name__.startswith("chara_contract_standin_"):  # loaded in the container, not by a test
    _install()
