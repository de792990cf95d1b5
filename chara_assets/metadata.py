"""Asset metadata people read in the Dagster UI: markdown tables and inline images. Every asset
builds its tables and pictures here, so they look the same everywhere."""

import base64
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, more: str = ""
) -> dg.MetadataValue:
    """A markdown table; ``|`` and line breaks in cells are escaped. ``more``: a line after it
    (e.g. "and 12 more")."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    if more:
        lines += ["", more]
    return dg.MetadataValue.md("\n".join(lines))


def png_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` of a PNG file (for metadata and self-contained HTML)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def md_image(path: Path, alt: str) -> dg.MetadataValue:
    """A PNG shown inline in the asset's metadata."""
    return dg.MetadataValue.md(f"![{alt}]({png_data_uri(path)})")
