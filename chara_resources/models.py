"""The narrow interface chara's engines reach models through, and the loop that repeats work
until it is done.

An engine (voicing, verification, paraphrasing, annotation planning) never sees Dagster, HTTP or
BrainBox: it gets a ``Models`` and a work cache step. The BrainBox resource gives one bound to a
run (``BrainBoxResource.models(context)``); tests give a small in-process one
(``tests/engine_models.py``). No Dagster import here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from .brainbox_jobs import BatchOutcome, Job
from .work_cache import ItemRecord, WorkStep

T = TypeVar("T")


class Models(Protocol):
    """Roles (``cloner``, ``recognizer``, ``llm``...) and their methods, run on batches of jobs
    whose results land in a work cache step item by item (``chara_resources/brainbox_jobs.py``
    says what a batch guarantees: reuse of stored items, failures as error records)."""

    def run(
        self,
        step: WorkStep,
        role: str,
        method: str,
        jobs: Sequence[Job],
        *,
        result_file: str | None = None,
        timeout_s: float | None = None,
    ) -> BatchOutcome:
        """Run ``role.method`` on ``jobs``; ``result_file``: each result is a file, stored in the
        item's files under this suffix (e.g. ``".wav"``)."""
        ...

    def run_long(
        self, step: WorkStep, role: str, method: str, job: Job, *, poll_s: float = 10.0
    ) -> ItemRecord:
        """Run one long job (training) and return its stored record."""
        ...

    def put_file(self, name: str, path: Path) -> str:
        """Make the file at ``path`` known to the models as ``name`` (kept if already there);
        jobs name it in their arguments. Returns ``name``."""
        ...

    def get_file(self, name: str, path: Path) -> Path:
        """Copy the models' file ``name`` (e.g. a report a job returned) to ``path``."""
        ...

    def delete_file(self, name: str) -> None:
        """Forget the models' file ``name``; a missing one is not an error."""
        ...

    def model(self, role: str, method: str) -> str:
        """What serves ``role.method``: ``decider`` or ``decider:model`` (for caches and
        reports)."""
        ...

    def log(self, message: str) -> None:
        """A progress line for the person watching."""
        ...


def repeat_until_done(
    attempt: Callable[[int, Sequence[T]], None],
    todo: Callable[[], Sequence[T]],
    *,
    max_attempts: int,
    done: Callable[[], bool] = lambda: False,
    progress: Callable[[int], str] | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Call ``attempt(n, items)`` for n = 1, 2... on what ``todo()`` still lists, until nothing is
    left, ``done()`` holds or ``max_attempts`` attempts were made. After each attempt
    ``progress(n)`` (if given) is logged. Returns the number of attempts made.

    One loop for every "again until enough": re-voicing failed lines, asking the LLM again for
    groups that lack paraphrases.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    made = 0
    while made < max_attempts and not done():
        items = todo()
        if not items:
            break
        made += 1
        attempt(made, items)
        if progress is not None:
            log(progress(made))
    return made
