"""Which runs' pool slots ``free_dead_runs_slots`` frees, on a real persistent Dagster instance
(SQLite) with real processes: ended and dead runs lose their slots; live runs and runs of other
machines keep them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

# Dagster's own record of "this process runs the run", as its run workers write it.
from dagster._core.events import EngineEventData

from chara_resources.pools import HOST_TAG, free_dead_runs_slots, host_identity
from chara_resources.settings import DAGSTER_YAML

POOL = "brainbox"


@dg.op(pool=POOL)
def voice() -> None:
    pass


@dg.job
def voicing() -> None:
    voice()


@pytest.fixture
def instance(tmp_path: Path):
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(tmp_path)) as persistent:
        persistent.event_log_storage.set_concurrency_slots(POOL, 10)  # room for every run here
        yield persistent


def _run(
    instance: dg.DagsterInstance,
    status: dg.DagsterRunStatus,
    *,
    pid: int | None = None,
    host: str | None = None,
) -> str:
    """A run of ``voicing`` in ``status`` holding the pool slot; ``pid``: its run worker."""
    tags = {HOST_TAG: host} if host else {}
    run = instance.create_run_for_job(voicing, status=status, tags=tags)
    if pid is not None:
        instance.report_engine_event(
            f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
        )
    claim = instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, "voice")
    assert claim.is_claimed
    return run.run_id


def _holders(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return {slot.run_id for slot in info.claimed_slots}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_slots_of_dead_runs_are_freed_and_live_ones_kept(instance: dg.DagsterInstance) -> None:
    here = host_identity()
    ended = _run(instance, dg.DagsterRunStatus.FAILURE)
    killed = _run(instance, dg.DagsterRunStatus.STARTED, pid=_dead_pid(), host=here)
    before_reboot = f"{here.split(' ')[0]} another-boot-id"  # this machine, an earlier boot
    rebooted = _run(instance, dg.DagsterRunStatus.STARTED, pid=os.getpid(), host=before_reboot)
    live = _run(instance, dg.DagsterRunStatus.STARTED, pid=os.getpid(), host=here)
    elsewhere = _run(instance, dg.DagsterRunStatus.STARTED, pid=_dead_pid(), host="gpu-host b")
    untagged = _run(instance, dg.DagsterRunStatus.STARTED, pid=_dead_pid())

    messages: list[str] = []
    freed = free_dead_runs_slots(instance, log=messages.append)

    names = {ended: "ended", killed: "killed", rebooted: "rebooted"}
    assert {names.get(run.run_id, run.run_id) for run in freed} == set(names.values())
    assert _holders(instance) == {live, elsewhere, untagged}
    assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(rebooted).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED
    by_run = {run.run_id: run for run in freed}
    assert by_run[ended].reason == "the run ended: FAILURE"
    assert "is gone: killed before the run could end; marked as failed" in by_run[killed].reason
    assert by_run[rebooted].reason.startswith("it was running when this machine restarted")
    assert f"freed the pool slots of run {killed} (its process (pid " in "\n".join(messages)
    assert by_run[killed].slots == ["brainbox: voice (claimed)"]
    assert free_dead_runs_slots(instance) == []  # nothing left to free


def test_the_current_run_is_never_freed(instance: dg.DagsterInstance) -> None:
    mine = _run(instance, dg.DagsterRunStatus.CANCELED)
    assert free_dead_runs_slots(instance, current_run_id=mine) == []
    assert _holders(instance) == {mine}
