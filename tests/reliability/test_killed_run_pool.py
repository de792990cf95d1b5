"""A run killed while it holds the ``brainbox`` pool slot, on a persistent Dagster instance and
executed in process as ``chara run`` and ``chara demo`` execute (no daemon): a run that waits
for the slot stops on SIGTERM, and a new run of the same partition gets the slot and finishes.

Before: the killed run kept its slot for ever (nothing marks an in-process run as ended), the
new run waited on the pool for ever, spinning a core and ignoring SIGINT and SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from chara_resources.pools import HOST_TAG
from chara_resources.settings import DAGSTER_YAML
from chara_resources.storage import load_manifest

from .conftest import LINES, jobs, spawn, wait_for

POOL = "brainbox"
VOICED = "method = 'voice_to_text'"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pool(instance: dg.DagsterInstance) -> tuple[set[str], set[str]]:
    """(run ids holding a slot, run ids waiting for one) of the brainbox pool."""
    info = instance.event_log_storage.get_concurrency_info(POOL)
    waiting = {s.run_id for s in info.pending_steps if s.assigned_timestamp is None}
    return {s.run_id for s in info.claimed_slots}, waiting


@contextmanager
def _slot_held(dagster_home: Path) -> Iterator[None]:
    """A live run of this process holds the brainbox slot until the block ends."""
    release, holding = threading.Event(), threading.Event()

    @dg.asset(pool=POOL)
    def holder() -> None:
        holding.set()
        release.wait(120)

    def materialize() -> None:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            dg.materialize([holder], instance=instance)

    thread = threading.Thread(target=materialize)
    thread.start()
    try:
        assert holding.wait(120), "the holding run did not start"
        yield
    finally:
        release.set()
        thread.join(60)


def test_killed_run_frees_its_pool_slot_and_a_waiting_run_answers_sigterm(
    voice_home, copy_home, config_dirs, full_server, tmp_path: Path
) -> None:
    home = copy_home(voice_home)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)  # what chara writes
    url = full_server.running_url()
    voiced_before = jobs(full_server, VOICED)
    done_before = jobs(full_server, f"{VOICED} and success = 1")

    def run(asset: str, partition: str, name: str):
        log = tmp_path / f"{name}.log"
        return spawn(asset, partition, home, config_dirs, log, brainbox=url, instance=dagster_home)

    waiting = first = None
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            # A run that waits for the slot (held by a live run) must stop on SIGTERM.
            with _slot_held(dagster_home):
                waiting = run("cloner_voice", "kiki|en", "waiting")
                wait_for("a run waiting for the pool", lambda: _pool(instance)[1], waiting, 240)
                time.sleep(1.0)
                cpu_before, started = _cpu_s(waiting.process.pid), time.monotonic()
                time.sleep(2.0)
                spin = (_cpu_s(waiting.process.pid) - cpu_before) / (time.monotonic() - started)
                print(f"\na run waiting for the pool uses {spin:.0%} of a core (Dagster's loop)")
                waiting.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                assert waiting.wait(30) == 1, waiting.output()[-3000:]
                print(f"the waiting run ended {time.monotonic() - signalled:.1f} s after SIGTERM")
                assert "DagsterExecutionInterruptedError" in waiting.output()
                assert not _pool(instance)[1]  # its waiting claim is gone

            first = run("cloned_audio", "kiki|en", "first")
            wait_for(
                "two lines voiced",
                lambda: jobs(full_server, f"{VOICED} and success = 1") - done_before >= 2,
                first,
                240,
            )
            (holder,) = _pool(instance)[0]
            assert instance.get_run_by_id(holder).tags[HOST_TAG]  # where its process runs
            first.process.kill()  # SIGKILL mid-step: the run stays STARTED, its slot claimed
            first.wait()
            assert _pool(instance)[0] == {holder}
            assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED

            killed = time.monotonic()
            again = run("cloned_audio", "kiki|en", "again")
            assert again.wait(240) == 0, again.output()[-3000:]
            print(f"the new run finished {time.monotonic() - killed:.0f} s after the kill")
            assert f"freed the pool slots of run {holder}" in again.output()
            assert "is gone: killed before the run could end" in again.output()
            assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.FAILURE
            assert _pool(instance) == (set(), set())
    finally:
        for process in (first, waiting):
            if process is not None and process.process.poll() is None:
                process.process.kill()
                process.wait()
    assert jobs(full_server, VOICED) - voiced_before == LINES  # no line voiced twice
    audio = load_manifest(home / "assets" / "cloned_audio" / "kiki" / "en")
    assert len(audio.clips) == LINES and not audio.errors
