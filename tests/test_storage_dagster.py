"""The IO manager and the work cache inside real Dagster materializations, crashes included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import load_manifest

from .sample_assets import (
    CountedConfig,
    MediaConfig,
    MediaFolder,
    counted_items,
    media_folder,
    media_report,
    run,
    storage_resources,
)


def _lines(log: Path, prefix: str) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.startswith(prefix))


def _start_and_kill(args: list[str], log: Path, prefix: str, after: int) -> None:
    """Start ``python -m tests.sample_assets ARGS`` and SIGKILL it once ``after`` lines with
    ``prefix`` are logged."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sample_assets", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while _lines(log, prefix) < after:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkilled_materialization_resumes_without_recomputing(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "computed.log"
    items = 40
    _start_and_kill(
        ["counted", "--home", str(home), "--log", str(log), "--items", str(items), "--delay=0.1"],
        log,
        "square",
        after=10,
    )
    work = home / "work" / "counted_items" / "kiki" / "en"
    stored_square = len(list((work / "square").glob("*.json")))
    stored_label = len(list((work / "label").glob("*.json")))
    # the tenth square is logged before the cache stores it: the kill may land in between, and
    # that item (not finished) is computed again; every stored one is not
    assert 9 <= stored_square < items
    assert not (home / "assets" / "counted_items" / "kiki" / "en").exists()

    log.unlink()
    result = run(counted_items, home, CountedConfig(items=items, log=str(log)))
    assert _lines(log, "square") == items - stored_square
    assert _lines(log, "label") == items - stored_label
    stored = load_manifest(home / "assets" / "counted_items" / "kiki" / "en")
    assert stored.values == [f"{i * i}!" for i in range(items)]
    metadata = result.asset_materializations_for_node("counted_items")[0].metadata
    assert metadata["square_computed"].value == items - stored_square


def test_changing_a_parameter_recomputes_only_what_depends_on_it(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "computed.log"
    run(counted_items, home, CountedConfig(items=5, log=str(log)))
    assert (_lines(log, "square"), _lines(log, "label")) == (5, 5)

    log.unlink()
    run(counted_items, home, CountedConfig(items=5, suffix="?", log=str(log)))
    assert (_lines(log, "square"), _lines(log, "label")) == (0, 5)

    log.unlink()
    run(counted_items, home, CountedConfig(items=6, suffix="?", log=str(log)))
    assert (_lines(log, "square"), _lines(log, "label")) == (1, 1)

    log.unlink()
    run(counted_items, home, CountedConfig(items=6, offset=1, suffix="?", log=str(log)))
    assert (_lines(log, "square"), _lines(log, "label")) == (6, 6)


def test_io_manager_round_trip_hands_downstream_a_typed_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("character", ["kiki"])
        result = dg.materialize(
            [media_folder, media_report],
            instance=instance,
            resources=storage_resources(home),
            partition_key="kiki|en",  # a plain string, as a GraphQL-launched run gives
            run_config=dg.RunConfig({"media_folder": MediaConfig(version="v1", files=3)}),
        )
    assert result.success
    folder = home / "assets" / "media_folder" / "kiki" / "en"
    document = json.loads((folder / "manifest.json").read_text())
    assert document["kind"] == "MediaFolder"
    assert document["manifest"]["files"] == ["clip_000.wav", "clip_001.wav", "clip_002.wav"]
    loaded = load_manifest(folder)
    assert isinstance(loaded, MediaFolder) and loaded.folder == folder
    assert loaded.path("clip_001.wav").read_bytes().startswith(b"v1:1")
    report = load_manifest(home / "assets" / "media_report" / "kiki" / "en")
    assert report.values == [f"clip_00{i}.wav=400" for i in range(3)]
    assert sorted(p.name for p in folder.parent.iterdir()) == [".en.lock", "en"]


def _assert_version(home: Path, version: str, files: int) -> None:
    folder = home / "assets" / "media_folder" / "kiki" / "en"
    manifest = load_manifest(folder)
    assert manifest.version == version
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(f"clip_{i:03d}.wav" for i in range(files)), "manifest.json"]
    )
    for i in range(files):
        assert manifest.path(f"clip_{i:03d}.wav").read_bytes().startswith(f"{version}:".encode())


def test_failure_during_write_keeps_previous_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(media_folder, home, MediaConfig(version="v1", files=3))
    result = run(
        media_folder, home, MediaConfig(version="v2", files=5, fail_after=4), raise_on_error=False
    )
    assert not result.success
    _assert_version(home, "v1", 3)


@pytest.mark.slow
def test_sigkill_during_write_keeps_previous_version(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "written.log"
    run(media_folder, home, MediaConfig(version="v1", files=3))
    _start_and_kill(
        ["media", "--home", str(home), "--log", str(log), "--items", "50", "--delay", "0.05"],
        log,
        "clip",
        after=5,
    )
    _assert_version(home, "v1", 3)
    run(media_folder, home, MediaConfig(version="v3", files=2))
    _assert_version(home, "v3", 2)


@pytest.mark.parametrize("bad", ["../x", "Alice", "a.b"])
def test_partition_keys_that_escape_are_rejected(tmp_path: Path, bad: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("character", [bad])
        with pytest.raises(Exception, match="character partition key"):
            dg.materialize(
                [media_folder],
                instance=instance,
                resources=storage_resources(tmp_path / "home"),
                partition_key=dg.MultiPartitionKey({"character": bad, "language": "en"}),
                run_config=dg.RunConfig({"media_folder": MediaConfig(version="v1")}),
            )
    assert not any((tmp_path / "home").rglob("*.wav"))
