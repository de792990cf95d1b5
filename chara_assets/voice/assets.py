"""Voice chain assets (per character|language)."""

import math
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field

from chara_resources.folder_asset import FolderManifest
from chara_resources.storage import CharaStorage
from chara_resources.work_cache import WorkStep, file_sha256

from ..characters.resource import CharacterCatalog
from ..metadata import md_table
from ..partitions import character_language_partitions


class VoiceSampleSource(BaseModel):
    file: str
    text: str
    duration_s: float
    gain_db: float
    peak_limited: bool


class VoiceSample(FolderManifest):
    """The character's reference recording, levelled, as one WAV with its transcription."""

    character: str
    language: str
    audio: str = "sample.wav"
    text: str
    sample_rate: int
    duration_s: float
    level_db: float
    same_language: bool = Field(description="False: the clips are in another language")
    sources: list[VoiceSampleSource]


class VoiceSampleConfig(dg.Config):
    sample_rate: int = Field(
        default=22050, ge=8000, le=192000, description="Hz; Piper voices use 22050"
    )
    target_level_db: float = Field(
        default=-22.0,
        ge=-50.0,
        le=-6.0,
        description="mean RMS level of the voiced frames, dBFS (-50 to -6: louder speech "
        "clips at the -1 dBFS peak limit)",
    )
    gap_s: float = Field(
        default=0.4, ge=0.0, le=10.0, description="silence between concatenated clips, seconds"
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"audio"},
    description=(
        "The character's voice sample for this language: clips resampled to mono, edges "
        "trimmed, levelled to the target mean level, joined with their transcriptions."
    ),
)
def voice_sample(
    context: dg.AssetExecutionContext,
    config: VoiceSampleConfig,
    characters: CharacterCatalog,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    # Decodes every voice file with the check ``chara check`` runs (same messages).
    character, language = characters.for_partition(context, check_audio=True)
    clips, same_language = character.clips_for(language.code)
    if not same_language:
        context.log.warning(
            f"{character.name} has no {language.name} voice clip; using all clips "
            "(cross-lingual cloning)"
        )
    step = storage.work(context).step(
        "levelled_clips",
        params={"sample_rate": config.sample_rate, "target_level_db": config.target_level_db},
    )
    sample = _level_and_join(
        character.name, language.code, clips, same_language, config, step, storage.staging(context)
    )
    return dg.MaterializeResult(
        value=sample,
        metadata={
            "duration_s": sample.duration_s,
            "level_db": dg.MetadataValue.float(sample.level_db),
            "clips": len(clips),
            "same_language": same_language,
            "text": dg.MetadataValue.text(sample.text),
            "clips_levelled": step.computed,
            "clips_reused": step.reused,
            "sources": md_table(
                ["file", "seconds", "gain dB", "limited"],
                [[s.file, s.duration_s, s.gain_db, s.peak_limited] for s in sample.sources],
            ),
        },
    )


def _level_and_join(
    character: str,
    language: str,
    clips: list,
    same_language: bool,
    config: VoiceSampleConfig,
    step: WorkStep,
    folder: Path,
) -> VoiceSample:
    """Level every clip (work cache ``step``) and join them into the sample in ``folder``."""
    from .audio import as_dict, concatenate, level_clip

    levelled = []
    for clip in clips:
        record = step.get_or_compute(
            {"audio_sha256": file_sha256(clip.file)},
            lambda files, clip=clip: as_dict(
                level_clip(
                    clip.file,
                    files.path(".wav"),
                    sample_rate=config.sample_rate,
                    target_db=config.target_level_db,
                )
            ),
            label=clip.file.stem,
        )
        levelled.append((clip, record))

    sample = VoiceSample(
        character=character,
        language=language,
        text=" ".join(clip.text.strip() for clip in clips),
        sample_rate=config.sample_rate,
        duration_s=0.0,
        level_db=config.target_level_db,
        same_language=same_language,
        sources=[
            VoiceSampleSource(
                file=clip.file.name,
                text=clip.text,
                duration_s=record.result["duration_s"],
                gain_db=record.result["gain_db"],
                peak_limited=record.result["peak_limited"],
            )
            for clip, record in levelled
        ],
    ).bind(folder)
    sample.duration_s = round(
        concatenate(
            [record.files[".wav"] for _, record in levelled],
            folder / sample.audio,
            sample_rate=config.sample_rate,
            gap_s=config.gap_s,
        ),
        3,
    )
    # Mean power of the clips, weighted by their length.
    power = sum(r.result["duration_s"] * 10 ** (r.result["level_db"] / 10) for _, r in levelled)
    sample.level_db = round(10 * math.log10(power / sum(s.duration_s for s in sample.sources)), 2)
    return sample
