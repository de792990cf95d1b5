"""The training chain's engines (chara_assets/voice/training.py) on FunctionModels: what they
ask the trainer and the voice for, what they keep, what a re-run asks again.

Training is GPU work, so the ``piper_trainer`` and ``piper_voice`` roles are played by
:class:`PiperStandIn` below: its checkpoints are small byte strings named for their epoch, and
its "voice" writes a real WAV whose loudness says which installed checkpoint spoke. The
archive, the work cache, the voice tars, the WAV checks and the report page are the real code.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_assets.voice.piper_archive import Clip, build_archive
from chara_assets.voice.training import (
    TrainingError,
    TrainingSettings,
    deliver_voice,
    train_voice,
    voice_checkpoints,
    write_checkpoint_report,
)
from chara_resources.brainbox_jobs import BatchFailed
from chara_resources.decider_shapes import base_epochs
from chara_resources.work_cache import WorkCache

from .conftest import write_tone
from .engine_models import FunctionModels

# kaia's PiperTraining counts epochs from its base model: lessac's, from kaia's own settings.
LESSAC = base_epochs("PiperTraining", "lessac")
SETTINGS = TrainingSettings(
    epochs=3,
    checkpoint_epochs=1,
    batch_size=2,
    sample_rate=22050,
    quality="x_low",
    validation_split=0.0,
    keep_training_files=True,
    poll_s=0.01,
)


class PiperStandIn:
    """``piper_trainer`` (train, export, delete) and ``piper_voice`` (upload_tar_voice,
    voiceover, delete_voice) as functions for FunctionModels.

    ``decider``: what ``model()`` says serves training (``PiperTraining`` answers with a
    JSON-lines report file, as kaia's does; ``PiperTrainer`` with the list itself).
    ``epochs``: the checkpoints' epochs as the trainer counts them.
    """

    def __init__(self, folder: Path, decider: str, epochs: list[int], losses: bool = False):
        self.folder, self.decider, self.epochs, self.losses = folder, decider, epochs, losses
        self.installed: dict[str, bytes] = {}  # voice name -> its .onnx
        self.fail_export: set[int] = set()  # epochs whose export fails (once each)
        self.models = FunctionModels(
            {
                "piper_trainer.train": self.train,
                "piper_trainer.export": self.export,
                "piper_trainer.delete": lambda args: None,
                "piper_voice.upload_tar_voice": self.upload,
                "piper_voice.voiceover": self.voiceover,
                "piper_voice.delete_voice": self.delete_voice,
            },
            names={"piper_trainer.train": decider},
        )

    def train(self, args: dict) -> object:
        assert Path(self.models.file(args["dataset"])).stat().st_size > 0
        checkpoints = [
            {
                "training_id": args["training_id"],
                "version": "0",
                "filename": f"epoch={e}.ckpt",
                "epoch": e,
                "steps": 2 * (e - self.epochs[0] + 1),
                "losses": {"loss_g": 30.0 / e, "train_mel": 2.0} if self.losses else {},
            }
            for e in self.epochs
        ]
        if self.decider != "PiperTraining":
            return checkpoints
        report = self.folder / f"{args['training_id']}.jsonl"
        lines = [{"result": None, "log": "unpacking"}, {"result": checkpoints}, {"result": None}]
        report.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        return self.models.put_file(report.name, report)

    def export(self, args: dict) -> Path:
        epoch = args["ckpt"]["epoch"]
        if epoch in self.fail_export:
            self.fail_export.discard(epoch)
            raise RuntimeError(f"export of epoch {epoch} failed")
        onnx, config = self.folder / "v.onnx", self.folder / "v.onnx.json"
        onnx.write_bytes(f"onnx of epoch {epoch}".encode())
        config.write_text(json.dumps({"audio": {"sample_rate": 22050}, "epoch": epoch}))
        tar = self.folder / f"export-{epoch}.tar"
        with tarfile.open(tar, "w") as out:
            out.add(onnx, arcname="voice.onnx")
            out.add(config, arcname="voice.onnx.json")
        return tar

    def upload(self, args: dict) -> None:
        with tarfile.open(self.models.file(args["tar_file"])) as tar:
            onnx = next(m for m in tar.getmembers() if m.name.endswith(".onnx"))
            self.installed[args["name"]] = tar.extractfile(onnx).read()

    def voiceover(self, args: dict) -> Path:
        onnx = self.installed[args["model"]]  # KeyError: not installed, as Piper fails
        epoch = int(onnx.split()[-1])
        loudness = 0.0 if b"silent" in onnx else 0.1 * epoch
        wav = self.folder / f"said-{args['model']}.wav"
        sf.write(wav, loudness * np.ones(11025, dtype="float32"), 22050)
        return wav

    def delete_voice(self, args: dict) -> None:
        del self.installed[args["name"]]

    def calls(self, function: str) -> int:
        return sum(name == function for name, _ in self.models.calls)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    texts = {"c001": "The first line.", "c002": "The second line.", "c003": "A third one."}
    clips = [
        Clip(cid, write_tone(tmp_path / f"{cid}.wav", 0.5, rate=22050), text)
        for cid, text in texts.items()
    ]
    return build_archive(clips, tmp_path / "dataset.zip", speaker="kiki").path


def _train(piper: PiperStandIn, work: WorkCache, archive: Path, folder: Path, **settings):
    folder.mkdir(parents=True)
    return train_voice(
        piper.models,
        work,
        archive,
        lambda: folder,
        character="kiki",
        language="en",
        settings=SETTINGS.model_copy(update=settings),
        run_id="run-1",
    )


def test_production_report_is_read_and_epochs_count_from_the_base(
    tmp_path: Path, archive: Path
) -> None:
    piper = PiperStandIn(tmp_path, "PiperTraining", [LESSAC + 1, LESSAC + 2, LESSAC + 3])
    result = _train(piper, WorkCache(tmp_path / "work"), archive, tmp_path / "out")
    assert LESSAC > 0 and result.base_model == "lessac" and result.base_epochs == LESSAC
    assert [(c.name, c.epoch, c.steps) for c in result.checkpoints] == [
        ("epoch-0001", 1, 2),
        ("epoch-0002", 2, 4),
        ("epoch-0003", 3, 6),
    ]
    for c in result.checkpoints:  # each export unpacked into the asset folder
        assert result.path(c.onnx).read_bytes() == f"onnx of epoch {LESSAC + c.epoch}".encode()
        assert json.loads(result.path(c.config).read_text())["epoch"] == LESSAC + c.epoch
    (_, train), *_ = piper.models.calls
    assert train["parameters"]["keep_intermediate"] is True  # or kaia keeps the last only
    assert "quality" not in train["parameters"] and "language" not in train["parameters"]
    assert train["dataset"] in piper.models.files  # the archive, put under that name
    assert result.loss_plot is None  # no losses reported: no plot
    assert [e.epoch for e in result.history] == [1, 2, 3]


def test_embedded_trainer_with_losses_and_cleanup(tmp_path: Path, archive: Path) -> None:
    piper = PiperStandIn(tmp_path, "PiperTrainer", [1, 2], losses=True)
    result = _train(
        piper, WorkCache(tmp_path / "work"), archive, tmp_path / "out", keep_training_files=False
    )
    assert result.base_model == "joe" and result.base_epochs == 0
    assert [c.name for c in result.checkpoints] == ["epoch-0001", "epoch-0002"]
    assert result.checkpoints[1].losses == {"loss_g": 15.0, "train_mel": 2.0}
    assert result.path("losses.png").read_bytes()[:4] == b"\x89PNG"
    train = piper.models.calls[0][1]
    assert train["parameters"]["quality"] == "x_low" and train["parameters"]["language"] == "en"
    assert piper.calls("piper_trainer.delete") == 1
    assert any("deleted the training files" in line for line in piper.models.lines)


def test_a_rerun_asks_only_for_what_is_missing(tmp_path: Path, archive: Path) -> None:
    piper = PiperStandIn(tmp_path, "PiperTrainer", [1, 2, 3])
    piper.fail_export = {2}
    work = WorkCache(tmp_path / "work")
    with pytest.raises(BatchFailed, match="export of epoch 2 failed"):
        _train(piper, work, archive, tmp_path / "first")
    assert piper.calls("piper_trainer.train") == 1 and piper.calls("piper_trainer.export") == 3
    piper.models.files.clear()  # even without the dataset on the server: nothing re-uploaded
    result = _train(piper, work, archive, tmp_path / "second")
    assert [c.name for c in result.checkpoints] == ["epoch-0001", "epoch-0002", "epoch-0003"]
    assert piper.calls("piper_trainer.train") == 1  # the stored training is reused
    assert piper.calls("piper_trainer.export") == 4  # only the failed export again
    assert not piper.models.files
    # Another parameter is another training.
    _train(piper, work, archive, tmp_path / "third", batch_size=4)
    assert piper.calls("piper_trainer.train") == 2


def test_bad_input_fails_before_anything_is_asked(tmp_path: Path, archive: Path) -> None:
    piper = PiperStandIn(tmp_path, "PiperTraining", [LESSAC + 1])
    work = WorkCache(tmp_path / "work")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(TrainingError, match=r"cannot be trained on: .*not a readable ZIP"):
        _train(piper, work, broken, tmp_path / "a")
    with pytest.raises(TrainingError, match="quality 'huge': use one of x_low, medium, high"):
        _train(piper, work, archive, tmp_path / "b", quality="huge")
    with pytest.raises(TrainingError, match=r"cannot train en from scratch: .*en lessac"):
        _train(piper, work, archive, tmp_path / "c", base_models={"en": ""})
    assert piper.models.calls == [] and piper.models.files == {}


@pytest.mark.parametrize(
    ("result", "expected"),
    [([], "reported no checkpoint"), ({"a": 1}, "is not a list of checkpoints")],
)
def test_a_training_without_checkpoints_fails(
    tmp_path: Path, archive: Path, result: object, expected: str
) -> None:
    piper = PiperStandIn(tmp_path, "PiperTrainer", [])
    piper.models.functions["piper_trainer.train"] = lambda args: result
    with pytest.raises(TrainingError, match=expected):
        _train(piper, WorkCache(tmp_path / "work"), archive, tmp_path / "out")


def test_a_failed_training_names_its_error(tmp_path: Path, archive: Path) -> None:
    piper = PiperStandIn(tmp_path, "PiperTrainer", [])

    def out_of_memory(args: dict) -> None:
        raise MemoryError("CUDA out of memory")

    piper.models.functions["piper_trainer.train"] = out_of_memory
    with pytest.raises(TrainingError, match=r"chara-kiki-en-\w+ failed: .*CUDA out of memory"):
        _train(piper, WorkCache(tmp_path / "work"), archive, tmp_path / "out")


def test_report_voices_each_checkpoint_once(tmp_path: Path, archive: Path) -> None:
    piper = PiperStandIn(tmp_path, "PiperTrainer", [1, 2])
    checkpoints = _train(piper, WorkCache(tmp_path / "work"), archive, tmp_path / "trained")
    work = WorkCache(tmp_path / "report-work")
    voiced = voice_checkpoints(piper.models, work, checkpoints, "Hello there.", run_id="r1")
    names = [f"chara-eval-{checkpoints.training_id}-epoch-000{i}" for i in (1, 2)]
    assert [args["model"] for f, args in piper.models.calls if f.endswith("voiceover")] == names
    assert piper.installed == {}  # the evaluation voices are removed again
    assert not [name for name in piper.models.files if name.endswith(".tar")]  # and the tars
    levels = [float(np.abs(sf.read(r.files[".wav"])[0]).max()) for r in voiced]
    assert levels == pytest.approx([0.1, 0.2], abs=1e-3)  # each checkpoint spoke its own sample

    calls = len(piper.models.calls)
    again = voice_checkpoints(piper.models, work, checkpoints, "Hello there.", run_id="r2")
    assert len(piper.models.calls) == calls and len(again) == 2  # nothing asked again

    sample = write_tone(tmp_path / "sample.wav", 1.0, rate=22050)
    folder = tmp_path / "report"
    folder.mkdir()
    report = write_checkpoint_report(
        folder,
        checkpoints,
        again,
        "Hello there.",
        sample=(sample, "The voice sample."),
        archive=archive,
        training_clips=2,
    )
    assert [(s.name, s.duration_s) for s in report.samples] == [
        ("epoch-0001", 0.5),
        ("epoch-0002", 0.5),
    ]
    page = report.path(report.report).read_text()
    assert page.count("<audio") == 1 + 2 + 2 and "training/c002.wav" in page
    assert "c003" not in page and "The voice sample." in page


def test_delivery_installs_the_chosen_checkpoint(tmp_path: Path, archive: Path) -> None:
    piper = PiperStandIn(tmp_path, "PiperTrainer", [1, 2])
    checkpoints = _train(piper, WorkCache(tmp_path / "work"), archive, tmp_path / "trained")
    work, voices = WorkCache(tmp_path / "deliver-work"), tmp_path / "voices"

    def deliver(checkpoint: str, folder: Path):
        folder.mkdir()
        return deliver_voice(
            piper.models,
            work,
            checkpoints,
            checkpoint,
            lambda: folder,
            voice_name="kiki-en",
            voices=voices,
            text="Hello.",
            run_id=folder.name,
        )

    with pytest.raises(
        TrainingError, match=r"no checkpoint 'epoch-0009'; .* epoch-0001, epoch-0002"
    ):
        deliver("epoch-0009", tmp_path / "typo")
    assert piper.models.calls[-1][0] == "piper_trainer.export"  # nothing asked

    voice = deliver("epoch-0002", tmp_path / "ok")
    assert piper.installed == {"kiki-en": b"onnx of epoch 2"}
    assert (voices / "kiki-en.onnx").read_bytes() == b"onnx of epoch 2"
    assert json.loads((voices / "kiki-en.onnx.json").read_text())["epoch"] == 2
    assert voice.checkpoint == "epoch-0002" and sf.info(voice.path(voice.check)).duration == 0.5

    checkpoints.path(checkpoints.find("epoch-0001").onnx).write_bytes(b"silent onnx of epoch 1")
    with pytest.raises(TrainingError, match="'kiki-en' speaks silence; pick another"):
        deliver("epoch-0001", tmp_path / "silent")
    assert (voices / "kiki-en.onnx").read_bytes() == b"onnx of epoch 2"  # the good one stays
