"""Asset values stored as a folder: a typed manifest plus the media files beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr

from .paths import check_relative_file, safe_join

MANIFEST_NAME = "manifest.json"
_KINDS: dict[str, type[FolderManifest]] = {}


class FolderManifest(BaseModel):
    """Base of every asset value that the folder IO manager stores.

    The model's fields are written to ``manifest.json``; media files live in the same folder
    and are referred to by relative name. Downstream assets receive the manifest bound to its
    folder and open files with :meth:`path`; media bytes are never pickled.
    """

    model_config = ConfigDict(extra="ignore", frozen=False)
    kind: ClassVar[str] = "FolderManifest"
    _folder: Path | None = PrivateAttr(default=None)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__
        _KINDS[cls.kind] = cls

    def bind(self, folder: Path) -> Self:
        """Attach the folder that holds (or will hold) this manifest's files."""
        self._folder = Path(folder)
        return self

    @property
    def folder(self) -> Path:
        if self._folder is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a folder yet")
        return self._folder

    def path(self, relative: str) -> Path:
        """The absolute path of a file of this asset, checked to stay inside its folder."""
        return safe_join(self.folder, *check_relative_file(relative, "file name").parts)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


_KINDS[FolderManifest.kind] = FolderManifest


def manifest_class(kind: str) -> type[FolderManifest]:
    """The registered manifest class for ``kind`` (only classes defined in our code)."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValueError(
            f"manifest kind {kind!r} is not a known asset type; known: {sorted(_KINDS)}"
        ) from None
