"""Dagster pool slots that dead runs still hold: found and freed.

A step of the ``brainbox`` pool claims a slot before it starts and its run worker frees it when
the step ends. A run worker that dies (``kill -9``, the OOM killer, a power cut) frees nothing,
and with a limit of 1 every later step of the pool waits for ever. Dagster's run monitoring frees
the slots of runs that have *ended* (``free_slots_after_run_end_seconds`` in the dagster.yaml
chara writes), but only while the daemon runs, and only once something has marked the run as
ended: the code server does for a run worker it launched, nothing does for an
``execute_in_process`` run (``chara run``, ``chara demo``) or for runs whose code server died
with them.

``free_dead_runs_slots`` frees the slots (claimed and waiting) of every run that has ended or no
longer exists, and of every run still marked as running whose processes are gone: the run ran on
this machine (its ``chara/host`` tag, written by ``tag_run_host``) and either the machine has
restarted since or none of the processes that logged a pid for the run is alive. Such a run is
first marked as failed, saying why. Each freed run is logged. Nothing here waits or sleeps.

``answer_interrupts_while_waiting`` makes an in-process run that waits for a pool slot stop on
SIGINT or SIGTERM: Dagster 1.13's in-process executor defers a signal to the start of the next
step and, waiting for a slot, loops without sleeping and never gets there (it spins a core and
ignores both signals). A watchdog thread sees a signal that no step took up within
``INTERRUPT_GRACE_S`` and raises ``DagsterExecutionInterruptedError`` in the waiting thread,
which is what Dagster does to a step: the run ends as interrupted and its waiting claim is
dropped.
"""

import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

HOST_TAG = "chara/host"
INTERRUPT_GRACE_S = 2.0  # a signal no step takes up in this time: the run is stuck waiting

