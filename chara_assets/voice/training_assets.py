"""Voice chain, part 3: train a Piper voice, listen to its checkpoints, deliver the chosen one.

piper_archive -> piper_checkpoints -> checkpoint_report
                        └──────────-> delivered_voice (deliver_voice_job, checkpoint in config)
"""

import base64
import contextlib
import shutil
import tempfile
import zipfile
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field

from chara_resources.brainbox import BrainBoxResource
from chara_resources.brainbox_client import BrainBoxError
from chara_resources.brainbox_jobs import Job
from chara_resources.decider_shapes import BASE_MODELS, base_epochs
from chara_resources.folder_asset import FolderManifest
from chara_resources.paths import check_slug, safe_join
from chara_resources.settings import brainbox_pool, chara_home
from chara_resources.storage import CharaStorage
from chara_resources.work_cache import content_hash, file_sha256

from ..partitions import character_language_partitions, parse_partition_key
from .assets import VoiceSample
from .clip_assets import PiperArchive

QUALITIES = ("x_low", "medium", "high")
# What kaia's PiperTraining decider takes; the embedded trainer also takes the rest.
_PRODUCTION_PARAMETERS = (
    "epochs",
    "sample_rate",
    "batch_size",
    "validation_split",
    "checkpoint_epochs",
)
_CKPT_FIELDS = ("training_id", "version", "filename", "epoch", "steps")


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
        raise ValueError(
            f"no checkpoint {name!r}; this training has "
            + ", ".join(c.name for c in self.checkpoints)
        )


class PiperCheckpointsConfig(dg.Config):
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


def _parameters(config: PiperCheckpointsConfig, language: str, production: bool) -> dict:
    if config.quality not in QUALITIES:
        raise dg.Failure(f"quality {config.quality!r}: use one of {', '.join(QUALITIES)}")
    for name in ("epochs", "checkpoint_epochs", "batch_size", "sample_rate"):
        if getattr(config, name) < 1:
            raise dg.Failure(f"{name} must be at least 1, got {getattr(config, name)}")
    if not 0.0 <= config.validation_split < 1.0:
        raise dg.Failure(f"validation_split must be in [0, 1), got {config.validation_split}")
    parameters = {name: getattr(config, name) for name in _PRODUCTION_PARAMETERS}
    if production:
        # without it kaia's PiperTraining keeps only the last checkpoint
        parameters["keep_intermediate"] = True
    else:
        parameters.update(language=language, quality=config.quality)
    return parameters


def _checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def _markdown_png(path: Path, alt: str) -> dg.MetadataValue:
    png = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{png})")


