"""The characters and users folders as a Dagster resource."""

from pathlib import Path

import dagster as dg

from chara_resources.paths import check_slug
from chara_resources.settings import PROJECT_ROOT

from ..languages import Language, get_language
from ..partitions import parse_partition_key
from .catalog import Catalog, load_catalog, load_character
from .models import Character


class CharacterNotAvailable(ValueError):
    """An asset was asked for a character or language that the configuration lacks."""


class CharacterCatalog(dg.ConfigurableResource):
    """Where character and user YAML files live (relative paths: from the project folder)."""

    characters_dir: str = "characters"
    users_dir: str = "users"

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def characters_path(self) -> Path:
        return self._path(self.characters_dir)

    @property
    def users_path(self) -> Path:
        return self._path(self.users_dir)

    def load(self) -> Catalog:
        return load_catalog(self.characters_path, self.users_path)

    def character(self, name: str) -> Character:
        """Read one character's file (raises ConfigError naming the file if it is broken)."""
        check_slug(name, "character name")
        path = self.characters_path / f"{name}.yaml"
        if not path.exists():
            alternative = path.with_suffix(".yml")
            if not alternative.exists():
                raise CharacterNotAvailable(
                    f"character {name!r} has no file {path} (was it removed? its stored "
                    "data is kept)"
                )
            path = alternative
        return load_character(path)

    def for_partition(self, context: dg.AssetExecutionContext) -> tuple[Character, Language]:
        """The character and language of the running partition; fails at once for a language
        the character does not speak."""
        partition = parse_partition_key(context.partition_key)
        character = self.character(partition.character)
        if partition.language not in character.languages:
            raise CharacterNotAvailable(
                f"character {character.name!r} does not speak {partition.language!r} "
                f"(its languages: {', '.join(character.languages)}); materialize only the "
                "languages the character declares"
            )
        return character, get_language(partition.language)
