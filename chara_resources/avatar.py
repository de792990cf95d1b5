"""Avatar (the assistant's character server) as a Dagster resource.

Avatar keeps media it collected in ``cache/`` and per-service data in ``resources/<Service>/``.
With ``url`` set, chara talks to the live server over HTTP; without it, a local folder with the
same layout under the storage root stands in (``$CHARA_HOME/avatar``). Protocol and layout:
docs/kaia-5.2-servers.md (*4. Avatar*).
"""

import contextlib
import hashlib
import io
import json
import pickle
import re
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import httpx
from pydantic import Field

from .http import RetryingClient, ServerError, ServerUnavailable
from .paths import atomic_write_bytes, check_relative_file, safe_join, temporary_sibling
from .pools import guard_run_pools
from .settings import chara_home

Section = Literal["cache", "resources"]
PARAPHRASE_SERVICE = "ParaphraseService"
FEEDBACK_FILE = "paraphrases-feedback.json"
_PARAPHRASE_FILE = re.compile(r"paraphrase-(\d{4,})\.pkl\Z")


class AvatarError(ServerError):
    """Avatar answered with an error, or a file on it is not what chara expects."""


class AvatarUnavailable(AvatarError, ServerUnavailable):
    """Avatar could not be reached within the retry time."""


class AvatarStore(ABC):
    """Files in Avatar's ``cache`` and ``resources`` sections, by relative name."""

    location: str

    @abstractmethod
    def list(self, section: Section, folder: str = "", *, recursive: bool = False) -> list[str]:
        """File names under ``folder`` (relative to it), sorted."""

    @abstractmethod
    def read_bytes(self, section: Section, name: str) -> bytes: ...

    @abstractmethod
    def download(self, section: Section, name: str, dst: Path) -> Path: ...

    @abstractmethod
    def upload(self, section: Section, name: str, src: Path | bytes) -> None: ...

    @abstractmethod
    def delete(self, section: Section, name: str) -> None: ...

    def is_file(self, section: Section, name: str) -> bool:
        folder, _, base = name.rpartition("/")
        return base in self.list(section, folder)

    def close(self) -> None:  # noqa: B027 - a no-op unless the store holds connections
        """Release the store's connections (a local folder has none)."""


