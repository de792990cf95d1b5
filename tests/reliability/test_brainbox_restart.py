"""The BrainBox server stopped and started again (same folder, same port) while cloned_audio
waits for its batch: the run re-connects, finishes, and no line is voiced twice."""

from __future__ import annotations

from pathlib import Path

from chara_resources.embedded.launcher import EmbeddedBrainBox
from chara_resources.storage import load_manifest

from .conftest import LINES, jobs, materialize, spawn, wait_for


def test_brainbox_restarted_mid_batch_loses_nothing(
    voice_home, copy_home, config_dirs, tmp_path: Path
) -> None:
    home = copy_home(voice_home)
    box = EmbeddedBrainBox(
        tmp_path / "brainbox", ["chara_resources.embedded.deciders:StandInVoice"]
    )
    url = box.ensure_running()
    port = box.state().port
    try:
        # The voice is registered on this server (the prepared one used another).
        assert materialize(home, config_dirs, url, "cloner_voice", "kiki|en").success
        voiced = "method = 'voice_to_text'"
        run = spawn(
            "cloned_audio", "kiki|en", home, config_dirs, tmp_path / "run.log", brainbox=url
        )
        wait_for("two lines voiced", lambda: jobs(box, f"{voiced} and success = 1") >= 2, run)
        assert box.stop()  # SIGTERM, then SIGKILL after a grace period
        assert box.state() is None
        box.start(port=port)  # the same job database and cache
        assert run.wait() == 0, run.output()[-3000:]
        assert "not reachable" in run.output() or "retrying" in run.output().lower()
        assert jobs(box, voiced) == LINES  # nothing submitted twice
        assert jobs(box, f"{voiced} and success = 1 and error is null") == LINES
    finally:
        box.stop()
    audio = load_manifest(home / "assets" / "cloned_audio" / "kiki" / "en")
    assert len(audio.clips) == LINES and not audio.errors
