"""The training chain's engines (no Dagster): train a Piper voice and export its checkpoints,
voice the evaluation text with each one, deliver the chosen one.

They reach the trainer and the voice through the engines' ``Models`` (chara_resources/models.py)
and keep every result in a work cache, so a re-run asks for nothing it already has:
``piper_trainer.train`` (one long job: a checkpoint list, or kaia's report file naming it),
``piper_trainer.export`` (a tar per checkpoint), ``piper_trainer.delete``,
``piper_voice.upload_tar_voice`` / ``voiceover`` / ``delete_voice``.
"""

import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from chara_resources.brainbox_jobs import Job
from chara_resources.decider_shapes import BASE_MODELS, base_epochs
from chara_resources.folder_asset import FolderManifest
from chara_resources.models import Models
from chara_resources.paths import check_slug, safe_join, temporary_sibling
from chara_resources.work_cache import ItemRecord, WorkCache, WorkStep, content_hash, file_sha256

QUALITIES = ("x_low", "medium", "high")
# What kaia's PiperTraining decider takes; the embedded trainer also takes the rest.
_PRODUCTION_PARAMETERS = (
    "epochs",
    "sample_rate",
    "batch_size",
    "validation_split",
    "checkpoint_epochs",
)


class TrainingError(ValueError):
    """Bad input, or a training that gave nothing usable; the message names which."""


class PiperCheckpoint(BaseModel):
    name: str  # e.g. "epoch-0003"; what delivery's config names
    epoch: int
    steps: int
    losses: dict[str, float] = Field(default_factory=dict)
    onnx: str  # relative to the asset folder
    config: str


class EpochLosses(BaseModel):
    epoch: int
    steps: int
    losses: dict[str, float] = Field(default_factory=dict)


class PiperCheckpoints(FolderManifest):
    """Every checkpoint of one training as an ONNX voice (``checkpoints/<name>/voice.onnx``
    and ``voice.onnx.json``), with the epoch, step and losses the trainer reported."""

    character: str
    language: str
    training_id: str
    base_model: str
    base_epochs: int = 0  # the base model's own epochs; checkpoint epochs count from there
    parameters: dict[str, bool | float | int | str]
    archive_sha256: str
    checkpoints: list[PiperCheckpoint]
    history: list[EpochLosses] = Field(default_factory=list)  # every epoch, where reported
    loss_plot: str | None = None

    def find(self, name: str) -> PiperCheckpoint:
        for checkpoint in self.checkpoints:
            if checkpoint.name == name:
                return checkpoint
        raise TrainingError(
            f"no checkpoint {name!r}; this training has "
            + ", ".join(c.name for c in self.checkpoints)
        )


class CheckpointSample(BaseModel):
    name: str
    audio: str
    duration_s: float
    rms: float


class CheckpointReport(FolderManifest):
    """The evaluation text voiced by every checkpoint, next to the source sample and a few
    training clips: ``report.html`` plays them all."""

    character: str
    language: str
    training_id: str
    text: str
    samples: list[CheckpointSample]
    report: str = "report.html"


class DeliveredVoice(FolderManifest):
    """The chosen checkpoint, installed on the Piper decider and written where the assistant's
    settings point (``<voices folder>/<voice name>.onnx`` + ``.onnx.json``)."""

    character: str
    language: str
    checkpoint: str
    training_id: str
    voice_name: str
    onnx: str  # absolute path of the delivered voice
    config: str
    check: str = "check.wav"  # the evaluation text voiced by the installed voice


class TrainingSettings(BaseModel):
    """What a training is asked for (the asset's config is one; docs/training.md)."""

    base_models: dict[str, str] = Field(
        default_factory=dict,
        description="base model per language, over the trainer's defaults (PiperTraining: "
        "en lessac, de thorsten, ru denis; the embedded trainer: en joe, the packaged voice, "
        "de/ru from scratch); an empty name trains from scratch",
    )
    epochs: int = Field(default=5, ge=1, description="epochs to train (on top of the base model)")
    checkpoint_epochs: int = Field(default=1, ge=1, description="a checkpoint every K epochs")
    batch_size: int = Field(default=8, ge=1, description="clips per step (memory grows with it)")
    sample_rate: int = Field(
        default=22050, ge=8000, le=192000, description="Hz; the archive must have this rate"
    )
    quality: str = Field(default="medium", description="x_low, medium or high")
    validation_split: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="share of clips for val_* losses"
    )
    keep_training_files: bool = Field(
        default=True,
        description="keep the checkpoints (~200 MB each) on the trainer after exporting them",
    )
    poll_s: float = Field(default=10.0, gt=0, description="seconds between progress polls")


