"""What Avatar holds for identification, as chara reads it (no Dagster, no network).

Two modalities: ``voice`` (browser recordings ``recording-<uuid>.wav`` in Avatar's cache, the
labelled set in ``resources/SpeakerIdentificationService/current/<user>/<file>``) and ``face``
(webcam frames ``webcam_<uuid>.jpg``, ``resources/UserWalkInService/current/<user>/<file>``).
Avatar's identificator also keeps ``current/base.json`` (its own vector cache); it is not a
sample.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from pydantic import BaseModel

from chara_resources.paths import UnsafeNameError, check_relative_file, check_slug

from ..annotation.log import RESERVED_LABELS


@dataclass(frozen=True)
class Modality:
    name: str
    service: str  # the Avatar service whose resources hold the labelled set
    cache_pattern: re.Pattern[str]  # media in Avatar's cache
    role: str  # the BrainBox role that embeds a sample
    method: str
    kind: str  # how the annotation service shows a sample: audio or image


MODALITIES: dict[str, Modality] = {
    "voice": Modality(
        "voice",
        "SpeakerIdentificationService",
        re.compile(r"recording-[A-Za-z0-9_-]+\.wav\Z"),
        "speaker_embedder",
        "vector",
        "audio",
    ),
    "face": Modality(
        "face",
        "UserWalkInService",
        re.compile(r"webcam_[A-Za-z0-9_-]+\.jpe?g\Z"),
        "face_embedder",
        "analyze",
        "image",
    ),
}
AVATAR_VECTOR_CACHE = "base.json"  # Avatar's own file in current/


def get_modality(name: str) -> Modality:
    """The modality called ``name``. Errors: ``ValueError`` naming the known ones."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None


def check_user(name: str) -> str:
    """A user name that may become a label and a folder on Avatar.

    Errors: ``UnsafeNameError`` for anything but ``[a-z0-9][a-z0-9_-]*`` (a ``/`` would put
    the samples into another folder) or a name the annotation service uses for its buttons.
    """
    check_slug(name, "user name")
    if name in RESERVED_LABELS:
        raise UnsafeNameError(f"user name {name!r} is reserved for an annotation button")
    return name


@dataclass(frozen=True)
class AvatarFile:
    """A sample file on Avatar: ``section`` and ``name`` as the store takes them, and its
    label when it is part of the labelled set."""

    section: str  # "cache" or "resources"
    name: str
    user: str | None = None

    @property
    def base_name(self) -> str:
        return PurePosixPath(self.name).name


class IdentificationError(ValueError):
    """A step without a usable result (nothing embedded, nobody labelled, no label)."""


class Problem(BaseModel):
    """A file or name that could not become a sample, and why."""

    name: str  # as Avatar lists it
    error: str


def cache_samples(modality: Modality, names: Iterable[str]) -> list[AvatarFile]:
    """The modality's media among Avatar's cache files (other files are not ours to read)."""
    return [
        AvatarFile("cache", name)
        for name in sorted(names)
        if "/" not in name and modality.cache_pattern.match(name)
    ]


def dataset_samples(
    modality: Modality, names: Iterable[str]
) -> tuple[list[AvatarFile], list[Problem]]:
    """The labelled set from the names under ``resources/<service>/current/`` (recursive).

    Output: the samples (``<user>/<file>``) and a problem for each file that cannot be one:
    a user name that is not allowed (``a/b/x.wav`` would be user ``a/b``) or a file name
    chara will not turn into a path. Avatar's ``base.json`` is skipped.
    """
    found, problems = [], []
    for name in sorted(names):
        if name == AVATAR_VECTOR_CACHE:
            continue
        where = f"{modality.service}/current/{name}"
        user, _, file = name.rpartition("/")
        try:
            if not user:
                raise UnsafeNameError("a sample must be in its user's folder: <user>/<file>")
            check_user(user)
            check_relative_file(file, "file name")
        except UnsafeNameError as exc:
            problems.append(Problem(name=where, error=str(exc)))
            continue
        found.append(AvatarFile("resources", where, user))
    return found, problems


def split_users(names: Sequence[str]) -> tuple[list[str], list[Problem]]:
    """Configured user names: the usable ones (sorted, unique) and a problem for each other."""
    good, problems = set(), []
    for name in names:
        try:
            good.add(check_user(name))
        except UnsafeNameError as exc:
            problems.append(Problem(name=f"user {name!r}", error=str(exc)))
    return sorted(good), problems
