"""Voice chain, part 2 (continued): verified and trimmed clips, and the archive Piper trains on.

cloned_audio -> trimmed_clips -> piper_archive
"""

from collections import Counter
from typing import Literal

import dagster as dg
from pydantic import Field

from chara_resources.brainbox import BrainBoxResource
from chara_resources.folder_asset import FolderManifest
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage

from ..metadata import md_image, md_table
from ..partitions import character_language_partitions
from . import checks
from .assets import VoiceSample
from .audio_assets import ClonedAudio, ClonerVoice
from .verification import VerifyConfig, frame_line
from .voicing import (
    Line,
    Rejection,
    SpeakerReference,
    TrimmedClip,
    Voiced,
    VoicingError,
    voice_until_target,
)


class TrimmedClips(FolderManifest):
    """Clips that passed verification, cut to the line (``clips/<id>.wav``), and every
    rejection with its reason (``rejected/``)."""

    character: str
    language: str
    clips: list[TrimmedClip]
    rejections: list[Rejection]
    target_hours: float
    speaker_reference: str
    report: str = "report.html"
    histogram: str = "durations.png"

    @property
    def hours(self) -> float:
        return sum(c.duration_s for c in self.clips) / 3600


class TrimmedClipsConfig(dg.Config):
    target_hours: float = Field(
        default=1.0, gt=0, description="stop re-voicing once this is verified"
    )
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="voicings per line, the first included"
    )
    max_distance: int = Field(
        default=2, ge=0, description="Levenshtein distance that always passes"
    )
    min_similarity: float = Field(
        default=0.75, ge=-1.0, le=1.0, description="speaker similarity (cosine) to pass"
    )
    max_pause_s: float = Field(default=0.8, gt=0, description="longest silence inside a clip")
    warn_acceptance: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="the acceptance_rate check warns below this share of lines",
    )
    min_acceptance: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="below this share of lines, the check blocks the Piper archive",
    )
    speaker_reference: Literal["auto", "sample", "clips"] = Field(
        default="auto",
        description="'sample': the character's voice sample; 'clips': the mean voice of the "
        "clips (finds clips that do not sound like the rest); 'auto': the sample, except with "
        "the embedded stand-in voice, which does not sound like the sample at all",
    )


def _first_voicings(cloned_audio: ClonedAudio) -> list[Voiced]:
    """cloned_audio's clips and errors as the first attempt of each line."""
    voiced = [
        Voiced(Line(id=c.id, line=c.line, augmented=c.augmented), 1, cloned_audio.path(c.file))
        for c in cloned_audio.clips
    ]
    for e in cloned_audio.errors:
        line = Line(id=e.id, line=e.line, augmented=frame_line(e.line, cloned_audio.language))
        voiced.append(Voiced(line, 1, error=e.error))
    return voiced


