"""chara's production voice training against kaia-brainbox 5.2.0's own PiperTraining and Piper.

kaia's server, its PiperTraining controller and container app (service.py, training.py, its
installer, the JSON-lines report, ``export``'s tar) and its Piper container app all run for real
(tests/contract/conftest.py). Only rhasspy's GPU training package is stood in:
tests/contract/standins/piper_training.pythonpath/piper_train/ trains on the CPU with piper1-gpl's
own code, warm-started from the packaged voice ``joe``; the base model file kaia's installer
would download is a small JSON naming that voice and lessac's epoch and step.

The training checked here is the voice chain's (``voice_chain``, tests/contract/voice_chain.py):
``piper_checkpoints`` and ``checkpoint_report`` with the production role profile on kiki's
trimmed clips, 3 epochs, a checkpoint every epoch, every clip in one batch. The suite trains
once for both files.
"""

import json
import re
import sqlite3
import tarfile
from pathlib import Path

import pytest

from chara_assets.voice.checkpoint_report import audio_stats, checkpoint_list
from chara_assets.voice.clip_assets import PiperArchive
from chara_assets.voice.piper_archive import Clip, build_archive
from chara_resources.brainbox import BrainBoxResource
from chara_resources.brainbox_client import BrainBoxClient
from chara_resources.brainbox_jobs import Job, run_long_job
from chara_resources.folder_asset import MANIFEST_NAME
from chara_resources.storage import load_manifest
from chara_resources.work_cache import WorkCache

from ..conftest import failure_message, speak
from .conftest import ContractBrainBox
from .voice_chain import VoiceChain

TEXTS = {
    "c001": "The quick brown fox jumps over the lazy dog.",
    "c002": "She sells sea shells by the sea shore.",
    "c003": "A stitch in time saves nine, they said.",
    "c004": "The river runs quietly under the old bridge.",
    "c005": "My neighbour plays the piano every evening.",
    "c006": "Bright lights filled the busy city at night.",
}


def install_base_model(server: ContractBrainBox, name: str) -> tuple[int, int]:
    """Install base model ``name`` with kaia's own installer (its installation.yaml entry, the
    file at ``base_models/<name>``); only the download is replaced by writing the stand-in's
    description of it. Returns the (epoch, step) of kaia's checkpoint, read from its URL."""
    from brainbox.deciders.voice_generation.piper_training.app.installer import (
        PiperTrainingInstaller,
    )
    from brainbox.deciders.voice_generation.piper_training.settings import (
        PiperTrainingSettings,
    )

    spec = PiperTrainingSettings.models_to_install[name]
    found = re.search(r"epoch%3D(\d+)-step%3D(\d+)\.ckpt", spec.url)
    epoch, step = int(found.group(1)), int(found.group(2))
    assert epoch == spec.epoch

    class StandInDownload(PiperTrainingInstaller):
        def _execute_model_downloading(self, model, model_spec) -> None:
            self.base_models_folder.mkdir(parents=True, exist_ok=True)
            description = {"warm_start": "joe", "epoch": model_spec.epoch, "step": step}
            (self.base_models_folder / model).write_text(json.dumps(description))

    folder = server.resources("PiperTraining")  # the container's /resources
    folder.mkdir(parents=True, exist_ok=True)
    installer = StandInDownload(folder)
    installer.install_service()
    installer.download_model(name, spec)
    return epoch, step


def seed_archive(home: Path, clips: Path, texts: dict[str, str]) -> Path:
    """A real Piper archive of espeak-ng speech, stored as the piper_archive asset."""
    folder = home / "assets" / "piper_archive" / "kiki" / "en"
    folder.mkdir(parents=True, exist_ok=True)
    entries = [Clip(cid, speak(text, clips / f"{cid}.wav"), text) for cid, text in texts.items()]
    stats = build_archive(entries, folder / "dataset.zip", speaker="kiki")
    manifest = PiperArchive(
        character="kiki",
        language="en",
        speaker="kiki",
        clips=len(entries),
        hours=0.002,
        size_bytes=stats.size_bytes,
    )
    document = {"kind": manifest.kind, "manifest": json.loads(manifest.model_dump_json())}
    (folder / MANIFEST_NAME).write_text(json.dumps(document))
    return folder / "dataset.zip"


@pytest.fixture(scope="module")
def lessac(contract_brainbox: ContractBrainBox) -> tuple[int, int]:
    """lessac installed on the contract BrainBox: its (epoch, step)."""
    return install_base_model(contract_brainbox, "lessac")


@pytest.fixture
def trained(voice_chain: VoiceChain) -> VoiceChain:
    """The voice chain's training (one per package)."""
    return voice_chain


def _train_job(server: ContractBrainBox, training_id: str) -> dict:
    with sqlite3.connect(server.folder / "brainbox.db") as db:
        ids = [row[0] for row in db.execute("select id from brain_box_jobs where method='train'")]
    with BrainBoxClient(server.url) as client:
        jobs = [client.job(i) for i in ids]
    return next(j for j in jobs if training_id in json.dumps(j.get("arguments"), default=str))


