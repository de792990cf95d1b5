"""Running many BrainBox jobs through the work cache, so that nothing finished is ever lost.

For each item: a stored result is reused; otherwise the job id is written to the work cache
*before* the job is submitted, so a run that crashes, is cancelled or loses the server re-attaches
to the jobs it already submitted instead of submitting them twice. Results are streamed from the
server and stored item by item. A failed job is an error record (data), not an exception; the
caller decides how many failures are too many.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .brainbox_client import BrainBoxClient, BrainBoxError
from .paths import atomic_write_json
from .work_cache import JSON, ItemFiles, ItemRecord, WorkStep

CANCELLED = "Cancelled"  # the error BrainBox writes into jobs it cancelled


@dataclass
class Job:
    """One item of work: the job's arguments and what identifies the item in the cache."""

    arguments: dict[str, Any]
    inputs: JSON = None  # default: the arguments
    label: str | None = None

    def cache_inputs(self) -> JSON:
        return self.arguments if self.inputs is None else self.inputs


@dataclass(frozen=True)
class Call:
    """Which decider, method and model a job goes to; ``encode``/``decode`` turn chara's
    arguments into the decider's and its result into chara's (chara_resources/decider_shapes.py)."""

    decider: str
    method: str
    parameter: str | None = None
    encode: Callable[[dict[str, Any]], dict[str, Any]] | None = field(default=None, compare=False)
    decode: Callable[[Any], Any] | None = field(default=None, compare=False)

    def arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.encode(arguments) if self.encode is not None else arguments

    def result(self, result: Any) -> Any:
        return self.decode(result) if self.decode is not None else result


def _new_batch() -> str:
    return f"chara-{uuid.uuid4().hex[:12]}"


def _description(call: Call, job: Job, job_id: str, batch: str, key: str) -> dict[str, Any]:
    """What BrainBox's base-add takes for one job; ``info`` names the item for people."""
    return {
        "id": job_id,
        "batch": batch,
        "decider": call.decider,
        "method": call.method,
        "parameter": call.parameter,
        "arguments": call.arguments(job.arguments),
        "info": {"chara_item": key},
    }


class BatchFailed(RuntimeError):
    """Too many items of a batch failed."""


@dataclass
class BatchOutcome:
    step: WorkStep
    keys: list[str]
    submitted: int = 0
    attached: int = 0
    reused: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # key -> error, this run's failures

    def records(self) -> Iterator[ItemRecord]:
        """Stored records in item order, read from the work cache one at a time."""
        for key in self.keys:
            record = self.step.get(key)
            if record is None:
                raise RuntimeError(f"item {key} has no stored result in {self.step.folder}")
            yield record

    @property
    def total(self) -> int:
        return len(self.keys)

    def failed_total(self) -> int:
        return sum(1 for record in self.records() if not record.ok)

    def check(self, max_failure_ratio: float) -> None:
        """Raise BatchFailed if every item failed or the failed share exceeds the ratio."""
        failed = self.failed_total()
        if not self.total or not failed:
            return
        ratio = failed / self.total
        if failed == self.total or ratio > max_failure_ratio:
            examples = [r.error for r in self.records() if not r.ok][:3]
            raise BatchFailed(
                f"{failed} of {self.total} items failed ({ratio:.0%}; allowed "
                f"{max_failure_ratio:.0%}). First errors: " + " | ".join(map(str, examples))
            )


# Job ids of submitted, not yet stored items: one file per submitted batch,
# ``<step>/_submitted/<batch>.json`` = ``{item key: job id}``, written before the submission.


def _submitted_folder(step: WorkStep) -> Path:
    return step.folder / "_submitted"


def _read_submitted(step: WorkStep) -> dict[str, str]:
    """Item key -> job id of every batch an earlier run submitted and did not finish storing."""
    found: dict[str, str] = {}
    folder = _submitted_folder(step)
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            found.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # torn by a power cut: those jobs are submitted again
    return found


def _record_submitted(step: WorkStep, batch: str, jobs: dict[str, str]) -> Path:
    path = _submitted_folder(step) / f"{batch}.json"
    atomic_write_json(path, jobs, durable=False)
    return path


