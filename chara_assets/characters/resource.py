"""The characters and users folders as a Dagster resource."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from chara_resources.languages import Language, get_language
from chara_resources.paths import check_slug
from chara_resources.settings import PROJECT_ROOT

from ..partitions import parse_partition_key
from .catalog import (
    Catalog,
    default_voice_folders,
    find_config_file,
    load_catalog,
    load_character,
)
from .models import Character


class CharacterNotAvailable(ValueError):
    """An asset was asked for a character or language that the configuration lacks."""


class CharacterCatalog(dg.ConfigurableResource):
    """Where character and user YAML files live (relative paths: from the project folder)."""

    characters_dir: str = "characters"
    users_dir: str = "users"
    voice_folders: list[str] = Field(
        default_factory=default_voice_folders,
        description="folders outside the characters folder and the project that voice files "
        "may be in (CHARA_VOICE_FOLDERS, separated by ':')",
    )

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def characters_path(self) -> Path:
        return self._path(self.characters_dir)

    @property
    def users_path(self) -> Path:
        return self._path(self.users_dir)

    @property
    def voice_paths(self) -> list[Path]:
        return [self._path(folder) for folder in self.voice_folders]

    def load(self, *, check_audio: bool = False) -> Catalog:
        """Every character and user file; ``check_audio`` also decodes every voice file."""
        return load_catalog(
            self.characters_path,
            self.users_path,
            voice_folders=self.voice_paths,
            check_audio=check_audio,
        )

    def character(self, name: str, *, check_audio: bool = False) -> Character:
        """Read one character's file (raises ConfigError naming the file if it is broken;
        ``check_audio``: its voice files are decoded and checked too)."""
        check_slug(name, "character name")
        path = find_config_file(self.characters_path, name)
        if path is None:
            raise CharacterNotAvailable(
                f"character {name!r} has no file {self.characters_path / name}.yaml (was it "
                "removed? its stored data is kept)"
            )
        return load_character(path, voice_folders=self.voice_paths, check_audio=check_audio)

    def for_partition(
        self, context: dg.AssetExecutionContext, *, check_audio: bool = False
    ) -> tuple[Character, Language]:
        """The character and language of the running partition; fails at once for a language
        the character does not speak."""
        partition = parse_partition_key(context.partition_key)
        character = self.character(partition.character, check_audio=check_audio)
        if partition.language not in character.languages:
            raise CharacterNotAvailable(
                f"character {character.name!r} does not speak {partition.language!r} "
                f"(its languages: {', '.join(character.languages)}); materialize only the "
                "languages the character declares"
            )
        return character, get_language(partition.language)
