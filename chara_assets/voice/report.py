"""HTML pages and plots a person reads next to an asset (no Dagster).

Audio is linked by a path relative to the page, so the page plays its clips when the asset
folder is opened in a browser (or served by any static file server).
"""

from __future__ import annotations

import html
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ReportClip:
    id: str
    text: str
    audio: str  # path relative to the report page
    note: str = ""  # e.g. duration, or the rejection reason


def clips_page(
    path: Path,
    title: str,
    sections: Sequence[tuple[str, Sequence[ReportClip]]],
    *,
    sample: int = 20,
    seed: int = 0,
    summary: str = "",
) -> Path:
    """Write an HTML page with an audio player per clip: a random sample (seeded) of at most
    ``sample`` clips per section. Returns ``path``."""
    rng = random.Random(seed)
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td{padding:.3em .6em;vertical-align:middle}tr:nth-child(even){background:#f4f4f4}"
        "audio{height:2em}</style>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if summary:
        parts.append(f"<p>{html.escape(summary)}</p>")
    for heading, clips in sections:
        shown = list(clips) if len(clips) <= sample else rng.sample(list(clips), sample)
        parts.append(f"<h2>{html.escape(heading)} ({len(shown)} of {len(clips)})</h2><table>")
        for clip in shown:
            parts.append(
                "<tr>"
                f"<td><audio controls preload='none' src='{html.escape(clip.audio)}'></audio></td>"
                f"<td>{html.escape(clip.text)}</td><td>{html.escape(clip.note)}</td>"
                f"<td><code>{html.escape(clip.id)}</code></td></tr>"
            )
        parts.append("</table>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def duration_histogram(durations: Sequence[float], path: Path, *, title: str) -> Path:
    """A PNG histogram of clip durations (seconds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(durations, bins=min(40, max(5, len(durations) // 5)), color="#4477aa")
    axes.set_xlabel("seconds")
    axes.set_ylabel("clips")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    return path