def _forget_submitted(step: WorkStep, batches: set[str]) -> None:
    for batch in batches:
        (_submitted_folder(step) / f"{batch}.json").unlink(missing_ok=True)


def _job_error(record: dict[str, Any]) -> str | None:
    """The job's error, or None if it finished well. Cancelled jobs are errors even when a
    running job finished after the cancel and was marked successful."""
    error = record.get("error")
    if error == CANCELLED or (error and not record.get("success")):
        return CANCELLED if error == CANCELLED else _short_error(error)
    if not record.get("success"):
        return "the job finished without success and without an error message"
    return None


def _short_error(error: str) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][:1000] if lines else "unknown error"


class _Progress:
    """Progress lines at sensible intervals: every 10 % or every ``every_s`` seconds."""

    def __init__(self, log: Callable[[str], None], what: str, total: int, every_s: float) -> None:
        self.log, self.what, self.total, self.every_s = log, what, total, every_s
        self.started = time.monotonic()
        self.last_time = self.started
        self.last_decile = -1
        self.last_done = -1

    def update(self, done: int, failed: int, in_work: int, force: bool = False) -> None:
        now = time.monotonic()
        decile = int(10 * done / self.total) if self.total else 10
        if done == self.last_done and (force or now - self.last_time < self.every_s):
            return
        if not force and decile == self.last_decile and now - self.last_time < self.every_s:
            return
        self.last_time, self.last_decile, self.last_done = now, decile, done
        elapsed = now - self.started
        eta = ""
        if 0 < done < self.total:
            eta = f", about {elapsed / done * (self.total - done):.0f} s left"
        self.log(
            f"{self.what}: {done}/{self.total} finished ({failed} failed, {in_work} running)"
            f" after {elapsed:.0f} s{eta}"
        )


def run_jobs(
    client: BrainBoxClient,
    step: WorkStep,
    call: Call,
    jobs: Sequence[Job],
    *,
    result_file: str | None = None,
    timeout_s: float = 12 * 3600,
    poll_max_s: float = 5.0,
    log: Callable[[str], None] = print,
    log_every_s: float = 30.0,
    delete_remote_files: bool = True,
    what: str | None = None,
) -> BatchOutcome:
    """Run ``jobs`` on BrainBox, storing each result in ``step`` as soon as it is fetched.

    ``result_file``: the job returns the name of a file in the BrainBox cache; it is downloaded
    into the item's ``result_file`` suffix (e.g. ``".wav"``). Stored errors are retried.
    On an interrupt (run cancelled) the submitted jobs are cancelled on the server.
    """
    what = what or f"{call.decider}.{call.method}"
    outcome = BatchOutcome(step=step, keys=[])
    todo: dict[str, Job] = {}  # key -> job still to be done
    for job in jobs:
        key = step.key(job.cache_inputs(), job.label)
        outcome.keys.append(key)
        found = step.get(key)
        if found is not None and found.ok:
            outcome.reused += 1
            step.reused += 1
        else:
            todo[key] = job
    if not todo:
        return outcome
    step.folder.mkdir(parents=True, exist_ok=True)

    # Re-attach to jobs an earlier run submitted, unless the server lost or cancelled them.
    waiting: dict[str, str] = {}  # job id -> key
    submitted = _read_submitted(step)
    pending = {key: submitted[key] for key in todo if key in submitted}
    known = client.known_jobs(pending.values())
    for key, job_id in pending.items():
        summary = known.get(job_id)
        if summary is not None and summary.get("error") != CANCELLED:
            waiting[job_id] = key
    outcome.attached = len(waiting)
    earlier_batches = set(_read_submitted_batches(step))

    batch = _new_batch()
    new_jobs = []
    attached_keys = set(waiting.values())
    for key, job in todo.items():
        if key in attached_keys:
            continue
        job_id = f"{batch}-{len(new_jobs):06d}"
        new_jobs.append(_description(call, job, job_id, batch, key))
        waiting[job_id] = key
    if new_jobs:
        _record_submitted(step, batch, {j["info"]["chara_item"]: j["id"] for j in new_jobs})
    if new_jobs:
        client.add_jobs(new_jobs)
        outcome.submitted = len(new_jobs)
    log(
        f"{what}: {len(jobs)} items: {outcome.reused} stored, {outcome.attached} re-attached, "
        f"{outcome.submitted} submitted"
    )

    try:
        _wait_and_collect(
            client,
            step,
            call,
            waiting,
            outcome,
            result_file=result_file,
            timeout_s=timeout_s,
            poll_max_s=poll_max_s,
            progress=_Progress(log, what, len(waiting), log_every_s),
            delete_remote_files=delete_remote_files,
            log=log,
        )
    except BaseException:
        # Cancelled run, lost server, bug: stop the server's work on what is left. The job ids
        # stay in the work cache, so a re-run fetches whatever finished meanwhile.
        _cancel_quietly(client, waiting, log)
        raise
    _forget_submitted(step, earlier_batches | {batch})
    return outcome


