"""paraphrase_sets (the LLM through BrainBox: the real small model) killed half-way, then run
again: every answer the killed run got is reused, no question is asked twice."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import load_manifest

from .conftest import jobs, materialize, spawn, wait_for, work_items

CONFIG = {"templates": ["timer_done"], "max_attempts": 1, "paraphrases_per_answer": 3}
GROUPS = 2  # timer_done without and with {index}: one question each


def test_killed_paraphrasing_resumes_without_asking_twice(
    full_server, config_dirs, tmp_path: Path
) -> None:
    from chara_assets.paraphrase.resource import TemplateFolder

    home, templates = tmp_path / "home", tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    url = full_server.running_url()
    extra = {"templates": TemplateFolder(templates_dir=str(templates))}
    stats = materialize(
        home, config_dirs, url, "avatar_paraphrase_stats", "kiki|en", resources=extra
    )
    assert stats.success
    asked = "decider = 'LlamaCpp' and method = 'question'"
    before = jobs(full_server, asked)
    run = spawn(
        "paraphrase_sets", "kiki|en", home, config_dirs, tmp_path / "killed.log",
        brainbox=url, templates=templates, config=CONFIG,
    )  # fmt: skip
    wait_for(
        "a first answer", lambda: jobs(full_server, f"{asked} and success = 1") - before >= 1, run
    )
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    assert jobs(full_server, asked) - before == GROUPS  # the killed run had asked everything
    assert not (home / "assets" / "paraphrase_sets" / "kiki" / "en").exists()

    again = spawn(
        "paraphrase_sets", "kiki|en", home, config_dirs, tmp_path / "again.log",
        brainbox=url, templates=templates, config=CONFIG,
    )  # fmt: skip
    assert again.wait() == 0, again.output()[-3000:]
    assert f"{GROUPS} items: 0 stored, {GROUPS} re-attached, 0 submitted" in again.output()
    assert jobs(full_server, asked) - before == GROUPS  # no question asked twice
    assert work_items(home, "paraphrase_sets", "kiki", "en", "answers") == GROUPS
    sets = load_manifest(home / "assets" / "paraphrase_sets" / "kiki" / "en")
    assert len(sets.outcomes) == GROUPS
