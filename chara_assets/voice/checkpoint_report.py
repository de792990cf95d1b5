"""Pure helpers of the training chain (no Dagster): the loss plot, the checkpoint listening
page, voice tars, evaluation texts and the audio checks of a voiced sample."""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chara_resources.languages import PerLanguage

# The same sentence voiced by every checkpoint, per language.
EVALUATION_TEXTS = PerLanguage(lambda lang: lang.evaluation_text)

# Losses shown in tables and plots, in this order (the trainer may report more).
MAIN_LOSSES = ("loss_g", "loss_d", "train_mel", "val_mel")


@dataclass
class AudioStats:
    duration_s: float
    rms: float
    peak: float

    @property
    def silent(self) -> bool:
        return self.rms < 1e-3 or self.peak < 1e-2


def audio_stats(path: Path) -> AudioStats:
    """Duration, RMS and peak of a WAV (mono or mixed down)."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if mono.size == 0:
        return AudioStats(0.0, 0.0, 0.0)
    return AudioStats(
        duration_s=round(mono.size / rate, 3),
        rms=round(float(np.sqrt(np.mean(mono**2))), 5),
        peak=round(float(np.abs(mono).max()), 5),
    )


def write_voice_tar(onnx: Path, config: Path, tar_path: Path, stem: str) -> Path:
    """A tar with ``<stem>.onnx`` and ``<stem>.onnx.json``: what Piper's upload takes."""
    with tarfile.open(tar_path, "w") as tar:
        tar.add(onnx, arcname=f"{stem}.onnx")
        tar.add(config, arcname=f"{stem}.onnx.json")
    return tar_path


def loss_plot(
    epochs: Sequence[int], losses: Sequence[dict[str, float]], path: Path, *, title: str
) -> Path | None:
    """A PNG of the main losses per checkpoint epoch; None when no loss was reported."""
    names = [n for n in MAIN_LOSSES if any(n in row for row in losses)]
    if not names:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        points = [(e, row[name]) for e, row in zip(epochs, losses, strict=True) if name in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#4477aa")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    return path


@dataclass
class ReportRow:
    name: str
    audio: str  # relative to the page
    text: str
    note: str = ""
    losses: dict[str, float] = field(default_factory=dict)


def checkpoint_page(path: Path, *, checkpoints: Sequence[ReportRow], **values: Any) -> Path:
    """The listening page (templates/checkpoints.html.j2) at ``path``: ``title``, ``summary``,
    the ``source`` sample (a ReportRow or None), a few ``training`` clips, then one player per
    checkpoint with its losses, and the loss ``plot``. Audio paths are relative to the page."""
    from .report import render_page

    losses = [n for n in MAIN_LOSSES if any(n in row.losses for row in checkpoints)]
    return render_page(
        path, "checkpoints.html.j2", checkpoints=checkpoints, losses=losses, **values
    )


CKPT_FIELDS = ("training_id", "version", "filename", "epoch", "steps")  # what export takes


def checkpoint_list(result: object, report_lines: list[str] | None = None) -> list[dict]:
    """The checkpoints a training job reported, sorted by epoch.

    The embedded trainer's job result is the list itself. kaia's PiperTraining streams a report
    instead: its job result names a file of JSON lines whose last non-null ``result`` is the
    list (``report_lines``: that file's lines, read by the caller). Raises ValueError when
    neither gives a list of ``{training_id, version, filename, epoch, steps}``.
    """
    import json

    found = result
    if isinstance(result, str) and report_lines is not None:
        found = None
        for line in report_lines:
            if line.strip():
                value = json.loads(line).get("result")
                if value is not None:
                    found = value
    if not isinstance(found, list) or not all(
        isinstance(c, dict) and c.keys() >= set(CKPT_FIELDS) for c in found
    ):
        raise ValueError(
            f"the trainer's result is not a list of checkpoints: {str(result)[:200]!r}"
        )
    return sorted(found, key=lambda c: int(c["epoch"]))
