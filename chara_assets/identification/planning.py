"""Annotation planning for identification (no Dagster, no Gradio): what the annotation
service asks, which sample it shows next, the labelled set that results and how well that set
identifies its people. The service (``chara identify``) and the assets both use it.

One task per modality, ``$CHARA_HOME/review/identification/<modality>/task.json``, with the
service's append-only log beside it; its samples are every embedded sample, those in Avatar's
labelled set with their ``prior_label``. Sample ids are content hashes, so a decision follows
the recording from Avatar's cache into the labelled set.

- Labelling (default): new samples, chosen by :func:`.active.choose_next`, with the existing
  labels as what is already known.
- Refinement (``allow_delete``): the labelled set, most doubtful first
  (:func:`.active.most_doubtful`); DELETE removes a sample.

The labelled set: a sample's label is its latest effective decision if that names a user; a
SKIP (or no decision) keeps the label it had (none for a new sample: it is left out); DELETE
leaves it out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chara_resources.paths import UnsafeNameError, check_slug, safe_join

from ..annotation.log import (
    DELETE,
    SKIP,
    AnnotationLog,
    DagsterTarget,
    Sample,
    Task,
    default_log_path,
)
from .active import choose_next, confusion, leave_one_out, most_doubtful, unit_rows
from .media import IdentificationError, check_user

if TYPE_CHECKING:
    from .engine import EmbeddingSet

ANNOTATION_ASSET = "identity_annotations"
ROUND = "round"  # the log note that starts a round of labelling or refinement


def identification_folder(home: Path, modality: str) -> Path:
    """Where the task and log of ``modality`` live under the storage root."""
    return safe_join(home / "review" / "identification", check_slug(modality, "modality"))


@dataclass(frozen=True)
class TaskSample:
    """What the task needs of one embedded sample."""

    id: str
    path: Path  # the media file (absolute)
    vector: Sequence[float]
    prior_label: str | None
    names: Sequence[str]  # where Avatar has it


def write_identification_task(
    folder: Path,
    modality: str,
    kind: str,
    users: Sequence[str],
    samples: Sequence[TaskSample],
    *,
    refine: bool = False,
    dagster_url: str | None = None,
) -> Path:
    """Write (replace) the modality's task file and return its path; the log is kept.

    Errors: ``ValueError`` without users or samples; ``UnsafeNameError`` for a user name
    that cannot be a label.
    """
    labels = [check_user(u) for u in users]
    if not labels:
        raise ValueError("no users to label with: add users/*.yaml or configure avatar_media")
    if not samples:
        raise ValueError(f"no embedded {modality} samples to label")
    who = "speaks" if kind == "audio" else "is this"
    task = Task(
        title=f"Who {who}? ({modality}, {'refining the labelled set' if refine else 'labelling'})",
        instructions=(
            "Press the person's button; SKIP when you cannot tell"
            + (", DELETE to take a sample out of the labelled set." if refine else ".")
            + " The next sample is chosen to teach the identifier the most."
        ),
        kind=kind,  # type: ignore[arg-type]
        labels=labels,
        allow_skip=True,
        allow_delete=refine,
        samples=[
            Sample(
                id=s.id,
                path=str(s.path),
                text=(f"labelled {s.prior_label}: " if s.prior_label else "") + ", ".join(s.names),
                vector=[round(float(v), 6) for v in s.vector],
                prior_label=s.prior_label,
            )
            for s in samples
        ],
        dagster=DagsterTarget(url=dagster_url, asset_key=ANNOTATION_ASSET, partition=modality)
        if dagster_url
        else None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = task.save(folder / "task.json")
    # A round starts: refinement shows again what earlier rounds decided.
    AnnotationLog(default_log_path(path)).note(
        ROUND, mode="refine" if refine else "label", samples=len(samples)
    )
    return path


def write_task_for(
    embedding_set: EmbeddingSet,
    home: Path,
    *,
    refine: bool = False,
    dagster_url: str | None = None,
) -> Path:
    """Write the annotation task of an embedding set under ``home``; returns its path."""
    found, x = embedding_set, embedding_set.matrix()
    samples = [
        TaskSample(s.id, found.path(s.file).resolve(), x[s.row], s.user, s.names)
        for s in found.samples
    ]
    folder = identification_folder(home, found.modality)
    return write_identification_task(
        folder,
        found.modality,
        found.media_kind,
        found.users,
        samples,
        refine=refine,
        dagster_url=dagster_url,
    )


# -- the strategy hook -------------------------------------------------------------------

_LATEST: dict[str, Any] = {}  # one service, one task: the latest task's matrix


def _matrix(task: Task) -> tuple[np.ndarray, list[int]]:
    """The task's unit vectors (rows: samples that have one) and their sample positions."""
    if _LATEST.get("task") is not task:
        rows = [i for i, s in enumerate(task.samples) if s.vector]
        x = np.zeros((0, 0), dtype=np.float32)
        if rows:  # float32: about half the time of a choice over thousands of samples
            x = unit_rows([task.samples[i].vector for i in rows]).astype(np.float32)
        _LATEST.update(task=task, x=x, rows=rows)
    return _LATEST["x"], _LATEST["rows"]


