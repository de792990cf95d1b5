"""A stand-in for InsightFace in tests: no face model can be installed on this machine.

``FakeFaceEmbedderForTests.analyze(image)`` answers like InsightFace (a list of
``{bbox, embedding}``, one per face), but a "face" is a patch of saturated colour on a grey
picture (:func:`draw_faces`) and its "embedding" is the patch's colour. It lets the face path
(upload, one-face rule, labelling, Avatar upload) run on a real BrainBox with real JPEG files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from brainbox import ISelfManagingDecider

from chara_resources.paths import check_relative_file


def faces_in(path: Path) -> list[dict]:
    """Connected patches of saturated colour, each with its bbox and colour vector."""
    from PIL import Image
    from scipy import ndimage

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.25
    regions, count = ndimage.label(saturated)
    faces = []
    for index in range(1, count + 1):
        mask = regions == index
        if mask.sum() < 30:  # JPEG noise, not a face
            continue
        ys, xs = np.nonzero(mask)
        colour = rgb[mask].mean(axis=0)
        faces.append(
            {
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                "embedding": [float(v) for v in np.concatenate([colour, 1.0 - colour])],
            }
        )
    return faces


def draw_faces(path: Path, colours: list[tuple[int, int, int]], seed: int = 0) -> Path:
    """A grey 96×96 JPEG with one 24×24 patch per colour (a "face"), slightly jittered."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 96), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate(colours):
        jitter = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in colour)
        x, y = 8 + 48 * (i % 2), 8 + 48 * (i // 2)
        draw.rectangle([x, y, x + 24, y + 24], fill=jitter)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)
    return path


class FakeFaceEmbedderForTests(ISelfManagingDecider):
    """InsightFace's ``analyze(image)`` contract over :func:`faces_in` (see the module)."""

    def analyze(self, image: str) -> list[dict]:
        path = self.cache_folder / check_relative_file(image, "cache file")
        if not path.is_file():
            raise FileNotFoundError(f"no file {image!r} in the BrainBox cache")
        return faces_in(path)