def _losses_table(checkpoints: list[PiperCheckpoint]) -> str:
    from .checkpoint_report import MAIN_LOSSES

    names = [n for n in MAIN_LOSSES if any(n in c.losses for c in checkpoints)]
    lines = ["| checkpoint | epoch | steps | " + " | ".join(names) + " |"]
    lines.append("|---" * (3 + len(names)) + "|")
    for c in checkpoints:
        values = " | ".join(f"{c.losses[n]:.3f}" if n in c.losses else "" for n in names)
        lines.append(f"| {c.name} | {c.epoch} | {c.steps} | {values} |")
    return "\n".join(lines)


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"onnx"},
    pool=brainbox_pool(),
    description="A Piper voice trained on the archive by the BrainBox piper_trainer: every "
    "checkpoint exported to ONNX. A restarted run re-attaches to the running training.",
)
def piper_checkpoints(
    context: dg.AssetExecutionContext,
    config: PiperCheckpointsConfig,
    piper_archive: PiperArchive,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    from chara_resources.embedded.training import read_voice_tar

    from .checkpoint_report import checkpoint_list, loss_plot
    from .piper_archive import check_archive

    partition = parse_partition_key(context.partition_key)
    archive = piper_archive.path(piper_archive.archive)
    # Bad input stops here, before anything is uploaded or trained.
    problems = check_archive(archive, sample_rate=config.sample_rate)
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise dg.Failure(f"the Piper archive {archive} cannot be trained on: {shown}{more}")
    call = brainbox.call("piper_trainer", "train")
    parameters = _parameters(config, partition.language, call.decider == "PiperTraining")
    defaults = BASE_MODELS.get(call.decider, {})
    base_model = {**defaults, **config.base_models}.get(partition.language, "")
    if call.decider == "PiperTraining" and not base_model:
        raise dg.Failure(
            f"kaia's PiperTraining cannot train {partition.language} from scratch: name a base "
            "model it has installed in base_models (its own: "
            + ", ".join(f"{k} {v}" for k, v in BASE_MODELS["PiperTraining"].items())
            + ")"
        )
    sha = file_sha256(archive)
    what = {"archive": sha, "model": base_model, "parameters": parameters}
    training_id = f"chara-{partition.character}-{partition.language}-{content_hash(what)[:12]}"
    dataset = f"chara-dataset-{partition.character}-{partition.language}-{sha[:16]}.zip"

    step = storage.work(context).step("train")
    job = Job(
        {
            "training_id": training_id,
            "model": base_model,
            "parameters": parameters,
            "dataset": dataset,
        },
        inputs=what,
        label="train",
    )
    stored = step.get(step.key(job.cache_inputs(), job.label))
    if stored is None or not stored.ok:
        with brainbox.client(context) as client:
            if not client.is_file(dataset):
                context.log.info(f"uploading {archive} ({archive.stat().st_size:,} bytes)")
                client.upload(dataset, archive)
    record = brainbox.run_long(context, step, "piper_trainer", "train", job, poll_s=config.poll_s)
    if not record.ok:
        raise dg.Failure(f"training {training_id} failed: {record.error}")
    lines = None
    if isinstance(record.result, str):  # kaia's PiperTraining: a report file in the cache
        with tempfile.TemporaryDirectory() as tmp, brainbox.client(context) as client:
            report = client.download(record.result, Path(tmp) / "report.jsonl")
            lines = report.read_text(encoding="utf-8").splitlines()
    try:
        trained = checkpoint_list(record.result, lines)
    except ValueError as exc:
        raise dg.Failure(f"training {training_id}: {exc}") from None
    if not trained:
        raise dg.Failure(f"training {training_id} reported no checkpoint")

    offset = base_epochs(call.decider, base_model)
    exports = storage.work(context).step("export", params={"training_id": training_id})
    jobs = [
        Job({"ckpt": {k: c[k] for k in _CKPT_FIELDS}}, label=_checkpoint_name(c["epoch"] - offset))
        for c in trained
    ]
    outcome = brainbox.run(context, exports, "piper_trainer", "export", jobs, result_file=".tar")
    outcome.check(max_failure_ratio=0.0)
    folder = storage.staging(context)
    checkpoints = []
    for c, record in zip(trained, outcome.records(), strict=True):
        name = _checkpoint_name(c["epoch"] - offset)
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
    if not config.keep_training_files:
        cleanup = storage.work(context).step("delete", params={"run": context.run.run_id})
        brainbox.run(
            context, cleanup, "piper_trainer", "delete", [Job({"training_id": training_id})]
        )
        context.log.info(f"deleted the training files of {training_id} on the trainer")
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
        title=f"{partition.character}|{partition.language}: {training_id}",
    )
    result = PiperCheckpoints(
        character=partition.character,
        language=partition.language,
        training_id=training_id,
        base_model=base_model,
        base_epochs=offset,
        parameters=parameters,
        archive_sha256=sha,
        checkpoints=checkpoints,
        history=history,
        loss_plot="losses.png" if plot else None,
    ).bind(folder)
    metadata = {
        "training_id": training_id,
        "base_model": base_model or "(from scratch)",
        "checkpoints": len(checkpoints),
        "epochs": checkpoints[-1].epoch,
        "steps": checkpoints[-1].steps,
        "losses": dg.MetadataValue.md(_losses_table(checkpoints)),
    }
    if plot:
        metadata["loss_plot"] = _markdown_png(plot, "losses")
    return dg.MaterializeResult(value=result, metadata=metadata)


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


class CheckpointReportConfig(dg.Config):
    text: str = Field(default="", description="what every checkpoint says; default per language")
    training_clips: int = Field(default=3, ge=0, description="training clips shown for comparison")


def _voice_tar(checkpoints: PiperCheckpoints, checkpoint: PiperCheckpoint, folder: Path) -> Path:
    from .checkpoint_report import write_voice_tar

    return write_voice_tar(
        checkpoints.path(checkpoint.onnx),
        checkpoints.path(checkpoint.config),
        folder / f"{checkpoint.name}.tar",
        checkpoint.name,
    )