def training_parameters(settings: TrainingSettings, language: str, production: bool) -> dict:
    """The trainer's ``parameters``; TrainingError for a quality no trainer has."""
    if settings.quality not in QUALITIES:  # the numbers' ranges are the model's own
        raise TrainingError(f"quality {settings.quality!r}: use one of {', '.join(QUALITIES)}")
    parameters = {name: getattr(settings, name) for name in _PRODUCTION_PARAMETERS}
    if production:
        # without it kaia's PiperTraining keeps only the last checkpoint
        parameters["keep_intermediate"] = True
    else:
        parameters.update(language=language, quality=settings.quality)
    return parameters


def _stored(step: WorkStep, job: Job) -> bool:
    found = step.get(step.key(job.cache_inputs(), job.label))
    return found is not None and found.ok


def train_voice(
    models: Models,
    work: WorkCache,
    archive: Path,
    staging: Callable[[], Path],
    *,
    character: str,
    language: str,
    settings: TrainingSettings,
    run_id: str,
) -> PiperCheckpoints:
    """Train on the Piper archive at ``archive`` and export every checkpoint into the folder
    ``staging()`` gives once the exports are in (``checkpoints/<name>/voice.onnx``,
    ``losses.png``). The training id comes from the archive's content, the base model and
    the parameters; a stored training or export is reused, a submitted one re-attached.
    Raises TrainingError for a bad archive (before anything is uploaded), a bad setting, a
    failed training or one without checkpoints."""
    from chara_resources.embedded.training import read_voice_tar

    from .checkpoint_report import CKPT_FIELDS, checkpoint_list, loss_plot
    from .piper_archive import check_archive

    problems = check_archive(archive, sample_rate=settings.sample_rate)
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise TrainingError(f"the Piper archive {archive} cannot be trained on: {shown}{more}")
    decider = models.model("piper_trainer", "train").split(":")[0]
    parameters = training_parameters(settings, language, decider == "PiperTraining")
    base_model = {**BASE_MODELS.get(decider, {}), **settings.base_models}.get(language, "")
    if decider == "PiperTraining" and not base_model:
        raise TrainingError(
            f"kaia's PiperTraining cannot train {language} from scratch: name a base "
            "model it has installed in base_models (its own: "
            + ", ".join(f"{k} {v}" for k, v in BASE_MODELS["PiperTraining"].items())
            + ")"
        )
    sha = file_sha256(archive)
    what = {"archive": sha, "model": base_model, "parameters": parameters}
    training_id = f"chara-{character}-{language}-{content_hash(what)[:12]}"
    dataset = f"chara-dataset-{character}-{language}-{sha[:16]}.zip"
    arguments = {"training_id": training_id, "model": base_model, "parameters": parameters}
    job = Job(arguments | {"dataset": dataset}, inputs=what, label="train")
    step = work.step("train")
    if not _stored(step, job):
        models.log(f"dataset {dataset}: {archive} ({archive.stat().st_size:,} bytes)")
        models.put_file(dataset, archive)
    record = models.run_long(step, "piper_trainer", "train", job, poll_s=settings.poll_s)
    if not record.ok:
        raise TrainingError(f"training {training_id} failed: {record.error}")
    lines = None
    if isinstance(record.result, str):  # kaia's PiperTraining: a report file in the cache
        with tempfile.TemporaryDirectory() as tmp:
            report = models.get_file(record.result, Path(tmp) / "report.jsonl")
            lines = report.read_text(encoding="utf-8").splitlines()
    try:
        trained = checkpoint_list(record.result, lines)
    except ValueError as exc:
        raise TrainingError(f"training {training_id}: {exc}") from None
    if not trained:
        raise TrainingError(f"training {training_id} reported no checkpoint")

    offset = base_epochs(decider, base_model)
    names = [f"epoch-{int(c['epoch']) - offset:04d}" for c in trained]
    exports = work.step("export", params={"training_id": training_id})
    jobs = [
        Job({"ckpt": {k: c[k] for k in CKPT_FIELDS}}, label=name)
        for c, name in zip(trained, names, strict=True)
    ]
    outcome = models.run(exports, "piper_trainer", "export", jobs, result_file=".tar")
    outcome.check(max_failure_ratio=0.0)
    folder = staging()
    checkpoints = []
    for c, name, record in zip(trained, names, outcome.records(), strict=True):
        onnx, voice_config, _stem = read_voice_tar(record.files[".tar"])
        target = folder / "checkpoints" / name
        target.mkdir(parents=True)
        (target / "voice.onnx").write_bytes(onnx)
        (target / "voice.onnx.json").write_bytes(voice_config)
        checkpoints.append(
            PiperCheckpoint(
                name=name,
                epoch=int(c["epoch"]) - offset,
                steps=int(c["steps"]),
                losses={k: float(v) for k, v in (c.get("losses") or {}).items()},
                onnx=f"checkpoints/{name}/voice.onnx",
                config=f"checkpoints/{name}/voice.onnx.json",
            )
        )
    if not settings.keep_training_files:
        cleanup = work.step("delete", params={"run": run_id})
        models.run(cleanup, "piper_trainer", "delete", [Job({"training_id": training_id})])
        models.log(f"deleted the training files of {training_id} on the trainer")
    history = [
        EpochLosses(
            epoch=int(e["epoch"]) - offset, steps=int(e["steps"]), losses=e.get("losses") or {}
        )
        for c in trained
        for e in c.get("history") or []
    ] or [EpochLosses(epoch=c.epoch, steps=c.steps, losses=c.losses) for c in checkpoints]
    plot = loss_plot(
        [e.epoch for e in history],
        [e.losses for e in history],
        folder / "losses.png",
        title=f"{character}|{language}: {training_id}",
    )
    return PiperCheckpoints(
        character=character,
        language=language,
        training_id=training_id,
        base_model=base_model,
        base_epochs=offset,
        parameters=parameters,
        archive_sha256=sha,
        checkpoints=checkpoints,
        history=history,
        loss_plot="losses.png" if plot else None,
    ).bind(folder)