def known_labels(task: Task, decisions: Mapping[str, str]) -> list[str | None]:
    """Each sample's label as far as the strategy knows (None: unknown or deleted)."""
    out: list[str | None] = []
    for s in task.samples:
        decided = decisions.get(s.id)
        if decided in task.labels:
            out.append(decided)
        elif decided == DELETE:
            out.append(None)
        else:
            out.append(s.prior_label if s.prior_label in task.labels else None)
    return out


def decided_this_round(log: AnnotationLog) -> set[str]:
    """Samples with an effective decision since the latest round note."""
    stack: list[str] = []
    for entry in log.history():
        if entry["op"] == ROUND:
            stack = []
        elif entry["op"] == "decide":
            stack.append(entry["sample_id"])
        elif entry["op"] == "undo" and stack:
            stack.pop()
    return set(stack)


def next_sample(task: Task, log: AnnotationLog) -> Sample | None:
    """The annotation service's ``--next-sample`` for identification tasks (see the module).

    Deterministic for a given log, so every call until the next decision shows the same
    sample.
    """
    x, rows = _matrix(task)
    if not rows:
        return None
    decisions = log.decisions()
    labels = known_labels(task, decisions)
    row_labels = [labels[i] for i in rows]
    if task.allow_delete:  # refinement: every labelled sample not yet seen this round
        seen = decided_this_round(log)
        candidates = [
            r
            for r, i in enumerate(rows)
            if row_labels[r] is not None and task.samples[i].id not in seen
        ]
        choice = most_doubtful(x, row_labels, candidates, task.labels)
    else:
        candidates = [
            r
            for r, i in enumerate(rows)
            if task.samples[i].id not in decisions and task.samples[i].prior_label is None
        ]
        seed = int(hashlib.sha256(f"{task.title}|{len(log)}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        choice = choose_next(x, row_labels, candidates, task.labels, rng)
    return None if choice is None else task.samples[rows[choice.index]]


# -- the result --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What becomes of one sample: its ``user`` in the labelled set, or why it is left out
    (``left_out``: skipped, deleted, unlabelled) or an ``error`` (a label that cannot be a
    user)."""

    sample_id: str
    user: str | None = None
    left_out: str | None = None
    error: str | None = None


def read_decisions(home: Path, modality: str) -> dict[str, str]:
    """The decisions (sample id -> label) in the modality's annotation log under ``home``.

    Errors: ``IdentificationError`` when there is no task yet, saying how to make one."""
    task_path = identification_folder(home, modality) / "task.json"
    if not task_path.exists():
        raise IdentificationError(
            f"nobody has labelled {modality} samples yet: run `chara identify {modality}`, "
            "label, press FINISH, then materialize identity_dataset again"
        )
    return AnnotationLog(default_log_path(task_path)).decisions()


def final_labels(
    samples: Sequence[tuple[str, str | None]],
    decisions: Mapping[str, str],
    users: Sequence[str],
) -> list[Outcome]:
    """The labelled set from ``(sample id, prior label)`` pairs and the log's decisions."""
    out = []
    allowed = set(users)
    for sample_id, prior in samples:
        decided = decisions.get(sample_id)
        if decided == DELETE:
            out.append(Outcome(sample_id, left_out="deleted"))
            continue
        label = prior if decided in (None, SKIP) else decided
        if label is None:
            out.append(Outcome(sample_id, left_out="skipped" if decided else "not labelled"))
            continue
        try:
            check_user(label)
        except UnsafeNameError as exc:
            out.append(Outcome(sample_id, error=str(exc)))
            continue
        if label not in allowed:
            out.append(Outcome(sample_id, error=f"label {label!r} is not one of the users"))
            continue
        out.append(Outcome(sample_id, user=label))
    return out


@dataclass(frozen=True)
class SetQuality:
    """How well a labelled set identifies its own people: each sample identified by the
    10-NN cosine vote of all the others (what Avatar does)."""

    accuracy: float
    per_user: dict[str, int]
    confusion: dict[str, dict[str, int]]  # [true user][identified as]; "?" for no answer


def set_quality(vectors: np.ndarray, users: Sequence[str]) -> SetQuality:
    """Leave-one-out quality of ``vectors`` (one row per sample) labelled ``users``."""
    guess = leave_one_out(vectors, users)
    accuracy = float(np.mean([g == t for g, t in zip(guess, users, strict=True)]))
    table = confusion(users, guess, sorted(set(users)))
    return SetQuality(accuracy, dict(Counter(users)), table)