_RUNNING = {
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


def host_identity() -> str:
    """This machine and this boot of it: ``<hostname> <boot id>``."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()} {boot}".strip()


def tag_run_host(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> None:
    """Record on the run which machine (and boot) its processes run on, once."""
    if run is None or run.tags.get(HOST_TAG):
        return
    instance.add_run_tags(run.run_id, {HOST_TAG: host_identity()})


@dataclass
class FreedRun:
    run_id: str
    status: str  # the run's status when it was found ("gone": the run no longer exists)
    slots: list[str]  # "<pool>: <step> (claimed|waiting)"
    reason: str

    def message(self) -> str:
        return f"freed the pool slots of run {self.run_id} ({self.reason}): {'; '.join(self.slots)}"


def _process_alive(pid: int, logged_at: float) -> bool:
    """Whether process ``pid``, which logged its pid at ``logged_at``, is still running."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:  # no /proc to read: ask the kernel whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    try:
        boot_time = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        started = boot_time + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return True
    # A process that started after the pid was logged is another one that reuses the number.
    return started <= logged_at + 2


def _run_pids(instance: dg.DagsterInstance, run_id: str) -> list[tuple[int, float]]:
    """(pid, when it was logged) of the processes that logged a pid for the run: the run
    worker ("Started process for run"), the in-process executor, step subprocesses."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.engine_event_data if event is not None else None
        value = data.metadata.get("pid") if data is not None else None
        text = getattr(value, "value", value)
        if text is not None and str(text).isdigit():
            found.append((int(text), entry.timestamp))
    return found


def _dead_reason(instance: dg.DagsterInstance, record: dg.RunRecord) -> str | None:
    """Why a run marked as running is dead for sure, or None if it may be alive."""
    tag = record.dagster_run.tags.get(HOST_TAG)
    if not tag:
        return None  # not known to have run here
    host, _, boot = tag.partition(" ")
    my_host, _, my_boot = host_identity().partition(" ")
    if host != my_host:
        return None  # another machine (or container): its processes are not ours to see
    if boot and my_boot and boot != my_boot:
        return "it was running when this machine restarted"
    pids = _run_pids(instance, record.dagster_run.run_id)
    if not pids or any(_process_alive(pid, at) for pid, at in pids):
        return None
    numbers = ", ".join(str(pid) for pid in sorted({pid for pid, _ in pids}))
    return f"its process (pid {numbers}) is gone: killed before the run could end"


def free_dead_runs_slots(
    instance: dg.DagsterInstance,
    *,
    current_run_id: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[FreedRun]:
    """Free the pool slots of dead runs (see the module docstring); the runs freed."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    run_ids = storage.get_concurrency_run_ids() - {current_run_id}
    if not run_ids:
        return []
    slots: dict[str, list[str]] = {}
    for pool, info in storage.get_concurrency_infos(sorted(storage.get_concurrency_keys())).items():
        for claimed in info.claimed_slots:
            slots.setdefault(claimed.run_id, []).append(f"{pool}: {claimed.step_key} (claimed)")
        for pending in info.pending_steps:
            if pending.assigned_timestamp is None:  # assigned ones are the claimed slots
                slots.setdefault(pending.run_id, []).append(f"{pool}: {pending.step_key} (waiting)")
    freed = []
    for run_id in sorted(run_ids):
        record = instance.get_run_record_by_id(run_id)
        if record is None:
            status, reason = "gone", "the run no longer exists"
        elif record.dagster_run.is_finished:
            status = record.dagster_run.status.value
            reason = f"the run ended: {status}"
        elif record.dagster_run.status in _RUNNING:
            why = _dead_reason(instance, record)
            if why is None:
                continue
            status = record.dagster_run.status.value
            note = f"chara: {why}; marked as failed so that its pool slots are freed"
            if record.dagster_run.status == dg.DagsterRunStatus.CANCELING:
                instance.report_run_canceled(record.dagster_run, note)
            else:
                instance.report_run_failed(record.dagster_run, note)
            reason = f"{why}; marked as failed"
        else:
            continue
        storage.free_concurrency_slots_for_run(run_id)
        done = FreedRun(run_id, status, slots.get(run_id, ["no slot left"]), reason)
        freed.append(done)
        if log is not None:
            log(done.message())
    return freed


def guard_run_pools(context: dg.InitResourceContext) -> None:
    """At a resource's start in a run: tag the run with this machine and free the slots of dead
    runs. In a run that executes in process (``chara run``, ``chara demo``) resources start
    before any step claims a slot, so a dead run's slot is free before this run asks for it. A
    failure here is logged, never fails the run."""
    instance, run = context.instance, context.run
    if instance is None or run is None:
        return
    warn = context.log.warning if context.log is not None else None
    answer_interrupts_while_waiting()
    try:
        tag_run_host(instance, run)
        free_dead_runs_slots(instance, current_run_id=run.run_id, log=warn)
    except Exception as exc:
        if warn is not None:
            warn(f"could not check the pool slots of dead runs: {type(exc).__name__}: {exc}")


_watchdog: threading.Thread | None = None


def _captured_interrupt() -> Callable[[], bool] | None:
    try:  # Dagster's flag for a signal it received and deferred (not a public API)
        from dagster._utils.interrupts import check_captured_interrupt
    except ImportError:
        return None
    return check_captured_interrupt


def _watch(captured: Callable[[], bool], thread_id: int) -> None:
    since = None
    while True:
        time.sleep(0.25)
        if not captured():
            since = None
            continue
        since = since or time.monotonic()
        if time.monotonic() - since >= INTERRUPT_GRACE_S:
            # Raised in the thread that executes the run, between two of its bytecodes.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread_id), ctypes.py_object(dg.DagsterExecutionInterruptedError)
            )
            since = None


def answer_interrupts_while_waiting() -> None:
    """Start the watchdog (once per process) when called on the main thread, where Dagster
    executes an in-process run and receives its signals."""
    global _watchdog
    if _watchdog is not None or threading.current_thread() is not threading.main_thread():
        return
    captured = _captured_interrupt()
    if captured is None:
        return
    _watchdog = threading.Thread(
        target=_watch,
        args=(captured, threading.main_thread().ident),
        name="chara-interrupt-watchdog",
        daemon=True,
    )
    _watchdog.start()
