"""kill -9 of a run half-way through each long asset of the voice chain, then a re-run: every
item the killed run finished is reused, nothing the BrainBox server did is done again (jobs
counted in the server's own database), and the stored partition is whole.

cloned_audio is proven the same way in tests/test_audio_assets.py
(test_killed_cloning_resumes_without_voicing_twice); the generic work cache in
tests/test_storage_dagster.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

from chara_assets.voice.piper_archive import check_archive
from chara_resources.storage import load_manifest

from .conftest import LINES, TRIM_CONFIG, jobs, materialize, spawn, wait_for, work_items


def _kill(run) -> None:
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL


def _rerun(asset, partition, home, config_dirs, log: Path, url: str, config=None) -> str:
    again = spawn(asset, partition, home, config_dirs, log, brainbox=url, config=config)
    code = again.wait()
    assert code == 0, again.output()[-3000:]
    return again.output()


def test_killed_trimming_and_packing_lose_nothing(
    clips_home, copy_home, config_dirs, full_server, tmp_path: Path
) -> None:
    home = copy_home(clips_home)
    url = full_server.running_url()
    recognize = "method = 'transcribe_to_array'"
    vector = "method = 'vector'"
    before = (jobs(full_server, recognize), jobs(full_server, vector))
    run = spawn(
        "trimmed_clips", "kiki|en", home, config_dirs, tmp_path / "killed.log",
        brainbox=url, config=TRIM_CONFIG,
    )  # fmt: skip
    wait_for(
        "two clips recognised",
        lambda: jobs(full_server, f"{recognize} and success = 1") - before[0] >= 2,
        run,
    )
    _kill(run)
    assert not (home / "assets" / "trimmed_clips" / "kiki" / "en").exists()

    output = _rerun(
        "trimmed_clips", "kiki|en", home, config_dirs, tmp_path / "again.log", url, TRIM_CONFIG
    )
    assert " 0 submitted" in output.split("transcribe_to_array): ")[1].splitlines()[0]
    work = ("trimmed_clips", "kiki", "en")
    recognized, embedded = (
        work_items(home, *work, "recognized"),
        work_items(home, *work, "embedded"),
    )
    assert recognized == embedded == LINES  # one voicing per line: one clip each
    # Every clip was recognised and embedded exactly once, killed run and re-run together.
    assert jobs(full_server, recognize) - before[0] == recognized
    assert jobs(full_server, vector) - before[1] == embedded
    trimmed = load_manifest(home / "assets" / "trimmed_clips" / "kiki" / "en")
    assert len(trimmed.clips) + len({r.id for r in trimmed.rejections}) >= LINES

    # Then piper_archive (one ZIP, no items): killed while packing, the previous archive stays.
    assert materialize(home, config_dirs, url, "piper_archive", "kiki|en").success
    final = home / "assets" / "piper_archive" / "kiki" / "en"
    previous = {p.name: _digest(p) for p in final.iterdir()}

    # Packing six clips takes a moment: kill the run once its staging folder appears; should
    # it finish first on a fast machine, try again.
    for attempt in range(5):
        log = tmp_path / f"killed-{attempt}.log"
        run = spawn("piper_archive", "kiki|en", home, config_dirs, log, brainbox=url)
        while not any(final.parent.glob(".en.staging-*")) and run.process.poll() is None:
            time.sleep(0.002)
        if run.process.poll() is None:
            _kill(run)
            break
        assert run.wait() == 0, run.output()[-3000:]
    else:
        raise AssertionError("the archive was always finished before it could be killed")
    assert any(final.parent.glob(".en.staging-*"))  # killed half-way: its staging is left
    assert {p.name: _digest(p) for p in final.iterdir()} == previous  # untouched
    assert not check_archive(final / "dataset.zip")

    assert materialize(home, config_dirs, url, "piper_archive", "kiki|en").success
    assert not check_archive(final / "dataset.zip")
    packed = load_manifest(final)
    assert packed.clips == len(
        load_manifest(home / "assets" / "trimmed_clips" / "kiki" / "en").clips
    )
    # The killed run's half-written staging folder is gone (the partition's lock said so).
    assert sorted(p.name for p in final.parent.iterdir()) == [".en.lock", "en"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
