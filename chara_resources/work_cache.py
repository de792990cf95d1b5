"""Item-level work cache: each item's result is stored the moment it is computed.

Layout: ``<folder>/<step>/<item key>.json`` plus the item's files (``<item key>.wav``...).
The JSON record is written last, so its presence means the item is complete. The item key is
a hash of the item's inputs and the step's parameters: changing a parameter changes the keys of
exactly the items it affects, and a re-run reuses every item whose key is still present.
Deleting a step folder or an item's files by hand makes just that part run again.

A record carries the SHA-256 of each of its files: a file that no longer matches (truncated,
edited in place, overwritten) makes its item count as missing, so a re-run computes it again
instead of passing the damaged file on. Records written before hashes were kept are trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import atomic_write_json, check_slug

JSON = Any
_LABEL_CLEAN = re.compile(r"[^a-z0-9_-]+")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}\Z")


def canonical_json(value: JSON) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: JSON) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ItemRecord:
    """A stored item: its key, JSON result (or error) and the files it produced."""

    key: str
    result: JSON = None
    error: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class ItemFiles:
    """Where a computation writes its files: temporary paths, moved into place on success."""

    def __init__(self, step_folder: Path, key: str) -> None:
        self._folder = step_folder
        self._key = key
        self._pending: dict[str, Path] = {}

    def path(self, suffix: str) -> Path:
        """A temporary path for the item's file with this suffix (e.g. ``".wav"``)."""
        if not _SUFFIX.match(suffix):
            raise ValueError(f"file suffix {suffix!r} must look like '.wav'")
        if suffix not in self._pending:
            self._pending[suffix] = self._folder / f".{self._key}{suffix}.tmp-{uuid.uuid4().hex}"
        return self._pending[suffix]

    def _commit(self) -> dict[str, Path]:
        final = {}
        for suffix, tmp in self._pending.items():
            if not tmp.exists():
                raise FileNotFoundError(f"the computation did not write its {suffix} file")
            target = self._folder / f"{self._key}{suffix}"
            os.replace(tmp, target)
            final[suffix] = target
        return final

    def _discard(self) -> None:
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)


class WorkStep:
    """One named step of an asset's work: items keyed by inputs + parameters."""

    def __init__(self, folder: Path, params: Mapping[str, JSON] | None = None) -> None:
        self.folder = folder
        self.params = dict(params or {})
        self.computed = 0
        self.reused = 0
        self.failed = 0
        self.damaged: set[str] = set()  # keys of items whose file did not match the record
        # Files verified in this run: path -> (stat signature, sha256); a file is hashed again
        # only when its size, mtime or inode changed since.
        self._verified: dict[Path, tuple[tuple[int, int, int], str]] = {}

    def key(self, inputs: JSON, label: str | None = None) -> str:
        """The item key: ``<label>-<hash>`` (label optional, for people browsing the folder)."""
        digest = content_hash({"inputs": inputs, "params": self.params})[:24]
        if label:
            clean = _LABEL_CLEAN.sub("-", label.lower()).strip("-")[:40]
            if clean:
                return f"{clean}-{digest}"
        return digest

    def _record_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> ItemRecord | None:
        """The stored record of ``key``, or None if the item was never finished."""
        path = self._record_path(key)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return None  # a torn record (should not happen: writes are atomic); recompute
        files = {suffix: self.folder / name for suffix, name in raw.get("files", {}).items()}
        if any(not p.exists() for p in files.values()):
            return None  # a person deleted the item's media: recompute it
        hashes = raw.get("sha256") or {}
        for suffix, path in files.items():
            if suffix in hashes and self._sha256(path) != hashes[suffix]:
                self.damaged.add(key)
                return None  # truncated or edited since it was stored: recompute it
        return ItemRecord(
            key=key, result=raw.get("result"), error=raw.get("error"), files=files, reused=True
        )

    def _sha256(self, path: Path) -> str:
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        known = self._verified.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        digest = file_sha256(path)
        self._verified[path] = (signature, digest)
        return digest

    def put(
        self,
        key: str,
        inputs: JSON,
        *,
        result: JSON = None,
        error: str | None = None,
        files: Mapping[str, Path] | None = None,
    ) -> ItemRecord:
        """Store an item's record (after its files are in place)."""
        files = dict(files or {})
        # Not fsynced per item (thousands of items): a record torn by a power cut reads as
        # missing and is recomputed; a killed process loses nothing.
        atomic_write_json(
            self._record_path(key),
            {
                "inputs": inputs,
                "params": self.params,
                "result": result,
                "error": error,
                "files": {suffix: p.name for suffix, p in files.items()},
                "sha256": {suffix: self._sha256(p) for suffix, p in files.items()},
            },
            durable=False,
        )
        return ItemRecord(key=key, result=result, error=error, files=files)

    def get_or_compute(
        self,
        inputs: JSON,
        compute: Callable[[ItemFiles], JSON],
        *,
        label: str | None = None,
        retry_errors: bool = True,
        record_errors: bool = False,
    ) -> ItemRecord:
        """Return the stored item for ``inputs``, computing and storing it if missing.

        ``compute`` gets an :class:`ItemFiles` for any files it writes and returns the JSON
        result. With ``record_errors`` an exception becomes a stored error record (data that
        flows on) instead of propagating; ``retry_errors`` recomputes stored errors.
        """
        key = self.key(inputs, label)
        found = self.get(key)
        if found is not None and (found.ok or not retry_errors):
            self.reused += 1
            return found
        try:
            record = self.store(key, inputs, compute)
        except Exception as exc:
            if not record_errors:
                raise
            self.failed += 1
            return self.put(key, inputs, error=f"{type(exc).__name__}: {exc}")
        self.computed += 1
        return record

    def store(self, key: str, inputs: JSON, write: Callable[[ItemFiles], JSON]) -> ItemRecord:
        """Store item ``key``: ``write`` puts its files at temporary paths and returns the JSON
        result; the files are moved into place, then the record is written. On an exception
        nothing is stored and the exception propagates."""
        self.folder.mkdir(parents=True, exist_ok=True)
        item_files = ItemFiles(self.folder, key)
        try:
            result = write(item_files)
            files = item_files._commit()
        except BaseException:
            item_files._discard()
            raise
        return self.put(key, inputs, result=result, files=files)


class WorkCache:
    """The work folder of one asset partition; hands out named steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def step(self, name: str, params: Mapping[str, JSON] | None = None) -> WorkStep:
        check_slug(name, "work step name")
        return WorkStep(self.folder / name, params)
