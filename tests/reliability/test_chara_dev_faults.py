"""Faults as a person meets them in the UI: ``chara dev`` (webserver, daemon, code server) on a
persistent instance with the dagster.yaml chara writes, runs launched through GraphQL as the
UI's *Materialize* launches them, the embedded BrainBox that ``chara brainbox`` controls.

- The run worker of a run in ``cloned_audio`` is killed with SIGKILL mid-step: a new run of the
  same partition gets the ``brainbox`` pool slot and finishes, voicing no line twice. (Before,
  the killed run kept its slot and the new run waited in the queue for ever.)
- ``chara brainbox stop`` and ``chara brainbox start`` while a run waits for its batch: the
  server comes back on the same port and the run finishes. (Before, it came back on a new port
  and the run gave up on the old one after ``retry_for_s``.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from chara_resources.embedded.launcher import EmbeddedBrainBox, free_port
from chara_resources.settings import DAGSTER_YAML, PROJECT_ROOT
from chara_resources.storage import load_manifest
from tests.dagster_dev import (
    DagsterDev,
    migrate_instance,
    start_dagster_dev,
    stop_dagster_dev,
    wait_until_loaded,
)

from .conftest import LINES, jobs

VOICED = "method = 'voice_to_text'"
RUN_TIMEOUT_S = 300


@dataclass
class CharaDev:
    dev: DagsterDev
    box: EmbeddedBrainBox
    env: dict[str, str]

    def chara(self, *args: str) -> str:
        """Run the ``chara`` command as a person would; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "chara_assets.cli", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def voiced(self, where: str = "1 = 1") -> int:
        return jobs(self.box, f"{VOICED} and {where}")

    def pool_holders(self) -> set[str]:
        with dg.DagsterInstance.from_config(str(self.dev.dagster_home)) as instance:
            info = instance.event_log_storage.get_concurrency_info("brainbox")
            return {slot.run_id for slot in info.claimed_slots}

    def wait_voiced(self, n: int, before: int, run_id: str) -> None:
        def done() -> bool:
            status = self.dev.run(run_id)["status"]
            assert status in ("QUEUED", "STARTING", "STARTED"), f"run {run_id} is {status}"
            return self.voiced("success = 1") - before >= n

        self.dev.wait_for(f"{n} lines voiced by run {run_id}", done, RUN_TIMEOUT_S)

    def forget_cloned_audio(self) -> None:
        """Delete the stored clips and their work cache (as a person may): all is voiced anew."""
        for part in ("assets", "work"):
            shutil.rmtree(self.dev.home / part / "cloned_audio" / "kiki" / "en", ignore_errors=True)


@pytest.fixture(scope="module")
def chara_dev(tmp_path_factory: pytest.TempPathFactory, voice_home: Path) -> Iterator[CharaDev]:
    root = tmp_path_factory.mktemp("chara-dev")
    home, dagster_home = root / "home", root / "dagster"
    shutil.copytree(voice_home, home)
    users = root / "users"
    shutil.copytree(PROJECT_ROOT / "users", users)
    # chara dev reads an empty characters folder, so that the character sensor starts no runs of
    # its own (on 2 busy cores its four first-tick runs took minutes); kiki's partition is added
    # by hand, and the voice assets run here read no character file.
    characters = root / "characters"
    characters.mkdir()
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)  # what `chara dev` writes
    env = {
        **os.environ,
        "CHARA_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "CHARA_CHARACTERS": str(characters),
        "CHARA_USERS": str(users),
        "CHARA_BRAINBOX_URL": "",  # the embedded BrainBox of this storage root
        "CHARA_AVATAR_URL": "",
    }
    env.pop("CHARA_BRAINBOX_PROFILE", None)
    box = EmbeddedBrainBox(home / "brainbox")
    port = free_port()
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    migrate_instance(dagster, PROJECT_ROOT, env)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("character", ["kiki"])
    dev = start_dagster_dev(
        [sys.executable, "-m", "chara_assets.cli", "dev", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        log=root / "chara-dev.log",
        url=f"http://127.0.0.1:{port}",
        home=home,
        characters=characters,
    )
    setup = CharaDev(dev, box, env)
    try:
        setup.chara("brainbox", "start")
        wait_until_loaded(dev)
        # The prepared voice was registered on another server: register it on this one.
        dev.wait_for_run(dev.launch_asset_run(["cloner_voice"], "kiki|en"), RUN_TIMEOUT_S)
        yield setup
    finally:
        stop_dagster_dev(dev)
        box.stop()


def _run_worker_pid(dev: DagsterDev, run_id: str) -> int:
    for message in dev.run(run_id)["messages"]:
        if message.startswith("Started process for run (pid: "):
            return int(message.split("pid: ")[1].split(")")[0])
    raise AssertionError(f"run {run_id} logged no run worker pid")


def test_killed_run_worker_frees_its_slot_and_the_rerun_finishes(chara_dev: CharaDev) -> None:
    dev = chara_dev.dev
    before, done_before = chara_dev.voiced(), chara_dev.voiced("success = 1")
    first = dev.launch_asset_run(["cloned_audio"], "kiki|en")
    chara_dev.wait_voiced(2, done_before, first)
    assert chara_dev.pool_holders() == {first}
    os.kill(_run_worker_pid(dev, first), signal.SIGKILL)
    killed = time.monotonic()

    again = dev.launch_asset_run(["cloned_audio"], "kiki|en")  # as a person re-runs it
    dev.wait_for_run(first, RUN_TIMEOUT_S, statuses=("FAILURE",))
    failed = time.monotonic()
    dev.wait_for("the killed run's slot freed", lambda: first not in chara_dev.pool_holders(), 120)
    freed = time.monotonic()
    dev.wait_for_run(again, RUN_TIMEOUT_S)
    finished = time.monotonic()
    print(
        f"\nrun worker killed: marked FAILURE after {failed - killed:.0f} s, its pool slot freed "
        f"after {freed - killed:.0f} s, the new run finished after {finished - killed:.0f} s"
    )
    assert chara_dev.voiced() - before == LINES  # no line voiced twice
    audio = load_manifest(dev.home / "assets" / "cloned_audio" / "kiki" / "en")
    assert len(audio.clips) == LINES and not audio.errors
    assert not chara_dev.pool_holders()


def test_brainbox_stop_and_start_mid_batch_keep_the_run(chara_dev: CharaDev) -> None:
    dev = chara_dev.dev
    chara_dev.forget_cloned_audio()
    port = chara_dev.box.state().port
    before, done_before = chara_dev.voiced(), chara_dev.voiced("success = 1")
    run_id = dev.launch_asset_run(["cloned_audio"], "kiki|en")
    chara_dev.wait_voiced(2, done_before, run_id)
    assert chara_dev.chara("brainbox", "stop").strip() == "stopped"
    time.sleep(3)  # the run meets the stopped server and retries
    started = chara_dev.chara("brainbox", "start")
    assert f"running at http://127.0.0.1:{port}" in started  # where the run looks for it
    run = dev.wait_for_run(run_id, RUN_TIMEOUT_S)
    assert any("retrying" in message for message in run["messages"])
    assert chara_dev.voiced() - before == LINES  # nothing voiced twice
    audio = load_manifest(dev.home / "assets" / "cloned_audio" / "kiki" / "en")
    assert len(audio.clips) == LINES and not audio.errors
