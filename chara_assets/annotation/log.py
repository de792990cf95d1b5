"""The annotation log, the task description and the Dagster report; pure Python, no Gradio.

The log is a JSON Lines file that is only ever appended to: one line per event, written with
a single ``write`` and flushed (and fsynced) before the call returns, so a crash loses at most
the line being written. Events:

- ``{"op": "decide", "sample_id": ..., "label": ..., "ts": ..., **extra}``: a decision;
- ``{"op": "undo", "sample_id": ..., "label": ..., "ts": ...}``: cancels the last effective
  decision (the one it names, for a human reader; replay does not need the names);
- any other ``op`` (e.g. ``"finish"``): a note, kept in the history, ignored by replay.

The effective state is the replay: decisions are pushed on a stack, an undo pops the top, and
a sample's label is the one of its latest decision still on the stack (so undoing a
correction brings back the earlier label). Nothing is ever rewritten, so the file is also the
audit trail of the session.

One writer at a time: an :class:`AnnotationLog` keeps the replayed state in memory and only
appends, so two processes appending to the same file would not see each other's events.
Readers (a Dagster asset that consumes the result) can open the file at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from chara_resources.paths import atomic_write_json

SKIP = "skip"
DELETE = "delete"
# Words the UI and the API use for their own buttons; a task label must not take one.
RESERVED_LABELS = frozenset({SKIP, DELETE, "undo", "finish"})
# Keys every log entry has; ``extra`` fields of a decision must not overwrite them.
_ENTRY_KEYS = frozenset({"op", "sample_id", "label", "ts"})


class AnnotationLog:
    """An append-only JSON Lines log of decisions, replayed into the effective state.

    Inputs: ``path`` of the log file; it and its folder are created on the first append.

    Crash tolerance: a process killed in the middle of a write leaves a torn last line (part
    of a JSON object, no final newline). Loading ignores a line that is not valid JSON and
    lists its 1-based number in :attr:`damaged_lines`; the next append first ends the torn
    line with a newline, so the new entry starts on a line of its own and stays readable.
    A complete JSON object that only lacks its newline is kept: the write itself finished.

    Errors: ``OSError`` when the file cannot be read or written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.damaged_lines: list[int] = []
        self._entries: list[dict[str, Any]] = []
        self._stack: list[dict[str, Any]] = []  # effective decisions, oldest first
        self._needs_newline = False  # the file ends in a torn line: end it before appending
        self._lock = threading.Lock()  # Gradio runs handlers in worker threads
        self._load()

    # -- reading -------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.damaged_lines.append(number)
                continue
            if not isinstance(entry, dict) or "op" not in entry:
                self.damaged_lines.append(number)
                continue
            self._apply(entry)

    def _apply(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)
        if entry["op"] == "decide":
            self._stack.append(entry)
        elif entry["op"] == "undo" and self._stack:
            self._stack.pop()

    def history(self) -> list[dict[str, Any]]:
        """Every readable entry in file order (decisions, undos and notes), as copies."""
        with self._lock:
            return [dict(e) for e in self._entries]

    def decisions(self) -> dict[str, str]:
        """The effective label of each decided sample after replaying undos: ``{id: label}``.

        Ordered by the time of each sample's effective decision.
        """
        with self._lock:
            state: dict[str, str] = {}
            for entry in self._stack:
                state.pop(entry["sample_id"], None)  # re-insert: order by latest decision
                state[entry["sample_id"]] = entry["label"]
            return state

    def counts(self) -> dict[str, int]:
        """How many samples have each effective label, e.g. ``{"yes": 9, "no": 3}``."""
        return dict(Counter(self.decisions().values()))

    def last_decision(self) -> dict[str, Any] | None:
        """The entry that the next :meth:`undo` would cancel, or None."""
        with self._lock:
            return dict(self._stack[-1]) if self._stack else None

    def __len__(self) -> int:
        """The number of readable entries (all ops)."""
        return len(self._entries)

    # -- writing -------------------------------------------------------------------------

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        if self._needs_newline:
            line = "\n" + line
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            # One write per entry, then fsync: a decision a person made is never lost,
            # and a person clicks at most a few times a second, so the cost does not show.
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        self._needs_newline = False
        self._apply(entry)

    def append(self, sample_id: str, label: str, **extra: Any) -> dict[str, Any]:
        """Record a decision and return its entry.

        Inputs: the sample's id, its label (a task label, ``"skip"`` or ``"delete"``), and
        JSON-serialisable ``extra`` fields stored with it (who, a model score...).
        Errors: ``ValueError`` for an empty id or label, or an ``extra`` key that is one of
        ``op``, ``sample_id``, ``label``, ``ts``; ``TypeError`` if ``extra`` is not JSON.
        """
        if not sample_id or not label:
            raise ValueError("a decision needs a sample id and a label")
        clash = _ENTRY_KEYS & extra.keys()
        if clash:
            raise ValueError(f"extra fields must not be named {sorted(clash)}")
        entry = {"op": "decide", "sample_id": sample_id, "label": label, "ts": _now(), **extra}
        with self._lock:
            self._write(entry)
        return dict(entry)

    def undo(self) -> dict[str, Any] | None:
        """Cancel the last effective decision by appending an undo entry.

        Output: the decision entry that was cancelled, or None (and nothing is written) when
        there is no decision left to cancel.
        """
        with self._lock:
            if not self._stack:
                return None
            cancelled = self._stack[-1]
            self._write(
                {
                    "op": "undo",
                    "sample_id": cancelled["sample_id"],
                    "label": cancelled["label"],
                    "ts": _now(),
                }
            )
            return dict(cancelled)

    def note(self, op: str, **fields: Any) -> dict[str, Any]:
        """Append an entry that replay ignores (e.g. ``op="finish"`` with the report status).

        Errors: ``ValueError`` if ``op`` is ``"decide"`` or ``"undo"`` or a field is ``op``.
        """
        if op in ("decide", "undo") or not op:
            raise ValueError(f"op {op!r} is reserved for decisions and undos")
        if "op" in fields:
            raise ValueError("a note field must not be named 'op'")
        entry = {"op": op, "ts": _now(), **fields}
        with self._lock:
            self._write(entry)
        return dict(entry)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- the task ----------------------------------------------------------------------------


