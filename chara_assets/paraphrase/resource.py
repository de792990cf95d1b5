"""The templates folder as a Dagster resource."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from chara_resources.settings import PROJECT_ROOT

from .templates import TemplateLibrary, load_templates


def default_templates_dir() -> str:
    return os.environ.get("CHARA_TEMPLATES", "templates")


class TemplateFolder(dg.ConfigurableResource):
    """Where the reply templates live (``CHARA_TEMPLATES``; relative: from the project)."""

    templates_dir: str = Field(
        default_factory=default_templates_dir, description="folder of template YAML files"
    )

    @property
    def path(self) -> Path:
        path = Path(self.templates_dir).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    def load(self) -> TemplateLibrary:
        return load_templates(self.path)
