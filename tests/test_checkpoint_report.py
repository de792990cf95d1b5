"""Pure helpers of the training chain: reading the trainer's checkpoint list (both the
embedded trainer's result and kaia PiperTraining's JSON-lines report), the loss plot and the
listening page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chara_assets.voice.checkpoint_report import (
    ReportRow,
    checkpoint_list,
    checkpoint_page,
    loss_plot,
)


def _ckpt(epoch: int) -> dict:
    return {
        "training_id": "t",
        "version": "0",
        "filename": f"epoch={epoch}-step={10 * epoch}.ckpt",
        "epoch": epoch,
        "steps": 10 * epoch,
    }


def test_checkpoint_list_from_either_trainer() -> None:
    assert [c["epoch"] for c in checkpoint_list([_ckpt(2), _ckpt(1)])] == [1, 2]
    report = [
        json.dumps({"result": None, "log": "unpacking"}),
        "",
        json.dumps({"result": [_ckpt(3)]}),
        json.dumps({"result": None}),
    ]
    assert checkpoint_list("report.jsonl", report) == [_ckpt(3)]
    for bad in (None, "report.jsonl", [{"epoch": 1}], {"a": 1}):
        with pytest.raises(ValueError, match="not a list of checkpoints"):
            checkpoint_list(bad, [json.dumps({"result": None})] if bad == "report.jsonl" else None)


def test_loss_plot_and_page(tmp_path: Path) -> None:
    assert loss_plot([1, 2], [{}, {}], tmp_path / "none.png", title="t") is None
    plot = loss_plot(
        [1, 2, 3],
        [{"loss_g": 5.0, "train_mel": 2.0}, {"loss_g": 4.0}, {"loss_g": 3.0, "train_mel": 1.5}],
        tmp_path / "losses.png",
        title="kiki|en",
    )
    assert plot is not None and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = checkpoint_page(
        tmp_path / "report.html",
        title="Kiki <en>",
        source=ReportRow("source", "source.wav", "Hello & welcome"),
        training=[ReportRow("c1", "training/c1.wav", "A line.")],
        checkpoints=[
            ReportRow("epoch-0001", "checkpoints/epoch-0001.wav", "Hi", losses={"loss_g": 5.0}),
            ReportRow("epoch-0002", "checkpoints/epoch-0002.wav", "Hi", note="SILENT"),
        ],
        plot="losses.png",
    ).read_text()
    assert page.count("<audio") == 4 and "Kiki &lt;en&gt;" in page and "Hello &amp; welcome" in page
    assert "<td>5.000</td>" in page and "SILENT" in page and "src='losses.png'" in page