class LocalAvatarStore(AvatarStore):
    """A folder with Avatar's layout, for when no Avatar server is configured."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def _path(self, section: Section, name: str) -> Path:
        return safe_join(self.folder / section, *check_relative_file(name, "Avatar file").parts)

    def list(self, section: Section, folder: str = "", *, recursive: bool = False) -> list[str]:
        root = self._path(section, folder) if folder else self.folder / section
        if not root.is_dir():
            return []
        found = root.rglob("*") if recursive else root.iterdir()
        return sorted(
            p.relative_to(root).as_posix()
            for p in found
            if p.is_file() and not p.name.startswith(".")
        )

    def read_bytes(self, section: Section, name: str) -> bytes:
        path = self._path(section, name)
        if not path.is_file():
            raise AvatarError(f"{self.location}: no file {section}/{name}")
        return path.read_bytes()

    def download(self, section: Section, name: str, dst: Path) -> Path:
        with temporary_sibling(dst) as tmp:
            tmp.write_bytes(self.read_bytes(section, name))
        return dst

    def upload(self, section: Section, name: str, src: Path | bytes) -> None:
        data = src if isinstance(src, bytes) else src.read_bytes()
        atomic_write_bytes(self._path(section, name), data)

    def delete(self, section: Section, name: str) -> None:
        self._path(section, name).unlink(missing_ok=True)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/")


class HttpAvatarStore(AvatarStore):
    """The live Avatar server (kaia-avatar 5.x storage endpoints)."""

    def __init__(
        self, url: str, *, retry_for_s: float = 60.0, on_retry: Callable[[str], None] | None = None
    ) -> None:
        self._client = RetryingClient(
            "Avatar",
            url,
            retry_for_s=retry_for_s,
            on_retry=on_retry,
            hint=" Is the Avatar server running? (CHARA_AVATAR_URL chooses it)",
            errors=(AvatarError, AvatarUnavailable),
        )
        self.location = self._client.url
        self._http = self._client.http

    def close(self) -> None:
        self._client.close()

    def _path(self, section: Section, op: str, name: str) -> str:
        return f"/{section}/{op}/{_quote(str(check_relative_file(name, 'Avatar file')))}"

    def list(self, section: Section, folder: str = "", *, recursive: bool = False) -> list[str]:
        path = f"/{section}/list/{_quote(folder)}" if folder else f"/{section}/list/"
        params = {"glob": "True"} if recursive else {}
        response = self._client.call(
            f"listing {section}/{folder}", lambda: self._http.post(path, params=params)
        )
        return sorted(response.json() or [])

    def read_bytes(self, section: Section, name: str) -> bytes:
        path = self._path(section, "open", name)
        return self._client.call(f"reading {section}/{name}", lambda: self._http.get(path)).content

    def download(self, section: Section, name: str, dst: Path) -> Path:
        path = self._path(section, "open", name)
        return self._client.download(f"downloading {section}/{name}", path, dst)

    def upload(self, section: Section, name: str, src: Path | bytes) -> None:
        path = self._path(section, "upload", name)

        def send() -> httpx.Response:
            if isinstance(src, bytes):
                return self._http.post(path, content=src)
            with open(src, "rb") as f:
                return self._http.post(path, content=f)

        self._client.call(f"uploading {section}/{name}", send)

    def delete(self, section: Section, name: str) -> None:
        path = self._path(section, "delete", name)
        self._client.call(f"deleting {section}/{name}", lambda: self._http.post(path))

    def is_file(self, section: Section, name: str) -> bool:
        path = self._path(section, "is-file", name)
        response = self._client.call(f"looking up {section}/{name}", lambda: self._http.post(path))
        return bool(response.json())


# --- paraphrases ------------------------------------------------------------------------------

# Paraphrase files are pickles written by kaia-avatar. Unpickling runs code named in the file,
# so only classes from the kaia packages and plain containers are allowed: a file from a
# server we do not control cannot make chara run anything else.
_ALLOWED_MODULE_PREFIXES = ("avatar.", "grammatron.", "eaglesong.", "foundation_kaia.")
_ALLOWED_GLOBALS = {
    ("builtins", name)
    for name in ("list", "dict", "set", "frozenset", "tuple", "str", "int", "float", "bool")
} | {("copyreg", "_reconstructor"), ("builtins", "object"), ("enum", "Enum")}


class _KaiaOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        # A dotted name ("os.system") or a name a kaia module merely imports would reach
        # anything: only classes defined in the kaia packages themselves are allowed.
        if module.startswith(_ALLOWED_MODULE_PREFIXES) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__.startswith(_ALLOWED_MODULE_PREFIXES):
                return found
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a paraphrase file")


def load_paraphrase_pickle(data: bytes, source: str) -> list[Any]:
    """The list of ``ParaphraseRecord`` objects in one paraphrase file."""
    try:
        records = _KaiaOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise AvatarError(f"{source}: not a paraphrase file chara can read ({exc})") from None
    if not isinstance(records, list):
        raise AvatarError(f"{source}: expected a list of paraphrase records")
    return records


def paraphrase_files(store: AvatarStore) -> list[str]:
    """Names of the paraphrase files Avatar loads, in its loading order."""
    return [n for n in store.list("resources", PARAPHRASE_SERVICE) if _PARAPHRASE_FILE.match(n)]


def read_paraphrase_feedback(store: AvatarStore) -> dict[str, dict[str, Any]]:
    """Usage counts per record id (``{"record id": {"seen": n, ...}}``); empty if none yet."""
    name = f"{PARAPHRASE_SERVICE}/{FEEDBACK_FILE}"
    if not store.is_file("resources", name):
        return {}
    try:
        return json.loads(store.read_bytes("resources", name))
    except ValueError as exc:
        raise AvatarError(f"{store.location}: {name} is not valid JSON ({exc})") from None


def upload_paraphrase_file(store: AvatarStore, payload: bytes) -> str:
    """Upload a pickled list of records as the next free ``paraphrase-NNNN.pkl``.

    The live service loads every such file, so a broken upload must not stay: the upload is
    read back and compared, and deleted if it differs or the upload failed half-way.
    """
    numbers = [int(_PARAPHRASE_FILE.match(n).group(1)) for n in paraphrase_files(store)]
    name = f"{PARAPHRASE_SERVICE}/paraphrase-{max(numbers, default=0) + 1:04d}.pkl"
    try:
        store.upload("resources", name, payload)
        stored = store.read_bytes("resources", name)
        if hashlib.sha256(stored).digest() != hashlib.sha256(payload).digest():
            raise AvatarError(f"{store.location}: {name} differs from what was uploaded")
    except BaseException:
        _delete_quietly(store, "resources", name)
        raise
    return name


def _delete_quietly(store: AvatarStore, section: Section, name: str) -> None:
    with contextlib.suppress(AvatarError):
        store.delete(section, name)


# --- identification datasets ------------------------------------------------------------------


def replace_dataset(
    store: AvatarStore,
    service: str,
    files: Mapping[str, Path],
    *,
    now: datetime | None = None,
) -> str:
    """Make ``resources/<service>/current/`` hold exactly ``files`` (``"user/file"`` -> local
    path), first copying the current dataset to ``before_<timestamp>/`` (never deleted).

    If an upload fails, the stashed dataset is put back and the error raised, so ``current``
    is never left half-written; run it again once the cause is fixed. Returns the stash name.
    """
    for name in files:
        check_relative_file(name, "dataset file")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    current = f"{service}/current"
    stash = f"{service}/before_{stamp}"
    copy = 1
    while store.list("resources", stash, recursive=True):  # a replacement in the same second
        copy += 1
        stash = f"{service}/before_{stamp}-{copy}"
    old = store.list("resources", current, recursive=True)
    for name in old:
        data = store.read_bytes("resources", f"{current}/{name}")
        store.upload("resources", f"{stash}/{name}", data)
    if sorted(store.list("resources", stash, recursive=True)) != sorted(old):
        raise AvatarError(f"{store.location}: the copy of {current} in {stash} is incomplete")
    try:
        for name in old:
            store.delete("resources", f"{current}/{name}")
        for name, path in sorted(files.items()):
            store.upload("resources", f"{current}/{name}", path)
    except BaseException as failure:
        try:
            for name in store.list("resources", current, recursive=True):
                store.delete("resources", f"{current}/{name}")
            for name in old:
                data = store.read_bytes("resources", f"{stash}/{name}")
                store.upload("resources", f"{current}/{name}", data)
        except AvatarError as exc:
            raise AvatarError(
                f"{store.location}: replacing {current} failed ({failure}) and putting the old "
                f"dataset back failed too ({exc}); it is complete in resources/{stash}"
            ) from failure
        raise
    return stash


class AvatarResource(dg.ConfigurableResource):
    """The Avatar server (``CHARA_AVATAR_URL``) or, when empty, a local folder in its layout."""

    url: str = Field(default="", description="Avatar URL; empty: the local stand-in folder")
    local_folder: str = Field(default="", description="default $CHARA_HOME/avatar")
    retry_for_s: float = Field(
        default=60.0, ge=0.0, description="how long to retry an unreachable server"
    )
    trusted: bool = Field(
        default=False,
        description="read this server's paraphrase files: they are pickles, and loading one "
        "can run code the server chose (CHARA_AVATAR_TRUSTED=1); the local folder is trusted",
    )

    def is_trusted(self) -> bool:
        return self.trusted or not self.url

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        guard_run_pools(context)  # uploads are in pool "avatar": a killed run's slot is freed

    def store(self, context: dg.OpExecutionContext | None = None) -> AvatarStore:
        if self.url:
            on_retry = context.log.warning if context is not None else None
            return HttpAvatarStore(self.url, retry_for_s=self.retry_for_s, on_retry=on_retry)
        folder = Path(self.local_folder) if self.local_folder else chara_home() / "avatar"
        return LocalAvatarStore(folder)
