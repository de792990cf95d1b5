"""The HTML reports (jinja2 templates in chara_assets/voice/templates/) as a person opens them:
the asset folder's ``report.html`` in a browser. Screenshots land in the test artifacts beside
the UI's, for a person to compare after a change to the templates."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chara_assets.voice.checkpoint_report import ReportRow, checkpoint_page, loss_plot
from chara_assets.voice.report import ReportClip, clips_page

from .conftest import artifacts_dir

TRICKY = "Tom & <b>Jerry</b> say 'hi'"  # must show as typed, not as markup


def _wav(folder: Path, name: str, text: str) -> str:
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-w", str(folder / "clips" / name), text], check=True)
    return f"clips/{name}"


def _open(page, path: Path, shot: str) -> str:
    page.goto(path.as_uri())
    players = page.locator("audio")
    count = players.count()
    # Every player's file resolves relative to the page: each loads its metadata (duration).
    page.evaluate("() => document.querySelectorAll('audio').forEach(a => a.load())")
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')]"
        ".every(a => a.readyState >= 1 && a.duration > 0)"
    )
    page.screenshot(path=artifacts_dir() / f"{shot}.png", full_page=True)
    assert count == page.locator("audio").count()
    return page.locator("body").inner_text()


def test_clips_report_plays_every_clip_and_shows_text_as_typed(page, tmp_path: Path) -> None:
    accepted = [
        ReportClip(
            f"a{i}", f"Accepted line {i}.", _wav(tmp_path, f"a{i}.wav", f"line {i}"), "2.0 s"
        )
        for i in range(3)
    ]
    rejected = [
        ReportClip("r0", TRICKY, _wav(tmp_path, "r0.wav", "rejected"), "mismatch (attempt 2)")
    ]
    report = clips_page(
        tmp_path / "report.html",
        "kiki (en): trimmed clips",
        [("accepted", accepted), ("rejected", rejected)],
        summary="3 clips, 0.1 minutes; 1 rejections",
    )
    text = _open(page, report, "report-trimmed-clips")
    assert page.locator("audio").count() == 4
    assert page.title() == "kiki (en): trimmed clips"
    assert "accepted (3 of 3)" in text and "rejected (1 of 1)" in text
    assert TRICKY in text  # escaped: the angle brackets are text
    assert page.locator("b").count() == 0


def test_checkpoint_report_plays_source_training_and_checkpoints(page, tmp_path: Path) -> None:
    rows = [
        ReportRow(
            name=f"epoch-{e:04d}",
            audio=_wav(tmp_path, f"epoch-{e}.wav", "Hello! I am your new voice."),
            text="Hello! I am your new voice.",
            losses={"loss_g": 30.0 - e, "loss_d": 2.5},
        )
        for e in (1, 2)
    ]
    plot = loss_plot([1, 2], [r.losses for r in rows], tmp_path / "losses.png", title="kiki")
    assert plot is not None
    report = checkpoint_page(
        tmp_path / "report.html",
        checkpoints=rows,
        title="kiki (en): checkpoints",
        summary=TRICKY,
        source=ReportRow("sample", _wav(tmp_path, "sample.wav", "the sample"), "the sample"),
        training=[ReportRow("t0", _wav(tmp_path, "t0.wav", "a clip"), "a clip")],
        plot="losses.png",
    )
    text = _open(page, report, "report-checkpoints")
    assert page.locator("audio").count() == 4  # source, one training clip, two checkpoints
    assert "epoch-0001" in text and "epoch-0002" in text and "29.000" in text
    assert TRICKY in text
    loaded = page.evaluate("() => document.querySelector('img[alt=losses]').naturalWidth")
    assert loaded > 0  # the loss plot resolves relative to the page
