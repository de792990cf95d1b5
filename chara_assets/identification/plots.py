"""A 2-D picture of the embeddings, one colour per person (matplotlib loads on first use)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .active import unit_rows


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The unit-length rows projected on their two main axes (n × 2; zeros if n < 2)."""
    x = unit_rows(vectors)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    centred = x - x.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    out = centred @ axes[:2].T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def projection_plot(vectors: np.ndarray, labels: Sequence[str], path: Path, *, title: str) -> Path:
    """Write a PNG scatter plot of :func:`pca_2d` coloured by label; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = pca_2d(vectors)
    figure = Figure(figsize=(6, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for user in sorted(set(labels)):
        mine = np.array([label == user for label in labels])
        axes.scatter(points[mine, 0], points[mine, 1], s=18, label=f"{user} ({mine.sum()})")
    axes.legend(loc="best", fontsize="small")
    axes.set_title(title, fontsize="medium")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    return path
