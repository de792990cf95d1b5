"""Two runs of the same asset partition at once: the second waits for the first, then reuses
everything it stored; nothing is voiced twice and the stored partition is whole."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from chara_resources.storage import load_manifest

from .conftest import LINES, jobs, spawn, wait_for


def test_second_run_of_a_partition_waits_and_corrupts_nothing(
    voice_home, copy_home, config_dirs, full_server, tmp_path: Path
) -> None:
    home = copy_home(voice_home)
    url = full_server.running_url()
    voiced = "method = 'voice_to_text'"
    before = jobs(full_server, voiced)
    first = spawn(
        "cloned_audio", "kiki|en", home, config_dirs, tmp_path / "first.log", brainbox=url
    )
    # The second starts once the first has submitted its batch and before it has finished.
    wait_for("the first run's batch", lambda: jobs(full_server, voiced) - before == LINES, first)
    second = spawn(
        "cloned_audio", "kiki|en", home, config_dirs, tmp_path / "second.log", brainbox=url
    )
    assert first.wait() == 0, first.output()[-3000:]
    assert second.wait() == 0, second.output()[-3000:]

    assert "is being materialized by another run" in second.output()
    assert jobs(full_server, voiced) - before == LINES  # nothing voiced twice
    audio = load_manifest(home / "assets" / "cloned_audio" / "kiki" / "en")
    assert len(audio.clips) == LINES and not audio.errors
    for clip in audio.clips:
        assert sf.info(audio.path(clip.file)).duration > 1.0
    records = list((home / "work" / "cloned_audio" / "kiki" / "en" / "voiced").glob("*.json"))
    assert len(records) == LINES
    assert all('"error": null' in r.read_text() for r in records)
    leftovers = [p.name for p in (home / "assets" / "cloned_audio" / "kiki").iterdir()]
    assert sorted(leftovers) == [".en.lock", "en"]  # no staging folder or backup left