class Sample(BaseModel):
    """One thing to label: its id and either a text or a file (audio or image)."""

    id: str = Field(min_length=1)
    text: str | None = None
    path: str | None = Field(
        default=None, description="audio or image file; relative paths start at the task file"
    )
    # For strategies that choose by similarity (identification's active learning):
    vector: list[float] | None = Field(default=None, description="the sample's embedding")
    prior_label: str | None = Field(
        default=None, description="the label it already has (refining an existing dataset)"
    )


class DagsterTarget(BaseModel):
    """Where FINISH reports: a materialization of an external asset through the webserver."""

    url: str = Field(default="http://127.0.0.1:3000", description="the Dagster webserver")
    asset_key: str = Field(min_length=1, description="'/' separates the key's parts")
    partition: str | None = None
    description: str | None = None


class Task(BaseModel):
    """What a person annotates and how; stored as JSON next to the annotation log.

    ``labels`` are the answers, one button each (``["yes", "no"]``, or user names); SKIP and
    DELETE are extra buttons that record the labels ``"skip"`` and ``"delete"``.
    Errors (``pydantic.ValidationError``): no labels, duplicate or reserved labels, duplicate
    sample ids, a text sample without text, an audio or image sample without a path.
    """

    title: str
    instructions: str = ""
    kind: Literal["text", "audio", "image"] = "text"
    labels: list[str] = Field(min_length=1)
    allow_skip: bool = True
    allow_delete: bool = False
    samples: list[Sample]
    dagster: DagsterTarget | None = None

    # The folder that relative sample paths start from (the task file's), set by load().
    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> Task:
        if len(set(self.labels)) != len(self.labels) or any(not x for x in self.labels):
            raise ValueError(f"labels must be unique and non-empty: {self.labels}")
        reserved = [x for x in self.labels if x.lower() in RESERVED_LABELS]
        if reserved:
            raise ValueError(f"labels {reserved} are reserved for the service's own buttons")
        ids = [s.id for s in self.samples]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"sample ids must be unique; repeated: {dupes}")
        field_name = "text" if self.kind == "text" else "path"
        missing = [s.id for s in self.samples if not getattr(s, field_name)]
        if missing:
            raise ValueError(f"{self.kind} samples need a {field_name}; missing in {missing}")
        return self

    @property
    def answers(self) -> list[str]:
        """Every label a decision may carry: the task labels, then skip and delete if on."""
        return (
            list(self.labels)
            + ([SKIP] if self.allow_skip else [])
            + ([DELETE] if self.allow_delete else [])
        )

    def sample(self, sample_id: str) -> Sample:
        """The sample with this id. Errors: ``KeyError`` if there is none."""
        for s in self.samples:
            if s.id == sample_id:
                return s
        raise KeyError(f"no sample {sample_id!r} in task {self.title!r}")

    def sample_path(self, sample: Sample) -> Path | None:
        """The sample's file as an absolute path (relative ones start at the task file)."""
        if sample.path is None:
            return None
        path = Path(sample.path).expanduser()
        if not path.is_absolute():
            path = (self._base_dir or Path.cwd()) / path
        return path.resolve()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Task:
        """Read a task file. Errors: ``OSError``, ``pydantic.ValidationError``."""
        path = Path(path)
        task = cls.model_validate_json(path.read_text(encoding="utf-8"))
        task._base_dir = path.resolve().parent
        return task

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the task atomically as JSON; output: the path. Errors: ``OSError``."""
        path = Path(path)
        atomic_write_json(path, self.model_dump(mode="json"))
        self._base_dir = path.resolve().parent
        return path


def default_log_path(task_path: str | os.PathLike[str]) -> Path:
    """The log that belongs to a task file: ``review.json`` -> ``review.annotations.jsonl``."""
    task_path = Path(task_path)
    return task_path.with_name(task_path.stem + ".annotations.jsonl")


# -- choosing the next sample ------------------------------------------------------------


class NextSample(Protocol):
    """Picks the sample to show next, or None when there is nothing left to ask.

    The identification chain plugs its active-learning strategy in here; it may read the
    log's decisions and history, and must not write to the log.
    """

    def __call__(self, task: Task, log: AnnotationLog) -> Sample | None: ...


def first_undecided(task: Task, log: AnnotationLog) -> Sample | None:
    """The default strategy: the first sample in task order with no effective decision.

    A skipped sample counts as decided (the person chose not to answer it); UNDO brings it
    back.
    """
    decided = log.decisions()
    return next((s for s in task.samples if s.id not in decided), None)


# -- progress and the Dagster report -------------------------------------------------------


@dataclass
class Progress:
    """Where the annotation stands: totals and counts per effective label."""

    total: int
    counts: dict[str, int]  # every task label (zeros included), then skip/delete if on
    left: int  # samples with no decision at all

    @property
    def decided(self) -> int:
        """Samples with a task label (skip and delete do not count)."""
        return sum(n for label, n in self.counts.items() if label not in (SKIP, DELETE))

    def line(self) -> str:
        """E.g. ``"12 of 40 decided, 9 yes, 3 no; 1 skipped; 27 left"``."""
        parts = [f"{self.decided} of {self.total} decided"]
        parts += [f"{n} {label}" for label, n in self.counts.items() if label not in (SKIP, DELETE)]
        text = ", ".join(parts)
        for label, word in ((SKIP, "skipped"), (DELETE, "deleted")):
            if self.counts.get(label):
                text += f"; {self.counts[label]} {word}"
        return text + f"; {self.left} left"


def progress(task: Task, log: AnnotationLog) -> Progress:
    """Counts for the task's samples; decisions for ids not in the task are ignored."""
    ids = {s.id for s in task.samples}
    decided = {k: v for k, v in log.decisions().items() if k in ids}
    seen = Counter(decided.values())
    counts = {label: seen.get(label, 0) for label in task.answers}
    for label, n in seen.items():  # a label the task no longer lists: still count it
        counts.setdefault(label, n)
    return Progress(total=len(task.samples), counts=counts, left=len(ids) - len(decided))