def _report(result: "TrimmedClips") -> None:
    """The duration histogram and the page that plays accepted and rejected clips."""
    from .report import ReportClip, clips_page, duration_histogram

    duration_histogram(
        [c.duration_s for c in result.clips], result.path(result.histogram), title="accepted clips"
    )
    accepted = [ReportClip(c.id, c.line, c.file, f"{c.duration_s:.1f} s") for c in result.clips]
    rejected = [
        ReportClip(r.id, r.line, r.file, f"{r.reason} (attempt {r.attempt})")
        for r in result.rejections
        if r.file
    ]
    clips_page(
        result.path(result.report),
        f"{result.character} ({result.language}): trimmed clips",
        [("accepted", accepted), ("rejected", rejected)],
        summary=f"{len(result.clips)} clips, {result.hours * 60:.1f} minutes; "
        f"{len(result.rejections)} rejections; speaker reference: {result.speaker_reference}",
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"audio"},
    pool=brainbox_pool(),
    check_specs=[checks.acceptance_spec("trimmed_clips")],
    description="Each cloned clip recognised with word timings, checked (the line's words, "
    "speaker similarity, clipping, long pauses, speaking rate) and cut to the line; failed "
    "lines are voiced again, up to max_attempts, until target_hours are verified.",
)
def trimmed_clips(
    context: dg.AssetExecutionContext,
    config: TrimmedClipsConfig,
    cloned_audio: ClonedAudio,
    cloner_voice: ClonerVoice,
    voice_sample: VoiceSample,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
):  # no return annotation: with check_specs Dagster would read it as the outputs
    language = cloned_audio.language
    models, work, folder = brainbox.models(context), storage.work(context), storage.staging(context)
    verify_config = VerifyConfig(
        max_distance=config.max_distance,
        min_similarity=config.min_similarity,
        max_pause_s=config.max_pause_s,
    )
    try:
        reference = SpeakerReference.choose(
            models, work, config.speaker_reference, voice_sample.path(voice_sample.audio)
        )
        verified = voice_until_target(
            models,
            work,
            _first_voicings(cloned_audio),
            folder,
            language=language,
            voice_id=cloner_voice.voice_id,
            config=verify_config,
            reference=reference,
            target_s=config.target_hours * 3600,
            max_attempts=config.max_attempts,
        )
    except VoicingError as e:
        raise dg.Failure(str(e)) from e
    result = TrimmedClips(
        character=cloned_audio.character,
        language=language,
        clips=verified.clips,
        rejections=verified.rejections,
        target_hours=config.target_hours,
        speaker_reference=verified.speaker_reference,
    ).bind(folder)
    _report(result)
    by_reason = Counter(r.reason for r in result.rejections)
    accepted, lines = verified.accepted_lines, verified.lines
    report = storage.asset_folder(context.asset_key, [result.character, language]) / result.report
    return dg.MaterializeResult(
        value=result,
        check_results=[
            checks.acceptance_rate(
                lines,
                accepted,
                warn_below=config.warn_acceptance,
                block_below=config.min_acceptance,
            )
        ],
        metadata={
            "accepted": len(result.clips),
            "hours": round(result.hours, 4),
            "lines": lines,
            "acceptance_rate": round(accepted / max(1, lines), 3),
            "rejections": md_table(["reason", "clips"], sorted(by_reason.items())),
            "speaker_reference": result.speaker_reference,
            "durations": md_image(result.path(result.histogram), "durations"),
            "report": dg.MetadataValue.path(str(report)),
        },
    )


class PiperArchive(FolderManifest):
    """The ZIP Piper trains on: ``<speaker>/<id>.wav``, ``<speaker>/<id>.txt`` and
    ``<speaker>/metadata.csv`` (``id|text``), 22050 Hz mono."""

    character: str
    language: str
    archive: str = "dataset.zip"
    speaker: str
    clips: int
    hours: float
    size_bytes: int


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"audio"},
    check_specs=[checks.integrity_spec("piper_archive")],
    description="The verified clips packed for Piper training, built by streaming.",
)
def piper_archive(
    context: dg.AssetExecutionContext, trimmed_clips: TrimmedClips, storage: CharaStorage
):  # no return annotation (check_specs)
    from .piper_archive import Clip, build_archive, check_archive

    folder = storage.staging(context)
    speaker = trimmed_clips.character
    stats = build_archive(
        (Clip(c.id, trimmed_clips.path(c.file), c.line) for c in trimmed_clips.clips),
        folder / "dataset.zip",
        speaker=speaker,
    )
    problems = check_archive(folder / "dataset.zip")
    result = PiperArchive(
        character=trimmed_clips.character,
        language=trimmed_clips.language,
        speaker=speaker,
        clips=stats.clips,
        hours=round(stats.duration_s / 3600, 4),
        size_bytes=stats.size_bytes,
    ).bind(folder)
    return dg.MaterializeResult(
        value=result,
        check_results=[checks.archive_integrity(problems, stats.clips)],
        metadata={
            "clips": stats.clips,
            "hours": result.hours,
            "size_mb": round(stats.size_bytes / 1e6, 2),
            "resampled": stats.resampled,
        },
    )
