"""Reading the characters and users folders, with errors that name file, field and problem."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from chara_resources.paths import UnsafeNameError, check_slug
from chara_resources.settings import PROJECT_ROOT

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
    name = data["name"]
    if not isinstance(name, str):
        found = "nothing" if name is None else f"{type(name).__name__} {name!r}"
        raise ConfigError(
            path, [("name", f"must be text, found {found}; write {stem!r} or leave it out")]
        )
    if name != stem:
        raise ConfigError(path, [("name", f"{name!r} differs from the file name {stem!r}")])


# A zero-shot cloner wants a few seconds to half a minute of reference speech per clip.
VOICE_CLIP_MIN_S = 1.0
VOICE_CLIP_MAX_S = 60.0


def default_voice_folders() -> list[str]:
    """``CHARA_VOICE_FOLDERS``: more folders voice files may be in (separated by ``:``)."""
    return [f for f in os.environ.get("CHARA_VOICE_FOLDERS", "").split(os.pathsep) if f]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def voice_file_problem(
    path: Path, clip_file: Path, voice_folders: Sequence[Path] = (), *, check_audio: bool
) -> tuple[Path, str | None]:
    """Where a voice clip's ``file:`` of the character file ``path`` points, and what is wrong
    with it (None: nothing). The file must be inside the characters folder, the project or one
    of ``voice_folders`` (symbolic links resolved: no absolute path or ``..`` elsewhere);
    ``check_audio`` also decodes it: readable, not silent, not noise, 1 to 60 s long.

    The one check of voice files: ``chara check`` and the ``voice_sample`` asset both use it.
    """
    resolved = (path.parent / clip_file).resolve()
    allowed = [path.parent.resolve(), PROJECT_ROOT.resolve()]
    allowed += [Path(f).expanduser().resolve() for f in voice_folders]
    if not any(_inside(resolved, folder) for folder in allowed):
        return resolved, (
            f"{str(clip_file)!r} is outside the characters folder ({path.parent}) and the "
            f"project ({PROJECT_ROOT}); put the recording there or add its folder to "
            "CHARA_VOICE_FOLDERS"
        )
    if not resolved.is_file():
        return resolved, f"audio file not found: {resolved}"
    if check_audio:
        from ..voice.audio import speech_problem

        problem = speech_problem(resolved, min_s=VOICE_CLIP_MIN_S, max_s=VOICE_CLIP_MAX_S)
        if problem is not None:
            return resolved, f"{resolved}: {problem}"
    return resolved, None


def load_character(
    path: Path, *, voice_folders: Sequence[Path | str] = (), check_audio: bool = False
) -> Character:
    """Read one character file. Voice files are resolved relative to it and must exist inside
    the characters folder, the project or ``voice_folders``; with ``check_audio`` they are
    also decoded and checked (see :func:`voice_file_problem`).

    Raises:
        ConfigError: naming the file, each field and what is wrong with it.
    """
    data = _read_yaml(path)
    _name_from_file(path, data)
    character = _validate(Character, data, path)
    problems = []
    folders = [Path(f) for f in voice_folders]
    for i, clip in enumerate(character.voice_sample):
        clip.file, problem = voice_file_problem(path, clip.file, folders, check_audio=check_audio)
        if problem is not None:
            problems.append((f"voice_sample.{i}.file", problem))
    if problems:
        raise ConfigError(path, problems)
    return character


def load_user(path: Path) -> User:
    data = _read_yaml(path)
    _name_from_file(path, data)
    return _validate(User, data, path)


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def duplicate_file_error(path: Path) -> ConfigError | None:
    """``x.yaml`` next to ``x.yml``: which one counts would depend on who reads the folder."""
    twin = path.with_suffix(".yml" if path.suffix == ".yaml" else ".yaml")
    if not twin.exists():
        return None
    return ConfigError(
        path, [(None, f"{twin.name} defines {path.stem!r} too; keep one of the two files")]
    )


def find_config_file(folder: Path, name: str) -> Path | None:
    """The file of ``name`` in ``folder`` (``name.yaml`` or ``name.yml``), None if neither.

    Raises:
        ConfigError: when both exist.
    """
    path = folder / f"{name}.yaml"
    if not path.exists():
        path = path.with_suffix(".yml")
        if not path.exists():
            return None
    error = duplicate_file_error(path)
    if error is not None:
        raise error
    return path


@dataclass
class Catalog:
    """Every valid character and user, and the errors of the files that are not valid."""

    characters: dict[str, Character] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    invalid_names: set[str] = field(default_factory=set)  # file stems of broken files


def load_catalog(
    characters_dir: Path,
    users_dir: Path | None = None,
    *,
    voice_folders: Sequence[Path | str] = (),
    check_audio: bool = False,
) -> Catalog:
    """Read all character (and user) files; a broken file is reported, the others load.

    ``check_audio`` decodes every voice file (``chara check``); without it (the sensor, every
    30 s) only where they are is checked, and ``voice_sample`` decodes them when it runs.
    A user whose relationship names a broken character still loads (paraphrasing for the other
    characters goes on), and that relationship is reported as an error of the user file.
    """
    catalog = Catalog()
    if not characters_dir.is_dir():
        raise FileNotFoundError(f"characters folder not found: {characters_dir}")
    for path in _yaml_files(characters_dir):
        try:
            if (duplicate := duplicate_file_error(path)) is not None:
                raise duplicate
            character = load_character(path, voice_folders=voice_folders, check_audio=check_audio)
        except ConfigError as exc:
            catalog.errors.append(exc)
            catalog.invalid_names.add(path.stem)
            continue
        catalog.characters[character.name] = character
    if users_dir is not None and users_dir.is_dir():
        for path in _yaml_files(users_dir):
            try:
                if (duplicate := duplicate_file_error(path)) is not None:
                    raise duplicate
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
            broken = sorted(set(user.relationships) & catalog.invalid_names)
            if broken:
                catalog.errors.append(
                    ConfigError(
                        path,
                        [
                            (
                                f"relationships.{name}",
                                f"the character file of {name!r} is broken (see its error), "
                                "so this relationship is not used",
                            )
                            for name in broken
                        ],
                    )
                )
    return catalog
