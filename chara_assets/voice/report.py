"""HTML pages and plots a person reads next to an asset (no Dagster).

Audio is linked by a path relative to the page, so the page plays its clips when the asset
folder is opened in a browser (or served by any static file server).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@dataclass
class ReportClip:
    id: str
    text: str
    audio: str  # path relative to the report page
    note: str = ""  # e.g. duration, or the rejection reason


@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("chara_assets.voice", "templates"),
        autoescape=True,  # every value is text, never markup
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render_page(path: Path, template: str, **values: Any) -> Path:
    """Write ``templates/<template>`` (pages extend ``page.html.j2``: one stylesheet, a
    ``title``, a ``summary``) with ``values``, escaped, to ``path``. Returns ``path``."""
    page = _templates().get_template(template).render(**{"summary": "", **values})
    path.write_text(page, encoding="utf-8")
    return path


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
    shown = [
        {
            "heading": heading,
            "total": len(clips),
            "shown": list(clips) if len(clips) <= sample else rng.sample(list(clips), sample),
        }
        for heading, clips in sections
    ]
    return render_page(path, "clips.html.j2", title=title, summary=summary, sections=shown)


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