def _upload_voices(
    context: dg.AssetExecutionContext,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
    checkpoints: PiperCheckpoints,
    names: dict[str, str],
) -> None:
    """Upload ``{checkpoint name: voice name}`` to the piper_voice role."""
    step = storage.work(context).step("upload", params={"run": context.run.run_id})
    jobs = []
    with tempfile.TemporaryDirectory() as tmp, brainbox.client(context) as client:
        for name, voice in names.items():
            tar = _voice_tar(checkpoints, checkpoints.find(name), Path(tmp))
            cache_name = f"{voice}.tar"
            client.upload(cache_name, tar)
            jobs.append(Job({"tar_file": cache_name, "name": voice}, label=name))
    outcome = brainbox.run(context, step, "piper_voice", "upload_tar_voice", jobs)
    with brainbox.client(context) as client:  # installed: the tars are not needed any more
        for job in jobs:
            with contextlib.suppress(BrainBoxError):  # a leftover file is harmless
                client.delete(job.arguments["tar_file"])
    outcome.check(max_failure_ratio=0.0)


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"html", "audio"},
    pool=brainbox_pool(),
    description="Every checkpoint voices the same text through the BrainBox piper_voice; an "
    "HTML page plays them next to the source sample and training clips, to pick one by ear.",
)
def checkpoint_report(
    context: dg.AssetExecutionContext,
    config: CheckpointReportConfig,
    piper_checkpoints: PiperCheckpoints,
    piper_archive: PiperArchive,
    voice_sample: VoiceSample,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    from .checkpoint_report import EVALUATION_TEXTS, ReportRow, audio_stats, checkpoint_page

    partition = parse_partition_key(context.partition_key)
    text = config.text.strip() or EVALUATION_TEXTS[partition.language]
    prefix = f"chara-eval-{piper_checkpoints.training_id}"
    voices = {c.name: f"{prefix}-{c.name}" for c in piper_checkpoints.checkpoints}
    step = storage.work(context).step("voiceover", params={"text": text})
    jobs = [
        Job(
            {"text": text, "model": voices[c.name]},
            inputs={"onnx": file_sha256(piper_checkpoints.path(c.onnx)), "text": text},
            label=c.name,
        )
        for c in piper_checkpoints.checkpoints
    ]
    missing = {
        c.name: voices[c.name]
        for c, job in zip(piper_checkpoints.checkpoints, jobs, strict=True)
        if (found := step.get(step.key(job.cache_inputs(), job.label))) is None or not found.ok
    }
    if missing:
        _upload_voices(context, brainbox, storage, piper_checkpoints, missing)
    outcome = brainbox.run(context, step, "piper_voice", "voiceover", jobs, result_file=".wav")
    if missing:  # the evaluation voices are not needed on the server any more
        cleanup = storage.work(context).step("delete", params={"run": context.run.run_id})
        brainbox.run(
            context,
            cleanup,
            "piper_voice",
            "delete_voice",
            [Job({"name": voice}, label=name) for name, voice in missing.items()],
        ).check(max_failure_ratio=1.0)
    outcome.check(max_failure_ratio=0.0)

    folder = storage.staging(context)
    (folder / "checkpoints").mkdir()
    samples, rows = [], []
    for c, record in zip(piper_checkpoints.checkpoints, outcome.records(), strict=True):
        audio = f"checkpoints/{c.name}.wav"
        shutil.copyfile(record.files[".wav"], folder / audio)
        stats = audio_stats(folder / audio)
        samples.append(
            CheckpointSample(name=c.name, audio=audio, duration_s=stats.duration_s, rms=stats.rms)
        )
        note = f"{stats.duration_s:.1f} s" + (" — SILENT" if stats.silent else "")
        rows.append(ReportRow(c.name, audio, text, note=note, losses=c.losses))

    shutil.copyfile(voice_sample.path(voice_sample.audio), folder / "source.wav")
    source = ReportRow("source", "source.wav", voice_sample.text)
    training = []
    (folder / "training").mkdir()
    with zipfile.ZipFile(piper_archive.path(piper_archive.archive)) as zf:
        wavs = sorted(n for n in zf.namelist() if n.endswith(".wav"))
        for name in wavs[: max(0, config.training_clips)]:
            clip = check_slug(Path(name).stem.lower(), "clip id")
            (folder / "training" / f"{clip}.wav").write_bytes(zf.read(name))
            clip_text = zf.read(name[: -len(".wav")] + ".txt").decode("utf-8")
            training.append(ReportRow(Path(name).stem, f"training/{clip}.wav", clip_text))
    plot = None
    if piper_checkpoints.loss_plot:
        shutil.copyfile(piper_checkpoints.path(piper_checkpoints.loss_plot), folder / "losses.png")
        plot = "losses.png"
    report = CheckpointReport(
        character=partition.character,
        language=partition.language,
        training_id=piper_checkpoints.training_id,
        text=text,
        samples=samples,
    ).bind(folder)
    checkpoint_page(
        folder / report.report,
        title=f"{partition.character} ({partition.language}): Piper checkpoints",
        source=source,
        training=training,
        checkpoints=rows,
        plot=plot,
        summary=f"Training {piper_checkpoints.training_id}, base model "
        f"{piper_checkpoints.base_model or '(none: from scratch)'}.",
    )
    final = storage.asset_folder(context.asset_key, [partition.character, partition.language])
    silent = [s.name for s in samples if audio_stats(folder / s.audio).silent]
    table = ["| checkpoint | seconds | rms |", "|---|---|---|"] + [
        f"| {s.name} | {s.duration_s:.2f} | {s.rms:.4f} |" for s in samples
    ]
    metadata = {
        "report": dg.MetadataValue.path(str(final / report.report)),
        "checkpoints": len(samples),
        "text": text,
        "silent": ", ".join(silent) or "none",
        "samples": dg.MetadataValue.md("\n".join(table)),
    }
    if plot:
        metadata["loss_plot"] = _markdown_png(folder / plot, "losses")
    return dg.MaterializeResult(value=report, metadata=metadata)


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


class DeliveredVoiceConfig(dg.Config):
    checkpoint: str = Field(
        description="the checkpoint to deliver, e.g. epoch-0005 (see the report)"
    )
    voice_name: str = Field(
        default="", description="name on the Piper decider; default <character>-<language>"
    )
    voices_folder: str = Field(
        default="", description="where the voice files go; default $CHARA_HOME/voices"
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"onnx"},
    pool=brainbox_pool(),
    description="The checkpoint a person chose, uploaded to the BrainBox Piper decider under the "
    "character's name and written to the voices folder for the assistant.",
)
def delivered_voice(
    context: dg.AssetExecutionContext,
    config: DeliveredVoiceConfig,
    piper_checkpoints: PiperCheckpoints,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    from chara_resources.paths import temporary_sibling

    from .checkpoint_report import EVALUATION_TEXTS, audio_stats

    partition = parse_partition_key(context.partition_key)
    try:
        checkpoint = piper_checkpoints.find(config.checkpoint)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    name = check_slug(
        config.voice_name or f"{partition.character}-{partition.language}", "voice name"
    )
    voices = Path(config.voices_folder) if config.voices_folder else chara_home() / "voices"
    _upload_voices(context, brainbox, storage, piper_checkpoints, {checkpoint.name: name})
    text = EVALUATION_TEXTS[partition.language]
    step = storage.work(context).step("check", params={"run": context.run.run_id})
    outcome = brainbox.run(
        context,
        step,
        "piper_voice",
        "voiceover",
        [Job({"text": text, "model": name})],
        result_file=".wav",
    )
    outcome.check(max_failure_ratio=0.0)
    folder = storage.staging(context)
    shutil.copyfile(next(outcome.records()).files[".wav"], folder / "check.wav")
    stats = audio_stats(folder / "check.wav")
    if stats.silent:
        raise dg.Failure(f"the delivered voice {name!r} speaks silence; pick another checkpoint")

    voices.mkdir(parents=True, exist_ok=True)
    targets = {}
    for source, suffix in ((checkpoint.config, ".onnx.json"), (checkpoint.onnx, ".onnx")):
        target = safe_join(voices, f"{name}{suffix}")
        with temporary_sibling(target) as tmp:
            shutil.copyfile(piper_checkpoints.path(source), tmp)
        targets[suffix] = target
    voice = DeliveredVoice(
        character=partition.character,
        language=partition.language,
        checkpoint=checkpoint.name,
        training_id=piper_checkpoints.training_id,
        voice_name=name,
        onnx=str(targets[".onnx"]),
        config=str(targets[".onnx.json"]),
    ).bind(folder)
    return dg.MaterializeResult(
        value=voice,
        metadata={
            "voice_name": name,
            "checkpoint": checkpoint.name,
            "onnx": dg.MetadataValue.path(voice.onnx),
            "check_seconds": stats.duration_s,
        },
    )


deliver_voice_job = dg.define_asset_job(
    "deliver_voice_job",
    selection=dg.AssetSelection.assets(delivered_voice),
    description="Deliver the checkpoint chosen in checkpoint_report (config: checkpoint).",
)
