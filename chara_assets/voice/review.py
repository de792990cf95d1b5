"""A person's review of the selected sentences (no Dagster, no Gradio).

Each character|language has a review folder, ``$CHARA_HOME/review/corpus/<character>/<language>/``,
with ``task.json`` (every sentence ever proposed, newest round first) and the annotation
service's append-only log beside it. Decisions survive rounds: an accepted sentence seeds the
next selection, a rejected one is never proposed again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chara_resources.paths import check_slug, safe_join

from ..annotation.log import AnnotationLog, DagsterTarget, Sample, Task, default_log_path

ACCEPT, REJECT = "yes", "no"
REVIEW_ASSET = "corpus_review"


def review_folder(home: Path, character: str, language: str) -> Path:
    return safe_join(
        home / "review" / "corpus",
        check_slug(character, "character name"),
        check_slug(language, "language"),
    )


def sentence_id(text: str) -> str:
    """A stable id for a sentence: the same text gets the same id in every round."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class ReviewState:
    accepted: list[str]  # in the order they were accepted
    rejected: set[str]
    pending: list[str]  # proposed, not decided (skipped ones count as decided)


def read_review(folder: Path) -> ReviewState:
    """What a person decided so far (empty if nobody reviewed yet)."""
    task_path = folder / "task.json"
    if not task_path.exists():
        return ReviewState([], set(), [])
    task = Task.load(task_path)
    texts = {s.id: s.text or "" for s in task.samples}
    decisions = AnnotationLog(default_log_path(task_path)).decisions()
    accepted = [texts[i] for i, label in decisions.items() if label == ACCEPT and i in texts]
    rejected = {texts[i] for i, label in decisions.items() if label == REJECT and i in texts}
    pending = [s.text or "" for s in task.samples if s.id not in decisions]
    return ReviewState(accepted, rejected, pending)


def write_review_task(
    folder: Path,
    character: str,
    language: str,
    sentences: Sequence[str],
    *,
    dagster_url: str | None = None,
) -> Path:
    """Add ``sentences`` to the character's review task (keeping earlier ones) and return the
    task file; FINISH reports ``corpus_review`` for this partition to ``dagster_url``."""
    task_path = folder / "task.json"
    earlier = Task.load(task_path).samples if task_path.exists() else []
    new = [Sample(id=sentence_id(s), text=s) for s in sentences]
    known = {s.id for s in new}
    task = Task(
        title=f"Sentences for {character} ({language})",
        instructions=(
            "Accept a sentence (YES) if it is natural, correct and has no foreign words, "
            "names or abbreviations the voice would stumble on; reject it (NO) otherwise."
        ),
        kind="text",
        labels=[ACCEPT, REJECT],
        samples=new + [s for s in earlier if s.id not in known],
        dagster=DagsterTarget(
            url=dagster_url, asset_key=REVIEW_ASSET, partition=f"{character}|{language}"
        )
        if dagster_url
        else None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    return task.save(task_path)
