"""Voice chain, part 3: train a Piper voice, listen to its checkpoints, deliver the chosen one.

piper_archive -> piper_checkpoints -> checkpoint_report
                        └──────────-> delivered_voice (deliver_voice_job, checkpoint in config)

The engines in training.py do the work; these assets call them and report.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from chara_resources.brainbox import BrainBoxResource
from chara_resources.settings import brainbox_pool, chara_home
from chara_resources.storage import CharaStorage

from ..metadata import md_image, md_table
from ..partitions import character_language_partitions, parse_partition_key
from .assets import VoiceSample
from .clip_assets import PiperArchive
from .training import (
    PiperCheckpoints,
    TrainingError,
    TrainingSettings,
)


class PiperCheckpointsConfig(dg.Config, TrainingSettings):
    """The training's settings: fields, defaults and ranges are TrainingSettings' (training.py)."""


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
    from .checkpoint_report import MAIN_LOSSES
    from .training import train_voice

    partition = parse_partition_key(context.partition_key)
    try:
        result = train_voice(
            brainbox.models(context),
            storage.work(context),
            piper_archive.path(piper_archive.archive),
            lambda: storage.staging(context),
            character=partition.character,
            language=partition.language,
            settings=config,
            run_id=context.run.run_id,
        )
    except TrainingError as exc:
        raise dg.Failure(str(exc)) from None
    checkpoints = result.checkpoints
    losses = [n for n in MAIN_LOSSES if any(n in c.losses for c in checkpoints)]
    metadata = {
        "training_id": result.training_id,
        "base_model": result.base_model or "(from scratch)",
        "checkpoints": len(checkpoints),
        "epochs": checkpoints[-1].epoch,
        "steps": checkpoints[-1].steps,
        "losses": md_table(
            ["checkpoint", "epoch", "steps", *losses],
            [
                [c.name, c.epoch, c.steps]
                + [f"{c.losses[n]:.3f}" if n in c.losses else "" for n in losses]
                for c in checkpoints
            ],
        ),
    }
    if result.loss_plot:
        metadata["loss_plot"] = md_image(result.path(result.loss_plot), "losses")
    return dg.MaterializeResult(value=result, metadata=metadata)


class CheckpointReportConfig(dg.Config):
    text: str = Field(default="", description="what every checkpoint says; default per language")
    training_clips: int = Field(default=3, ge=0, description="training clips shown for comparison")


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
    from .checkpoint_report import EVALUATION_TEXTS, audio_stats
    from .training import voice_checkpoints, write_checkpoint_report

    partition = parse_partition_key(context.partition_key)
    text = config.text.strip() or EVALUATION_TEXTS[partition.language]
    work = storage.work(context)
    voiced = voice_checkpoints(
        brainbox.models(context), work, piper_checkpoints, text, run_id=context.run.run_id
    )
    report = write_checkpoint_report(
        storage.staging(context),
        piper_checkpoints,
        voiced,
        text,
        sample=(voice_sample.path(voice_sample.audio), voice_sample.text),
        archive=piper_archive.path(piper_archive.archive),
        training_clips=config.training_clips,
    )
    final = storage.asset_folder(context.asset_key, [partition.character, partition.language])
    silent = [s.name for s in report.samples if audio_stats(report.path(s.audio)).silent]
    metadata = {
        "report": dg.MetadataValue.path(str(final / report.report)),
        "checkpoints": len(report.samples),
        "text": text,
        "silent": ", ".join(silent) or "none",
        "samples": md_table(
            ["checkpoint", "seconds", "rms"],
            [[s.name, f"{s.duration_s:.2f}", f"{s.rms:.4f}"] for s in report.samples],
        ),
    }
    if piper_checkpoints.loss_plot:
        metadata["loss_plot"] = md_image(report.path("losses.png"), "losses")
    return dg.MaterializeResult(value=report, metadata=metadata)


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
    from .checkpoint_report import EVALUATION_TEXTS, audio_stats
    from .training import deliver_voice

    partition = parse_partition_key(context.partition_key)
    try:
        voice = deliver_voice(
            brainbox.models(context),
            storage.work(context),
            piper_checkpoints,
            config.checkpoint,
            lambda: storage.staging(context),
            voice_name=config.voice_name or f"{partition.character}-{partition.language}",
            voices=Path(config.voices_folder or chara_home() / "voices"),
            text=EVALUATION_TEXTS[partition.language],
            run_id=context.run.run_id,
        )
    except TrainingError as exc:
        raise dg.Failure(str(exc)) from None
    return dg.MaterializeResult(
        value=voice,
        metadata={
            "voice_name": voice.voice_name,
            "checkpoint": voice.checkpoint,
            "onnx": dg.MetadataValue.path(voice.onnx),
            "check_seconds": audio_stats(voice.path(voice.check)).duration_s,
        },
    )


deliver_voice_job = dg.define_asset_job(
    "deliver_voice_job",
    selection=dg.AssetSelection.assets(delivered_voice),
    description="Deliver the checkpoint chosen in checkpoint_report (config: checkpoint).",
)
