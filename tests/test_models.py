"""The engines' model interface: the repeat-until-done loop, and the in-process implementation the
fast tier runs engines on (reuse and failures as the BrainBox batch gives them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chara_resources.brainbox_jobs import Job
from chara_resources.models import Models, repeat_until_done
from chara_resources.work_cache import WorkCache

from .engine_models import FunctionModels


def test_repeat_until_done_stops_when_nothing_is_left_or_enough_or_out_of_attempts() -> None:
    left = [3, 2, 1]
    seen: list[tuple[int, list[int]]] = []

    def attempt(n: int, items) -> None:
        seen.append((n, list(items)))
        left.pop()

    assert repeat_until_done(attempt, lambda: left, max_attempts=10) == 3
    assert seen == [(1, [3, 2, 1]), (2, [3, 2]), (3, [3])]

    left[:] = [1, 2, 3, 4]
    assert (
        repeat_until_done(attempt, lambda: left, max_attempts=10, done=lambda: len(left) < 3) == 2
    )
    left[:] = [1, 2, 3, 4]
    lines: list[str] = []
    made = repeat_until_done(
        attempt,
        lambda: left,
        max_attempts=1,
        progress=lambda n: f"{n}: {len(left)}",
        log=lines.append,
    )
    assert (made, lines) == (1, ["1: 3"])
    with pytest.raises(ValueError, match="max_attempts"):
        repeat_until_done(attempt, lambda: left, max_attempts=0)


def test_function_models_store_results_reuse_them_and_keep_failures_as_records(
    tmp_path: Path,
) -> None:
    def shout(arguments):
        if arguments["text"] == "boom":
            raise RuntimeError("the model broke")
        return arguments["text"].upper()

    models: Models = FunctionModels({"llm.question": shout})
    step = WorkCache(tmp_path).step("answers")
    jobs = [Job({"text": t}) for t in ("hi", "boom", "yo")]
    outcome = models.run(step, "llm", "question", jobs)
    records = list(outcome.records())
    assert [r.result for r in records] == ["HI", None, "YO"]
    assert "the model broke" in records[1].error
    assert (outcome.succeeded, outcome.failed) == (2, 1)

    again = models.run(WorkCache(tmp_path).step("answers"), "llm", "question", jobs)
    assert (again.reused, again.submitted) == (2, 1)  # only the failure is asked again
    assert [c[1]["text"] for c in models.calls] == ["hi", "boom", "yo", "boom"]


def test_function_models_store_result_files_with_the_item(tmp_path: Path) -> None:
    def voice(arguments):
        out = tmp_path / f"{arguments['text']}.wav"
        out.write_bytes(b"RIFF" + arguments["text"].encode())
        return out

    models = FunctionModels({"cloner.voice_to_text": voice})
    step = WorkCache(tmp_path / "work").step("voiced")
    record = next(
        models.run(
            step, "cloner", "voice_to_text", [Job({"text": "a"})], result_file=".wav"
        ).records()
    )
    assert record.files[".wav"].read_bytes() == b"RIFFa"
    assert record.files[".wav"].parent == step.folder
