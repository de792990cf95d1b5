"""Names that become paths: validation, and atomic writes under the storage root.

Every name that comes from a user (character names, partition keys, file names inside a
manifest) passes through here before it touches the filesystem.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

SLUG_PATTERN = r"[a-z0-9][a-z0-9_-]*"
_SLUG = re.compile(SLUG_PATTERN + r"\Z")
# A file name inside an asset or work folder: no leading dot (hidden/temporary files are ours).
_FILE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")


class UnsafeNameError(ValueError):
    """A user-supplied name that cannot safely become a partition key or a path."""


def check_slug(value: object, what: str) -> str:
    """Return ``value`` if it is a slug (``[a-z0-9][a-z0-9_-]*``), else raise UnsafeNameError.

    ``what`` names the input in the error, e.g. ``"character name"``.
    """
    if not isinstance(value, str) or not _SLUG.match(value):
        raise UnsafeNameError(
            f"{what} {value!r} is not allowed: use lower-case letters, digits, '_' and '-', "
            "starting with a letter or digit (characters such as '|', '/', '.', ',', '[' "
            "and spaces would break partition keys or escape the storage folder)"
        )
    return value


def check_relative_file(value: str, what: str) -> PurePosixPath:
    """Validate a relative file path inside a managed folder (e.g. ``clips/0001.wav``)."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or not path.parts:
        raise UnsafeNameError(f"{what} {value!r} must be a relative path")
    for part in path.parts:
        if not _FILE_SEGMENT.match(part):
            raise UnsafeNameError(
                f"{what} {value!r} is not allowed: each part must use letters, digits, "
                "'.', '_' and '-' and must not start with '.'"
            )
    return path


def safe_join(root: Path, *parts: str) -> Path:
    """Join validated parts under ``root`` and make sure the result stays inside it."""
    path = root.joinpath(*parts)
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafeNameError(f"path {path} escapes the storage folder {root}")
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file.

    ``durable``: flush to disk before the rename, so that even a power cut leaves the old or
    the new content. Without it a killed process still loses nothing, and a power cut may
    leave a torn file, which readers of the work cache detect and recompute.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    data = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode()
    atomic_write_bytes(path, data, durable=durable)


@contextmanager
def temporary_sibling(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``; renamed onto ``path`` if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# FICLONE from linux/fs.h: share the extents of another file, copy-on-write.
_FICLONE = 0x40049409
# The errors with which a filesystem (or the kernel) says it cannot clone.
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}


def copy_file(src: Path, dst: Path) -> str:
    """Put a copy of ``src`` at ``dst`` that shares no inode with it, so that editing one never
    changes the other: a copy-on-write clone (reflink) where the filesystem has them (btrfs,
    XFS, bcachefs, ...), which costs no space until one side changes; a plain copy elsewhere.

    Returns ``"reflink"`` or ``"copy"``. Raises OSError (e.g. ENOSPC) like any write.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as source, open(dst, "wb") as target:
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
            return "reflink"
        except OSError as exc:
            if exc.errno not in _NO_CLONE:
                raise
    shutil.copyfile(src, dst)  # in-kernel (sendfile) on Linux
    return "copy"


# --- folders replaced as a whole -------------------------------------------------------------


def staging_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.staging-{uuid.uuid4().hex}")


def _backup_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.previous")


def recover_folder(final: Path) -> None:
    """Finish or undo a folder swap that a crash interrupted.

    The only window is between moving the old version aside and moving the new one in: then
    ``final`` is missing and the backup holds the old version, which is put back.
    """
    backup = _backup_name(final)
    if backup.exists():
        if final.exists():
            shutil.rmtree(backup)
        else:
            os.rename(backup, final)


def commit_folder(staging: Path, final: Path) -> None:
    """Replace ``final`` with the complete folder ``staging`` (same parent folder)."""
    if staging.parent != final.parent:
        raise ValueError(f"staging folder {staging} must be a sibling of {final}")
    recover_folder(final)
    backup = _backup_name(final)
    if final.exists():
        os.rename(final, backup)
    os.rename(staging, final)
    _fsync_dir(final.parent)
    if backup.exists():
        shutil.rmtree(backup)


def remove_stale_staging(final: Path, older_than_s: float = 24 * 3600) -> int:
    """Delete staging folders that crashed runs left next to ``final``; returns how many.

    Only old ones: a young staging folder may belong to a run that is still writing.
    """
    if not final.parent.exists():
        return 0
    removed = 0
    now = time.time()
    for candidate in final.parent.glob(f".{final.name}.staging-*"):
        if now - candidate.stat().st_mtime > older_than_s:
            shutil.rmtree(candidate, ignore_errors=True)
            removed += 1
    return removed