def _read_submitted_batches(step: WorkStep) -> list[str]:
    folder = _submitted_folder(step)
    return [p.stem for p in folder.glob("*.json")] if folder.exists() else []


def _batches(waiting: dict[str, str]) -> set[str]:
    return {job_id.rsplit("-", 1)[0] for job_id in waiting}


def _cancel_quietly(client: BrainBoxClient, waiting: dict[str, str], log) -> None:
    if not waiting:
        return
    saved = client.retry_for_s
    client.retry_for_s = min(saved, 5.0)
    try:
        for batch in _batches(waiting):
            client.cancel_batch(batch)
        log(f"cancelled {len(waiting)} unfinished jobs on BrainBox")
    except BrainBoxError as exc:
        log(f"could not cancel the unfinished jobs on BrainBox: {exc}")
    finally:
        client.retry_for_s = saved


def _wait_and_collect(
    client: BrainBoxClient,
    step: WorkStep,
    call: Call,
    waiting: dict[str, str],
    outcome: BatchOutcome,
    *,
    result_file: str | None,
    timeout_s: float,
    poll_max_s: float,
    progress: _Progress,
    delete_remote_files: bool,
    log: Callable[[str], None],
) -> None:
    started = time.monotonic()
    deadline = started + timeout_s
    wait = 0.05
    collect_every_s = 60.0  # long batches: store finished items while the rest runs
    last_collect = time.monotonic()
    while waiting:
        finished = in_work = failed = total = 0
        all_finished = True
        for batch in _batches(waiting):
            p = client.batch_progress(batch)
            all_finished &= bool(p["is_finished"])
            finished += p["tasks_success"] + p["tasks_failure"]
            failed += p["tasks_failure"]
            in_work += p["tasks_in_work"]
            total += p["tasks_total"]
        done_here = outcome.succeeded + outcome.failed
        progress.update(done_here + finished, failed, in_work)
        timed_out = time.monotonic() > deadline
        if timed_out and not all_finished:
            log(f"batch not finished after {timeout_s:.0f} s: cancelling what is left")
            for batch in _batches(waiting):
                client.cancel_batch(batch)
            all_finished = True
        if all_finished or time.monotonic() - last_collect > collect_every_s:
            _collect(
                client,
                step,
                call,
                waiting,
                outcome,
                result_file=result_file,
                only_finished=not all_finished,
                timed_out_s=timeout_s if timed_out else None,
                delete_remote_files=delete_remote_files,
            )
            last_collect = time.monotonic()
            if all_finished:
                break
        # Back off with the batch's age: a poll never comes later than 5 % of the time spent.
        time.sleep(wait)
        wait = min(poll_max_s, max(0.05, 0.05 * (time.monotonic() - started)))
    progress.update(outcome.succeeded + outcome.failed, outcome.failed, 0, force=True)