def install_voices(
    models: Models, step: WorkStep, checkpoints: PiperCheckpoints, names: dict[str, str]
) -> None:
    """Install ``{checkpoint name: voice name}`` on the ``piper_voice`` role; the voice tars
    are removed from the models' files again."""
    from .checkpoint_report import write_voice_tar

    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, voice in names.items():
            checkpoint = checkpoints.find(name)
            tar = write_voice_tar(
                checkpoints.path(checkpoint.onnx),
                checkpoints.path(checkpoint.config),
                Path(tmp) / f"{name}.tar",
                name,
            )
            # Named by content: a leftover tar of another checkpoint is never reused.
            tar_file = models.put_file(f"{voice}-{file_sha256(tar)[:12]}.tar", tar)
            jobs.append(Job({"tar_file": tar_file, "name": voice}, label=name))
        try:
            outcome = models.run(step, "piper_voice", "upload_tar_voice", jobs)
        finally:  # installed (or not): the tars are not needed any more
            for job in jobs:
                models.delete_file(job.arguments["tar_file"])
    outcome.check(max_failure_ratio=0.0)


def voice_checkpoints(
    models: Models, work: WorkCache, checkpoints: PiperCheckpoints, text: str, *, run_id: str
) -> list[ItemRecord]:
    """``text`` voiced by every checkpoint (records with a ``.wav``, in checkpoint order).
    Only checkpoints whose sample is not stored yet are installed, as
    ``chara-eval-<training>-<checkpoint>``, and removed again afterwards."""
    prefix = f"chara-eval-{checkpoints.training_id}"
    step = work.step("voiceover", params={"text": text})
    jobs = [
        Job(
            {"text": text, "model": f"{prefix}-{c.name}"},
            inputs={"onnx": file_sha256(checkpoints.path(c.onnx)), "text": text},
            label=c.name,
        )
        for c in checkpoints.checkpoints
    ]
    missing = {job.label: job.arguments["model"] for job in jobs if not _stored(step, job)}
    if missing:
        install_voices(models, work.step("upload", params={"run": run_id}), checkpoints, missing)
    outcome = models.run(step, "piper_voice", "voiceover", jobs, result_file=".wav")
    if missing:  # the evaluation voices are not needed on the server any more
        models.run(
            work.step("delete", params={"run": run_id}),
            "piper_voice",
            "delete_voice",
            [Job({"name": voice}, label=name) for name, voice in missing.items()],
        ).check(max_failure_ratio=1.0)
    outcome.check(max_failure_ratio=0.0)
    return list(outcome.records())


