"""A full disk under the storage root (a small tmpfs mounted there): a clear error naming the
root before any work; if the disk fills up during the work, the run fails with the system's
error, the previous version of the asset and every finished item stay intact, and once space
is free a re-run completes without voicing anything twice.

Where no tmpfs can be mounted (not root, or CHARA_RELIABILITY_NO_MOUNT=1), the fault during the
work comes from a file-size limit on the run's process (RLIMIT_FSIZE: writes fail with "File
too large") and the check before any work is not exercised."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import CharaStorage, FolderIOManager, load_manifest

from .conftest import LINES, jobs, materialize

DISK_MB = 96


@pytest.fixture
def small_disk(tmp_path: Path):
    """(folder, mounted): a tmpfs of DISK_MB megabytes where root may mount one, else a plain
    folder."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.environ.get("CHARA_RELIABILITY_NO_MOUNT") == "1":
        yield mount, False
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        yield mount, False
        return
    try:
        yield mount, True
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _limit_file_size() -> None:
    """In the run's process: files may not grow beyond 64 KB (a WAV clip does)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def _run_with_file_limit(home: Path, config_dirs, url: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tests.reliability.runner", "cloned_audio", "kiki|en"]
    command += ["--home", str(home), "--characters", str(config_dirs[0])]
    command += ["--users", str(config_dirs[1]), "--brainbox", url]
    # Output through a pipe: a log file would be limited too.
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=240,
    )


def _fill(disk: Path, leave_bytes: int) -> Path:
    filler = disk / "filler"
    size = shutil.disk_usage(disk).free - leave_bytes
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return filler


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _storage(home: Path, min_free_mb: float) -> dict:
    storage = CharaStorage(root=str(home), min_free_mb=min_free_mb)
    return {"storage": storage, "io_manager": FolderIOManager(storage=storage)}


def _message(result) -> str:
    error = result.get_step_failure_events()[0].step_failure_data.error
    return str(error)


def test_full_disk_keeps_the_previous_version_and_every_finished_item(
    small_disk: tuple[Path, bool], clips_home, config_dirs, full_server
) -> None:
    disk, mounted = small_disk
    home = disk / "home"
    shutil.copytree(clips_home, home)
    url = full_server.running_url()
    final = home / "assets" / "cloned_audio" / "kiki" / "en"
    previous = _digests(final)
    voiced_step = home / "work" / "cloned_audio" / "kiki" / "en" / "voiced"
    for record in sorted(voiced_step.glob("*.json"))[:2]:  # two lines to voice again
        for path in voiced_step.glob(f"{record.stem}.*"):
            path.unlink()
    items_before = {p.name for p in voiced_step.iterdir()}
    voiced = "method = 'voice_to_text'"
    before = jobs(full_server, voiced)
    if mounted:
        filler = _fill(disk, leave_bytes=64 * 1024)

        # Nearly full: the run stops before any work, naming the storage root.
        early = materialize(home, config_dirs, url, "cloned_audio", "kiki|en")
        assert not early.success
        message = _message(early)
        assert f"the storage root {home} has 0.1 MB free, less than min_free_mb=50" in message
        assert jobs(full_server, voiced) == before

        # With the guard off, the disk fills up during the downloads: the system's error.
        late = materialize(
            home, config_dirs, url, "cloned_audio", "kiki|en", resources=_storage(home, 0)
        )
        assert not late.success
        assert "No space left on device" in _message(late)
    else:
        limited = _run_with_file_limit(home, config_dirs, url)
        assert limited.returncode == 1, limited.stdout[-3000:] + limited.stderr[-3000:]
        assert "File too large" in limited.stdout, limited.stdout[-3000:]
    assert _digests(final) == previous  # the previous version, untouched
    survivors = {p.name for p in voiced_step.iterdir()}
    assert items_before <= survivors  # every finished item is still there
    for record in voiced_step.glob("*.json"):
        json.loads(record.read_text())  # and none is torn
    assert not list(voiced_step.glob(".*tmp*"))  # no half-downloaded clip left behind

    if mounted:
        filler.unlink()
    again = materialize(home, config_dirs, url, "cloned_audio", "kiki|en")
    assert again.success, _message(again)
    assert jobs(full_server, voiced) - before == 2  # the two lines, voiced once each
    audio = load_manifest(final)
    assert len(audio.clips) == LINES and not audio.errors
    assert sorted(p.name for p in final.parent.iterdir()) == [".en.lock", "en"]
