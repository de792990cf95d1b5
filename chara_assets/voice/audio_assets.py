"""Voice chain, part 2: the character's voice registered with the cloner, and every accepted
line voiced by it.

reviewed_corpus -> augmented_lines -> cloned_audio <- cloner_voice <- voice_sample
"""

import dagster as dg
from pydantic import Field

from chara_resources.brainbox import BrainBoxResource
from chara_resources.folder_asset import FolderManifest
from chara_resources.languages import get_language
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage
from chara_resources.work_cache import file_sha256

from ..partitions import character_language_partitions, parse_partition_key
from .assets import VoiceSample
from .corpus_assets import ReviewedCorpus
from .review import sentence_id
from .voicing import Clip, ClipError, Line, VoicingError, clone_lines, register_voice


class ClonerVoice(FolderManifest):
    """A voice registered with the cloner; its id changes when the sample's content does."""

    character: str
    language: str
    voice_id: str
    sample_sha256: str
    server: str


class AugmentedLines(FolderManifest):
    """Each accepted sentence with the language's prefix and suffix around it."""

    character: str
    language: str
    prefix: str
    suffix: str
    lines: list[Line]


class ClonedAudio(FolderManifest):
    """Every augmented line voiced by the cloner (``clips/<id>.wav``), and the lines it failed."""

    character: str
    language: str
    voice_id: str
    clips: list[Clip]
    errors: list[ClipError]


def _server_name(brainbox: BrainBoxResource, context: dg.AssetExecutionContext) -> str:
    """The server this run's cloner work goes to (of several, the one the run is routed to):
    a voice is registered on one server, and only that server can speak with it."""
    return brainbox.choose_server(context)[1] if brainbox.url else "embedded"


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"audio"},
    pool=brainbox_pool(),
    description="The character's voice sample registered with the BrainBox cloner.",
)
def cloner_voice(
    context: dg.AssetExecutionContext,
    voice_sample: VoiceSample,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    server, audio = _server_name(brainbox, context), voice_sample.path(voice_sample.audio)
    sha = file_sha256(audio)
    voice_id = f"chara-{voice_sample.character}-{voice_sample.language}-{sha[:12]}"
    step = storage.work(context).step("register")
    try:
        registered_now = register_voice(
            brainbox.models(context), step, voice_id, audio, voice_sample.text, server
        )
    except VoicingError as e:
        raise dg.Failure(str(e)) from e
    voice = ClonerVoice(
        character=voice_sample.character,
        language=voice_sample.language,
        voice_id=voice_id,
        sample_sha256=sha,
        server=server,
    ).bind(storage.staging(context))
    return dg.MaterializeResult(
        value=voice,
        metadata={
            "voice_id": voice.voice_id,
            "server": voice.server,
            "registered_now": registered_now,
        },
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"text"},
    description="Each accepted sentence between the language's prefix and suffix: cloners "
    "stutter at the edges, and the prefix and suffix are cut off after recognition.",
)
def augmented_lines(
    context: dg.AssetExecutionContext, reviewed_corpus: ReviewedCorpus, storage: CharaStorage
) -> dg.MaterializeResult:
    language = get_language(reviewed_corpus.language)
    lines = [
        Line(
            id=sentence_id(s),
            line=s,
            augmented=f"{language.clone_prefix}{s}{language.clone_suffix}",
        )
        for s in reviewed_corpus.sentences
    ]
    result = AugmentedLines(
        character=reviewed_corpus.character,
        language=language.code,
        prefix=language.clone_prefix,
        suffix=language.clone_suffix,
        lines=lines,
    ).bind(storage.staging(context))
    return dg.MaterializeResult(
        value=result,
        metadata={
            "lines": len(lines),
            "example": dg.MetadataValue.text(lines[0].augmented if lines else ""),
        },
    )


class ClonedAudioConfig(dg.Config):
    max_failure_ratio: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="the asset fails when a larger share of the lines failed to voice",
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"audio"},
    pool=brainbox_pool(),
    description="Every augmented line voiced by the BrainBox cloner; each clip is stored the "
    "moment it arrives, so a re-run voices only what is missing.",
)
def cloned_audio(
    context: dg.AssetExecutionContext,
    config: ClonedAudioConfig,
    augmented_lines: AugmentedLines,
    cloner_voice: ClonerVoice,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    partition = parse_partition_key(context.partition_key)
    server = _server_name(brainbox, context)
    if cloner_voice.server != server:
        raise dg.Failure(
            f"the voice {cloner_voice.voice_id} is registered on {cloner_voice.server}, but this "
            f"run's BrainBox is {server}: materialize cloner_voice in a run routed to the same "
            "server (the same chara/brainbox tag) first"
        )
    step = storage.work(context).step("voiced", params={"voice": cloner_voice.voice_id})
    folder = storage.staging(context)
    try:
        clips, errors, outcome = clone_lines(
            brainbox.models(context),
            step,
            cloner_voice.voice_id,
            augmented_lines.lines,
            folder,
            config.max_failure_ratio,
        )
    except VoicingError as e:
        raise dg.Failure(str(e)) from e
    result = ClonedAudio(
        character=partition.character,
        language=partition.language,
        voice_id=cloner_voice.voice_id,
        clips=clips,
        errors=errors,
    ).bind(folder)
    hours = sum(c.duration_s for c in clips) / 3600
    return dg.MaterializeResult(
        value=result,
        metadata={
            "clips": len(clips),
            "hours": round(hours, 3),
            "failed": len(errors),
            "voiced_now": outcome.succeeded,
            "reused": outcome.reused,
            "failures": dg.MetadataValue.md(
                "\n".join(f"- {e.id}: {e.error}" for e in errors[:20]) or "none"
            ),
        },
    )
