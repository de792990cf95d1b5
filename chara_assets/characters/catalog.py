"""Reading the characters and users folders, with errors that name file, field and problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from chara_resources.paths import UnsafeNameError, check_slug

from .models import Character, User

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file that cannot be used; lists every problem found in it."""

    def __init__(self, file: Path, problems: list[tuple[str | None, str]]) -> None:
        self.file = file
        self.problems = problems
        lines = [f"{file}: {fld}: {msg}" if fld else f"{file}: {msg}" for fld, msg in problems]
        super().__init__("\n".join(lines))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [(None, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ConfigError(path, [(None, f"cannot read the file: {exc.strerror}")]) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [(None, f"{where}invalid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(path, [(None, f"expected a mapping of fields, found {found}")])
    return data


def _validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(part) for part in error["loc"]) or None
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field (check the spelling)"
            problems.append((loc, message))
        raise ConfigError(path, problems) from None


def _name_from_file(path: Path, data: dict[str, Any]) -> None:
    """The name defaults to the file name and, when given, must equal it."""
    try:
        stem = check_slug(path.stem, "file name")
    except UnsafeNameError as exc:
        raise ConfigError(path, [(None, f"{exc}; rename the file")]) from None
    data.setdefault("name", stem)
    if data["name"] != stem:
        raise ConfigError(path, [("name", f"{data['name']!r} differs from the file name {stem!r}")])


def load_character(path: Path) -> Character:
    """Read one character file; voice files are resolved relative to it and must exist."""
    data = _read_yaml(path)
    _name_from_file(path, data)
    character = _validate(Character, data, path)
    missing = []
    for i, clip in enumerate(character.voice_sample):
        clip.file = (path.parent / clip.file).resolve()
        if not clip.file.is_file():
            missing.append((f"voice_sample.{i}.file", f"audio file not found: {clip.file}"))
    if missing:
        raise ConfigError(path, missing)
    return character


def load_user(path: Path) -> User:
    data = _read_yaml(path)
    _name_from_file(path, data)
    return _validate(User, data, path)


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


@dataclass
class Catalog:
    """Every valid character and user, and the errors of the files that are not valid."""

    characters: dict[str, Character] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    invalid_names: set[str] = field(default_factory=set)  # file stems of broken files


def load_catalog(characters_dir: Path, users_dir: Path | None = None) -> Catalog:
    """Read all character (and user) files; a broken file is reported, the others load."""
    catalog = Catalog()
    if not characters_dir.is_dir():
        raise FileNotFoundError(f"characters folder not found: {characters_dir}")
    for path in _yaml_files(characters_dir):
        try:
            character = load_character(path)
        except ConfigError as exc:
            catalog.errors.append(exc)
            catalog.invalid_names.add(path.stem)
            continue
        catalog.characters[character.name] = character
    if users_dir is not None and users_dir.is_dir():
        for path in _yaml_files(users_dir):
            try:
                user = load_user(path)
                known = set(catalog.characters) | catalog.invalid_names
                unknown = sorted(set(user.relationships) - known)
                if unknown:
                    raise ConfigError(
                        path,
                        [
                            (f"relationships.{name}", f"no such character in {characters_dir}")
                            for name in unknown
                        ],
                    )
            except ConfigError as exc:
                catalog.errors.append(exc)
                continue
            catalog.users[user.name] = user
    return catalog