def test_kaias_training_reports_a_checkpoint_per_epoch(trained: VoiceChain) -> None:
    assert trained.result.success, failure_message(trained.result) + trained.server.container_logs()
    checkpoints = load_manifest(trained.home / "assets" / "piper_checkpoints" / "kiki" / "en")
    assert checkpoints.base_model == "lessac" and checkpoints.base_epochs == trained.base_epoch
    # chara counts epochs from the base model; Lightning counts steps on from it, two per batch
    # (the generator's and the discriminator's optimizer), one batch of every clip per epoch.
    assert [(c.name, c.epoch, c.steps) for c in checkpoints.checkpoints] == [
        (f"epoch-000{e}", e, trained.base_step + 2 * e) for e in (1, 2, 3)
    ]
    # kaia's files: every checkpoint kept (chara asks for keep_intermediate), named by the
    # absolute epoch.
    folder = trained.training_folder(checkpoints.training_id)
    on_server = folder / "preprocessed" / "lightning_logs" / "version_0" / "checkpoints"
    assert sorted(p.name for p in on_server.iterdir()) == [
        f"epoch={trained.base_epoch + e}-step={trained.base_step + 2 * e}.ckpt" for e in (1, 2, 3)
    ]

    # kaia's job result is its JSON-lines report in the cache; chara's parser reads it.
    job = _train_job(trained.server, checkpoints.training_id)
    with BrainBoxClient(trained.server.url) as client:
        report = client.download(job["result"], trained.home / "report.jsonl")
    listed = checkpoint_list(job["result"], report.read_text(encoding="utf-8").splitlines())
    assert [c["epoch"] for c in listed] == [trained.base_epoch + e for e in (1, 2, 3)]
    assert all(c["version"] == "0" for c in listed)

    # The stand-in's per-epoch lines came through kaia's log streaming into the Dagster log.
    messages = trained.messages()
    last = f"Epoch {trained.base_epoch + 3}/{trained.base_epoch + 3}, step "
    assert any(m.startswith("[PiperTraining] ") and last in m for m in messages), messages[-30:]
    assert any("PiperTraining.train: 100%" in m for m in messages)


def test_every_export_is_kaias_tar_with_the_preprocessed_config(trained: VoiceChain) -> None:
    assert trained.result.success
    checkpoints = load_manifest(trained.home / "assets" / "piper_checkpoints" / "kiki" / "en")
    config = trained.training_folder(checkpoints.training_id) / "preprocessed" / "config.json"
    voice = json.loads(config.read_text())
    assert voice["audio"]["sample_rate"] == 22050 and voice["espeak"]["voice"] == "en-us"
    tars = sorted(
        (trained.home / "work" / "piper_checkpoints" / "kiki" / "en").rglob("*.tar"),
        key=lambda p: p.name,
    )
    members = []
    for tar_path in tars:
        with tarfile.open(tar_path) as tar:
            members.append(sorted(tar.getnames()))
            stem = tar.getnames()[0].split(".")[0]
            assert tar.extractfile(f"{stem}.onnx.json").read() == config.read_bytes()
    assert sorted(members) == [
        [
            f"epoch={trained.base_epoch + e}-step={trained.base_step + 2 * e}{suffix}"
            for suffix in (".onnx", ".onnx.json")
        ]
        for e in (1, 2, 3)
    ]
    for checkpoint in checkpoints.checkpoints:
        assert checkpoints.path(checkpoint.config).read_bytes() == config.read_bytes()
        assert checkpoints.path(checkpoint.onnx).stat().st_size > 1_000_000


def test_every_checkpoint_speaks_on_kaias_piper(trained: VoiceChain) -> None:
    assert trained.result.success  # checkpoint_report ran in the same run as the training
    report = load_manifest(trained.home / "assets" / "checkpoint_report" / "kiki" / "en")
    assert [s.name for s in report.samples] == ["epoch-0001", "epoch-0002", "epoch-0003"]
    for sample in report.samples:
        stats = audio_stats(report.path(sample.audio))
        assert stats.duration_s > 0.5 and not stats.silent, (sample.name, stats)
    # chara removed its evaluation voices from kaia's Piper again.
    models = trained.server.resources("Piper") / "models"
    assert not list(models.glob("chara-eval-*"))


def test_kaia_without_keep_intermediate_keeps_the_last_checkpoint_only(
    contract_brainbox: ContractBrainBox, lessac: tuple[int, int], tmp_path: Path
) -> None:
    """What chara's keep_intermediate is for: with kaia's default parameters a checkpoint is
    made every K epochs, and each one replaces the one before."""
    archive = seed_archive(tmp_path / "home", tmp_path / "clips", dict(list(TEXTS.items())[:1]))
    parameters = {"epochs": 4, "batch_size": 1, "checkpoint_epochs": 2}
    call = BrainBoxResource(url=contract_brainbox.url, role_profile="production").call(
        "piper_trainer", "train"
    )
    lines: list[str] = []
    with BrainBoxClient(contract_brainbox.url) as client:
        client.upload("chara-contract-one-clip.zip", archive)
        record = run_long_job(
            client,
            WorkCache(tmp_path / "work").step("train"),
            call,
            Job(
                {
                    "training_id": "chara-contract-last-only",
                    "model": "lessac",
                    "parameters": parameters,
                    "dataset": "chara-contract-one-clip.zip",
                }
            ),
            log=lines.append,
            poll_s=1.0,
            timeout_s=1800,
        )
        assert record.ok, record.error
        report = client.download(record.result, tmp_path / "report.jsonl")
    base = lessac[0]
    listed = checkpoint_list(record.result, report.read_text(encoding="utf-8").splitlines())
    assert [c["epoch"] for c in listed] == [base + 4]
    training = contract_brainbox.resources("PiperTraining") / "training"
    folder = training / "chara-contract-last-only" / "preprocessed"
    kept = folder / "lightning_logs" / "version_0" / "checkpoints"
    assert [p.name for p in kept.iterdir()] == [listed[0]["filename"]]
    # one checkpoint every 2 epochs was made on the way
    epochs = [line for line in lines if re.match(r"\[PiperTraining\] Epoch \d+/\d+, step", line)]
    assert [("; saved " in line) for line in epochs] == [False, True, False, True], epochs
