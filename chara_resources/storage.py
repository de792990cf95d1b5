"""The storage root as Dagster resources: per-partition asset folders and work caches.

``<root>/assets/<asset>/<character>/<language>/`` holds one asset partition (manifest + media),
``<root>/work/<asset>/<character>/<language>/<step>/`` its item-level work cache.
"""

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr

from .folder_asset import MANIFEST_NAME, FolderManifest, manifest_class
from .paths import (
    atomic_write_bytes,
    check_slug,
    commit_folder,
    recover_folder,
    remove_stale_staging,
    safe_join,
    staging_name,
)
from .settings import chara_home
from .work_cache import WorkCache

M = TypeVar("M", bound=FolderManifest)


def partition_segments(
    partitions_def: dg.PartitionsDefinition | None, partition_key: str | None
) -> list[str]:
    """Folder names for a partition key: one per dimension, in the definition's order.

    A run launched with only the ``dagster/partition`` tag hands assets a plain string, so
    multi-partition keys are parsed with the partitions definition, never split by hand.
    """
    if partitions_def is None:
        return []
    if partition_key is None:
        raise ValueError("a partitioned asset was run without a partition key")
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        key = partitions_def.get_partition_key_from_str(str(partition_key))
        values = [key.keys_by_dimension[dim.name] for dim in partitions_def.partitions_defs]
        names = [dim.name for dim in partitions_def.partitions_defs]
    else:
        values, names = [str(partition_key)], ["partition"]
    return [check_slug(v, f"{n} partition key") for v, n in zip(values, names, strict=True)]


def _asset_parts(asset_key: dg.AssetKey) -> list[str]:
    for part in asset_key.path:
        if not part.replace("_", "").isalnum():
            raise ValueError(f"asset key part {part!r} cannot be used as a folder name")
    return list(asset_key.path)


class CharaStorage(dg.ConfigurableResource):
    """The storage root (``CHARA_HOME``): asset folders, staging folders and work caches."""

    root: str = ""
    min_free_mb: float = Field(
        default=50.0,
        ge=0.0,
        description="a run fails at once, naming the storage root, when less space is free",
    )
    # Partitions this run holds (lock file -> open lock), released when the step ends.
    _held: dict[str, IO[str]] = PrivateAttr(default_factory=dict)
    _staged: set[str] = PrivateAttr(default_factory=set)  # partitions given a staging folder

    @property
    def root_path(self) -> Path:
        return Path(self.root) if self.root else chara_home()

    def asset_folder(self, asset_key: dg.AssetKey, segments: list[str]) -> Path:
        root = self.root_path / "assets"
        return safe_join(root, *_asset_parts(asset_key), *segments)

    def work_folder(self, asset_key: dg.AssetKey, segments: list[str]) -> Path:
        root = self.root_path / "work"
        return safe_join(root, *_asset_parts(asset_key), *segments)

    def _segments(self, context: dg.AssetExecutionContext) -> list[str]:
        partitions_def = context.assets_def.partitions_def
        key = context.partition_key if context.has_partition_key else None
        return partition_segments(partitions_def, key)

    def staging(self, context: dg.AssetExecutionContext) -> Path:
        """A new, empty folder where the running asset writes its media files.

        The IO manager adds the manifest and renames the folder into place when the asset
        returns, so a crash leaves the previous version untouched.
        """
        segments = self._segments(context)
        final = self.asset_folder(context.asset_key, segments)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._hold_partition(context, segments)
        # Holding the partition, no other run can be writing here: any staging folder left
        # is a crashed run's (e.g. a full disk) and goes now, not a day later.
        first = str(final) not in self._staged
        self._staged.add(str(final))
        remove_stale_staging(final, older_than_s=0 if first else 24 * 3600)
        folder = staging_name(final)
        folder.mkdir()
        return folder

    def work(self, context: dg.AssetExecutionContext) -> WorkCache:
        """The item-level work cache of the running asset partition."""
        segments = self._segments(context)
        self._hold_partition(context, segments)
        return WorkCache(self.work_folder(context.asset_key, segments))

    def _hold_partition(self, context: dg.AssetExecutionContext, segments: list[str]) -> None:
        """Hold the running asset partition until the step ends.

        A second run of the same partition waits here until the first one ends (or dies:
        the lock goes with its process), then goes on and reuses what the first stored. Two
        runs writing one work cache at once would re-attach to each other's BrainBox jobs
        and delete each other's result files on the server.
        """
        work = self.work_folder(context.asset_key, segments)
        lock_path = work.with_name(f".{work.name}.run.lock")
        if str(lock_path) in self._held:
            return
        self._check_free_space(context, segments)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+")  # noqa: SIM115 - held until teardown_after_execution
        what = f"{context.asset_key.to_user_string()} partition {'|'.join(segments)}"
        waited_since = last_said = None
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if last_said is None or now - last_said > 60:
                    lock.seek(0)
                    holder = lock.read().strip() or "unknown"
                    context.log.warning(
                        f"{what} is being materialized by another run ({holder}); waiting "
                        "for it to end, then this run reuses what it stored"
                    )
                    waited_since = waited_since or now
                    last_said = now
                time.sleep(0.5)
        if waited_since is not None:
            waited = time.monotonic() - waited_since
            context.log.info(f"{what}: the other run ended; waited {waited:.0f} s")
        lock.seek(0)
        lock.truncate()
        lock.write(f"run {context.run.run_id}, process {os.getpid()}")
        lock.flush()
        self._held[str(lock_path)] = lock

    def _check_free_space(self, context: dg.AssetExecutionContext, segments: list[str]) -> None:
        """Fail before any work when the storage root is (nearly) full: a clear error then
        beats a "No space left on device" from deep inside a download hours later."""
        existing = self.root_path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        free_mb = shutil.disk_usage(existing).free / 1e6
        if free_mb < self.min_free_mb:
            raise dg.Failure(
                f"the storage root {self.root_path} has {free_mb:.1f} MB free, less than "
                f"min_free_mb={self.min_free_mb:g}: free some space or move CHARA_HOME, then "
                f"run {context.asset_key.to_user_string()} {'|'.join(segments)} again (its "
                "stored version and finished items are kept)"
            )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for lock in self._held.values():
            lock.close()  # releases the flock
        self._held.clear()
        self._staged.clear()