def decisions_version(decisions: Mapping[str, str]) -> str:
    """A short hash of the effective decisions: Dagster's data version of the result."""
    text = json.dumps(dict(sorted(decisions.items())), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def report_request(
    task: Task, log: AnnotationLog, task_path: Path | None = None
) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body of the report of ``log`` to the task's Dagster target.

    Output: ``(url, body)`` for ``POST url`` with ``Content-Type: application/json``; the
    body has ``metadata`` (totals, ``counts`` and one ``count_<label>`` each, the log path),
    ``data_version`` (see :func:`decisions_version`), ``description`` and ``partition`` when
    the target names one.
    Errors: ``ValueError`` if the task has no Dagster target.
    """
    if task.dagster is None:
        raise ValueError(f"task {task.title!r} has no Dagster target")
    target = task.dagster
    state = progress(task, log)
    key_path = "/".join(quote(part, safe="") for part in target.asset_key.split("/"))
    url = f"{target.url.rstrip('/')}/report_asset_materialization/{key_path}"
    metadata: dict[str, Any] = {
        "total": state.total,
        "decided": state.decided,
        "left": state.left,
        "counts": state.counts,
        **{f"count_{label}": n for label, n in state.counts.items()},
        "log_path": str(log.path.resolve()),
        "log_entries": len(log),
    }
    if task_path is not None:
        metadata["task_path"] = str(Path(task_path).resolve())
    body: dict[str, Any] = {
        "metadata": metadata,
        "data_version": decisions_version(log.decisions()),
        "description": target.description or f"{task.title}: {state.line()}",
    }
    if target.partition is not None:
        body["partition"] = target.partition
    return url, body


@dataclass
class ReportResult:
    """What the report did: ``ok``, the HTTP status (None without a response), a message."""

    ok: bool
    message: str
    status_code: int | None = None
    url: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


def report_to_dagster(
    task: Task, log: AnnotationLog, task_path: Path | None = None, timeout_s: float = 30.0
) -> ReportResult:
    """Report the annotation result as a materialization of the task's external asset.

    Output: a :class:`ReportResult`; a missing target, a refused connection or an error
    status are results with ``ok=False`` (FINISH shows them; it does not crash the UI).
    """
    if task.dagster is None:
        return ReportResult(ok=False, message="no Dagster target configured; nothing reported")
    import httpx  # only the reporting path needs it

    url, body = report_request(task, log, task_path)
    try:
        response = httpx.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return ReportResult(False, f"could not reach Dagster: {exc}", None, url, body)
    if response.status_code != 200:
        message = f"Dagster answered {response.status_code}: {response.text[:500]}"
        return ReportResult(False, message, response.status_code, url, body)
    return ReportResult(
        True, f"reported to {task.dagster.asset_key}", response.status_code, url, body
    )