def _collect(
    client: BrainBoxClient,
    step: WorkStep,
    call: Call,
    waiting: dict[str, str],
    outcome: BatchOutcome,
    *,
    result_file: str | None,
    only_finished: bool,
    timed_out_s: float | None,
    delete_remote_files: bool,
) -> None:
    ids = list(waiting)
    if only_finished:
        summaries = client.known_jobs(ids)
        ids = [i for i in ids if summaries.get(i, {}).get("finished_timestamp")]
    for record in client.iter_jobs(ids):
        job_id = record["id"]
        key = waiting.get(job_id)
        if key is None or not record.get("finished_timestamp"):
            continue
        inputs = {"job": job_id, "arguments": record.get("arguments")}
        error = _job_error(record)
        if error == CANCELLED and timed_out_s is not None:
            error = f"not finished within {timed_out_s:.0f} s (cancelled on BrainBox)"
        if error is None:
            try:
                _store_result(client, step, call, key, record, result_file, delete_remote_files)
            except BrainBoxError as exc:
                error = f"result could not be fetched: {exc}"
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                error = f"{call.decider}.{call.method} returned what chara cannot read: {exc}"
        if error is not None:
            step.put(key, inputs, error=error)
            step.failed += 1
            outcome.failed += 1
            outcome.errors[key] = error
        else:
            outcome.succeeded += 1
        del waiting[job_id]


def _store_result(
    client: BrainBoxClient,
    step: WorkStep,
    call: Call,
    key: str,
    record: dict[str, Any],
    result_file: str | None,
    delete_remote_files: bool,
) -> None:
    result = record.get("result")
    if result_file is None:
        result = call.result(result)

    def write(files: ItemFiles) -> JSON:
        if result_file is not None:
            if not isinstance(result, str):
                raise BrainBoxError(f"expected a cache file name as the result, got {result!r}")
            client.download(result, files.path(result_file))
        return result

    step.store(key, {"job": record["id"], "arguments": record.get("arguments")}, write)
    step.computed += 1
    if result_file is not None and delete_remote_files:
        with contextlib.suppress(BrainBoxError):  # a leftover file on the server is harmless
            client.delete(result)


def run_long_job(
    client: BrainBoxClient,
    step: WorkStep,
    call: Call,
    job: Job,
    *,
    poll_s: float = 10.0,
    timeout_s: float = 7 * 24 * 3600,
    log: Callable[[str], None] = print,
) -> ItemRecord:
    """Run one long job (e.g. training), forwarding its progress and new log lines.

    The job id is kept in the work cache from the moment of submission: a restarted run
    re-attaches to the running job instead of starting a second one. Returns the stored
    record (check ``record.ok``).
    """
    key = step.key(job.cache_inputs(), job.label)
    found = step.get(key)
    if found is not None and found.ok:
        step.reused += 1
        return found
    step.folder.mkdir(parents=True, exist_ok=True)
    job_id = _read_submitted(step).get(key)
    if job_id is not None:
        summary = client.known_jobs([job_id]).get(job_id)
        if summary is None or summary.get("error") == CANCELLED:
            job_id = None
        else:
            log(f"{call.decider}.{call.method}: re-attached to running job {job_id}")
    if job_id is None:
        batch = _new_batch()
        job_id = f"{batch}-000000"
        _record_submitted(step, batch, {key: job_id})
        client.add_jobs([_description(call, job, job_id, batch, key)])
        log(f"{call.decider}.{call.method}: submitted job {job_id}")
    deadline = time.monotonic() + timeout_s
    lines_seen = 0
    last_progress = None
    finished = False
    try:
        while not finished:
            record = client.job(job_id)
            lines = record.get("log") or []
            if len(lines) < lines_seen:  # the server restarted the job from scratch
                log(f"job {job_id} was restarted by the server; its log starts again")
                lines_seen = 0
            for line in lines[lines_seen:]:
                log(f"[{call.decider}] {line}")
            lines_seen = len(lines)
            progress = record.get("progress")
            if progress is not None and progress != last_progress:
                log(f"{call.decider}.{call.method}: {100 * progress:.0f}%")
                last_progress = progress
            finished = bool(record.get("finished_timestamp"))
            if not finished:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout_s:.0f} s")
                time.sleep(poll_s)
    except BaseException:
        _cancel_quietly(client, {job_id: key}, log)
        raise
    error = _job_error(record)
    inputs = {"job": job_id, "arguments": record.get("arguments")}
    _forget_submitted(step, {job_id.rsplit("-", 1)[0]})
    if error is not None:
        step.failed += 1
        return step.put(key, inputs, error=error)
    step.computed += 1
    return step.put(key, inputs, result=call.result(record.get("result")))
