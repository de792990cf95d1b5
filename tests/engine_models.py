"""A small in-process implementation of the engines' ``Models`` (chara_resources/models.py) for
the fast test tier: each ``role.method`` is a plain Python function. Not BrainBox: no HTTP, no
decider code, no job queue; what the work cache does with the results is the real code.

    models = FunctionModels({"llm.question": lambda args: "Hello, {name}!"})

A function gets the job's arguments (file names already resolved to paths by ``file``) and
returns the result; with ``result_file`` it returns the path of a file it wrote, which is
stored with the item. An exception is a failed job: an error record, as BrainBox gives.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chara_resources.brainbox_jobs import BatchOutcome, Job
from chara_resources.work_cache import ItemFiles, ItemRecord, WorkStep

Function = Callable[[dict[str, Any]], Any]


class FunctionModels:
    def __init__(self, functions: dict[str, Function], *, names: dict[str, str] | None = None):
        self.functions = dict(functions)
        self.names = dict(names or {})  # "role.method" -> what model() says
        self.files: dict[str, Path] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every job run, in order
        self.lines: list[str] = []  # what was logged

    def file(self, name: str) -> Path:
        """The path of a file put under ``name``."""
        if name not in self.files:
            raise KeyError(f"no file {name!r} was put")
        return self.files[name]

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
        function = self.functions[f"{role}.{method}"]
        outcome = BatchOutcome(step=step, keys=[])
        for job in jobs:
            inputs = job.cache_inputs()
            key = step.key(inputs, job.label)
            outcome.keys.append(key)
            found = step.get(key)
            if found is not None and found.ok:
                outcome.reused += 1
                step.reused += 1
                continue
            self.calls.append((f"{role}.{method}", dict(job.arguments)))
            outcome.submitted += 1

            def write(files: ItemFiles, job: Job = job) -> Any:
                result = function(dict(job.arguments))
                if result_file is None:
                    return result
                shutil.copyfile(result, files.path(result_file))
                return Path(result).name

            try:
                step.store(key, inputs, write)
            except Exception as exc:  # a failed job is data, as on BrainBox
                error = f"{type(exc).__name__}: {exc}"
                step.put(key, inputs, error=error)
                step.failed += 1
                outcome.failed += 1
                outcome.errors[key] = error
            else:
                step.computed += 1
                outcome.succeeded += 1
        return outcome

    def run_long(
        self, step: WorkStep, role: str, method: str, job: Job, *, poll_s: float = 10.0
    ) -> ItemRecord:
        return next(self.run(step, role, method, [job]).records())

    def put_file(self, name: str, path: Path) -> str:
        self.files.setdefault(name, Path(path))
        return name

    def get_file(self, name: str, path: Path) -> Path:
        shutil.copyfile(self.file(name), path)
        return path

    def delete_file(self, name: str) -> None:
        self.files.pop(name, None)

    def model(self, role: str, method: str) -> str:
        return self.names.get(f"{role}.{method}", f"function:{role}.{method}")

    def log(self, message: str) -> None:
        self.lines.append(message)