def write_checkpoint_report(
    folder: Path,
    checkpoints: PiperCheckpoints,
    voiced: list[ItemRecord],
    text: str,
    *,
    sample: tuple[Path, str],
    archive: Path,
    training_clips: int,
) -> CheckpointReport:
    """``report.html`` in ``folder``: the voice sample (``sample``: its wav and text), the
    first ``training_clips`` clips of the archive, each checkpoint's voiced ``text`` (from
    :func:`voice_checkpoints`) with its losses, and the loss plot."""
    from .checkpoint_report import ReportRow, audio_stats, checkpoint_page

    (folder / "checkpoints").mkdir()
    samples, rows = [], []
    for c, record in zip(checkpoints.checkpoints, voiced, strict=True):
        audio = f"checkpoints/{c.name}.wav"
        shutil.copyfile(record.files[".wav"], folder / audio)
        stats = audio_stats(folder / audio)
        samples.append(
            CheckpointSample(name=c.name, audio=audio, duration_s=stats.duration_s, rms=stats.rms)
        )
        note = f"{stats.duration_s:.1f} s" + (" — SILENT" if stats.silent else "")
        rows.append(ReportRow(c.name, audio, text, note=note, losses=c.losses))
    shutil.copyfile(sample[0], folder / "source.wav")
    training = []
    (folder / "training").mkdir()
    with zipfile.ZipFile(archive) as zf:
        wavs = sorted(n for n in zf.namelist() if n.endswith(".wav"))
        for name in wavs[: max(0, training_clips)]:
            clip = check_slug(Path(name).stem.lower(), "clip id")
            (folder / "training" / f"{clip}.wav").write_bytes(zf.read(name))
            clip_text = zf.read(name[: -len(".wav")] + ".txt").decode("utf-8")
            training.append(ReportRow(Path(name).stem, f"training/{clip}.wav", clip_text))
    plot = None
    if checkpoints.loss_plot:
        shutil.copyfile(checkpoints.path(checkpoints.loss_plot), folder / "losses.png")
        plot = "losses.png"
    report = CheckpointReport(
        character=checkpoints.character,
        language=checkpoints.language,
        training_id=checkpoints.training_id,
        text=text,
        samples=samples,
    ).bind(folder)
    checkpoint_page(
        folder / report.report,
        title=f"{checkpoints.character} ({checkpoints.language}): Piper checkpoints",
        source=ReportRow("source", "source.wav", sample[1]),
        training=training,
        checkpoints=rows,
        plot=plot,
        summary=f"Training {checkpoints.training_id}, base model "
        f"{checkpoints.base_model or '(none: from scratch)'}.",
    )
    return report


def deliver_voice(
    models: Models,
    work: WorkCache,
    checkpoints: PiperCheckpoints,
    checkpoint: str,
    staging: Callable[[], Path],
    *,
    voice_name: str,
    voices: Path,
    text: str,
    run_id: str,
) -> DeliveredVoice:
    """Install ``checkpoint`` on the ``piper_voice`` role as ``voice_name``, voice ``text``
    with it as a check (``check.wav`` in the folder ``staging()`` gives) and write
    ``<voices>/<voice_name>.onnx`` and ``.onnx.json``. TrainingError for an unknown
    checkpoint or a voice that speaks silence (then nothing is written to ``voices``)."""
    from .checkpoint_report import audio_stats

    chosen = checkpoints.find(checkpoint)
    name = check_slug(voice_name, "voice name")
    install_voices(
        models, work.step("upload", params={"run": run_id}), checkpoints, {chosen.name: name}
    )
    step = work.step("check", params={"run": run_id})
    job = Job({"text": text, "model": name})
    outcome = models.run(step, "piper_voice", "voiceover", [job], result_file=".wav")
    outcome.check(max_failure_ratio=0.0)
    folder = staging()
    shutil.copyfile(next(outcome.records()).files[".wav"], folder / "check.wav")
    if audio_stats(folder / "check.wav").silent:
        raise TrainingError(f"the delivered voice {name!r} speaks silence; pick another checkpoint")
    voices.mkdir(parents=True, exist_ok=True)
    targets = {}
    for source, suffix in ((chosen.config, ".onnx.json"), (chosen.onnx, ".onnx")):
        target = safe_join(voices, f"{name}{suffix}")
        with temporary_sibling(target) as tmp:
            shutil.copyfile(checkpoints.path(source), tmp)
        targets[suffix] = target
    return DeliveredVoice(
        character=checkpoints.character,
        language=checkpoints.language,
        checkpoint=chosen.name,
        training_id=checkpoints.training_id,
        voice_name=name,
        onnx=str(targets[".onnx"]),
        config=str(targets[".onnx.json"]),
    ).bind(folder)