@contextmanager
def _folder_lock(final: Path) -> Iterator[None]:
    """Serialise commits of one partition folder between processes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.with_name(f".{final.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class FolderIOManager(dg.ConfigurableIOManager):
    """Stores each asset partition as a folder with ``manifest.json`` and its media files.

    Values must be :class:`FolderManifest` models. Writes are atomic (staging folder, then
    rename); reads hand back the manifest bound to its folder, never the media bytes.
    """

    storage: dg.ResourceDependency[CharaStorage]

    def _final(self, context: dg.OutputContext | dg.InputContext) -> Path:
        partitions_def = context.asset_partitions_def if context.has_asset_partitions else None
        key = context.asset_partition_key if context.has_asset_partitions else None
        return self.storage.asset_folder(context.asset_key, partition_segments(partitions_def, key))

    def handle_output(self, context: dg.OutputContext, obj: FolderManifest) -> None:
        if not isinstance(obj, FolderManifest):
            raise TypeError(
                f"asset {context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the folder IO manager stores FolderManifest models only"
            )
        final = self._final(context)
        staging = obj._folder
        if staging is None:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = staging_name(final)
            staging.mkdir()
        elif staging.parent != final.parent or not staging.name.startswith(f".{final.name}."):
            raise ValueError(
                f"asset {context.asset_key.to_user_string()} wrote its files to {staging}; "
                "use storage.staging(context) to get the folder for this partition"
            )
        document = {"kind": obj.kind, "manifest": json.loads(obj.model_dump_json())}
        atomic_write_bytes(
            staging / MANIFEST_NAME, json.dumps(document, ensure_ascii=False, indent=2).encode()
        )
        with _folder_lock(final):
            commit_folder(staging, final)
        obj.bind(final)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(final))})

    def load_input(self, context: dg.InputContext) -> FolderManifest:
        final = self._final(context)
        with _folder_lock(final):
            recover_folder(final)
        manifest_file = final / MANIFEST_NAME
        if not manifest_file.exists():
            raise FileNotFoundError(
                f"asset {context.asset_key.to_user_string()} has no stored value at {final}; "
                "materialize it first"
            )
        return load_manifest(final)


def load_manifest(folder: Path, expected: type[M] | None = None) -> M:
    """Read ``manifest.json`` of an asset folder into its typed model, bound to the folder.

    ``expected``: the manifest class the caller wants (checked against the stored kind); without
    it the class is looked up among those already imported.
    """
    document = json.loads((folder / MANIFEST_NAME).read_text())
    if expected is not None and document["kind"] != expected.kind:
        raise ValueError(f"{folder} holds a {document['kind']}, not a {expected.kind}")
    cls = expected or manifest_class(document["kind"])
    return cls.model_validate(document["manifest"]).bind(folder)
