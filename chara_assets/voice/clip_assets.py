"""Voice chain, part 2 (continued): verified and trimmed clips, and the archive Piper trains on.

cloned_audio -> trimmed_clips -> piper_archive
"""

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import numpy as np
from pydantic import BaseModel, Field

from chara_resources.brainbox import BrainBoxResource
from chara_resources.brainbox_client import BrainBoxClient
from chara_resources.brainbox_jobs import Job
from chara_resources.folder_asset import FolderManifest
from chara_resources.paths import copy_file
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage
from chara_resources.work_cache import WorkCache, file_sha256

from ..partitions import character_language_partitions
from . import checks
from .assets import VoiceSample
from .audio_assets import ClonedAudio, ClonerVoice, clip_problem

STAND_IN_CLONER = "StandInVoice"


class TrimmedClip(BaseModel):
    id: str
    line: str
    file: str
    duration_s: float
    attempt: int
    details: dict[str, Any] = Field(default_factory=dict)


class Rejection(BaseModel):
    id: str
    line: str
    attempt: int
    reason: str
    details: dict[str, Any] = Field(default_factory=dict)
    file: str | None = None  # the rejected clip, to listen to


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


class _Candidate(BaseModel):
    id: str
    line: str
    augmented: str
    wav: Path
    attempt: int


class _Precomputed:
    """The clip's speaker embedding, computed on BrainBox from the whole clip. ``verify_clip``
    asks for the kept part (a temporary file); it is the same voice, so the clip's vector
    answers (the prefix and suffix add a second of the same speaker)."""

    def __init__(self, vector: list[float]) -> None:
        self._vector = vector

    def vector(self, wav: Path) -> list[float]:
        return self._vector


def _typical_voice(vectors: np.ndarray) -> list[float]:
    """The clips' typical voice: the mean of the three quarters of the clips nearest to the
    plain mean, so that a few clips in another voice do not pull the reference to themselves."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / (np.linalg.norm(v) or 1.0)

    mean = unit(vectors.mean(axis=0))
    keep = max(1, int(np.ceil(0.75 * len(vectors))))
    nearest = np.argsort(-(vectors @ mean))[:keep]
    return list(unit(vectors[nearest].mean(axis=0)))


def _cache_name(wav: Path) -> str:
    return f"clip-{file_sha256(wav)[:24]}.wav"


def _upload_all(client: BrainBoxClient, wavs: list[Path]) -> dict[Path, str]:
    names = {}
    for wav in wavs:
        names[wav] = _cache_name(wav)
        if not client.is_file(names[wav]):
            client.upload(names[wav], wav)
    return names


def _recognize_and_embed(
    context: dg.AssetExecutionContext,
    brainbox: BrainBoxResource,
    work: WorkCache,
    language: str,
    wavs: list[Path],
) -> tuple[dict[Path, Any], dict[Path, Any]]:
    """Word timings and speaker vectors of ``wavs`` (records with ``result`` or ``error``)."""
    with brainbox.client(context) as client:
        names = _upload_all(client, wavs)
    recognized = brainbox.run(
        context,
        work.step("recognized"),
        "recognizer",
        "transcribe_to_array",
        [Job({"file": names[w], "model": language}, inputs={"file": names[w]}) for w in wavs],
    )
    embedded = brainbox.run(
        context,
        work.step("embedded"),
        "speaker_embedder",
        "vector",
        [Job({"file": names[w]}, inputs={"file": names[w]}) for w in wavs],
    )
    return (
        dict(zip(wavs, recognized.records(), strict=True)),
        dict(zip(wavs, embedded.records(), strict=True)),
    )


def _json_safe(details: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for key, value in details.items():
        if isinstance(value, float | int | str | bool) or value is None:
            safe[key] = value
        elif isinstance(value, list | tuple):
            safe[key] = [v if isinstance(v, float | int | str | bool) else str(v) for v in value]
        else:
            safe[key] = str(value)
    return safe


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
    from .report import ReportClip, clips_page, duration_histogram
    from .verification import VerifyConfig, reject_rate_outliers, verify_clip

    language = cloned_audio.language
    work = storage.work(context)
    verify_config = VerifyConfig(
        max_distance=config.max_distance,
        min_similarity=config.min_similarity,
        max_pause_s=config.max_pause_s,
    )
    reference_mode = config.speaker_reference
    if reference_mode == "auto":
        stand_in = brainbox.call("cloner", "voice_to_text").decider == STAND_IN_CLONER
        reference_mode = "clips" if stand_in else "sample"

    folder = storage.staging(context)
    accepted: list[TrimmedClip] = []
    rejections: list[Rejection] = []
    target_s = config.target_hours * 3600
    pending = [
        _Candidate(
            id=c.id, line=c.line, augmented=c.augmented, wav=cloned_audio.path(c.file), attempt=1
        )
        for c in cloned_audio.clips
    ]
    revoice = [(e.id, e.line) for e in cloned_audio.errors]
    for error in cloned_audio.errors:
        rejections.append(
            Rejection(
                id=error.id,
                line=error.line,
                attempt=1,
                reason="cloner",
                details={"error": error.error},
            )
        )
    augmented = {c.id: c.augmented for c in cloned_audio.clips}
    reference: list[float] | None = None
    if reference_mode == "sample":
        sample_wav = voice_sample.path(voice_sample.audio)
        _, vectors = _recognize_and_embed(context, brainbox, work, language, [sample_wav])
        record = vectors[sample_wav]
        if not record.ok:
            raise dg.Failure(f"the voice sample could not be embedded: {record.error}")
        reference = record.result

    attempt = 1
    while True:
        wavs = [c.wav for c in pending]
        words, vectors = _recognize_and_embed(context, brainbox, work, language, wavs)
        usable = {w: r.result for w, r in vectors.items() if r.ok}
        if reference_mode == "clips" and usable:
            reference = _typical_voice(np.array(list(usable.values())))
        verdicts = []
        for candidate in pending:
            recognized = words[candidate.wav]
            vector = vectors[candidate.wav]
            if not recognized.ok:
                verdicts.append(None)
                continue
            verdict = verify_clip(
                candidate.wav,
                recognized.result,
                candidate.line,
                language,
                config=verify_config,
                reference=reference if vector.ok else None,
                embedder=_Precomputed(vector.result) if vector.ok else None,
            )
            if verdict.ok and not vector.ok:  # the voice could not be checked: not accepted
                verdict = replace(
                    verdict,
                    ok=False,
                    reason="speaker",
                    details={**verdict.details, "error": vector.error, "failed": ["speaker"]},
                )
            verdicts.append(verdict)
        checked = reject_rate_outliers([v for v in verdicts if v is not None])
        it = iter(checked)
        verdicts = [None if v is None else next(it) for v in verdicts]
        revoice = []
        for candidate, verdict in zip(pending, verdicts, strict=True):
            if verdict is None:
                verdict_reason, details = "recognizer", {"error": words[candidate.wav].error}
            elif verdict.ok:
                name = f"clips/{candidate.id}.wav"
                duration = verdict.cut(candidate.wav, folder / name)
                accepted.append(
                    TrimmedClip(
                        id=candidate.id,
                        line=candidate.line,
                        file=name,
                        duration_s=round(duration, 3),
                        attempt=candidate.attempt,
                        details=_json_safe(verdict.details),
                    )
                )
                continue
            else:
                verdict_reason, details = verdict.reason or "unknown", _json_safe(verdict.details)
            kept = f"rejected/{candidate.id}-{candidate.attempt}.wav"
            copy_file(candidate.wav, folder / kept)
            rejections.append(
                Rejection(
                    id=candidate.id,
                    line=candidate.line,
                    attempt=candidate.attempt,
                    reason=verdict_reason,
                    details=details,
                    file=kept,
                )
            )
            revoice.append((candidate.id, candidate.line))
        verified_s = sum(c.duration_s for c in accepted)
        attempt += 1
        if verified_s >= target_s or not revoice or attempt > config.max_attempts:
            break
        context.log.info(
            f"{len(revoice)} lines failed; voicing them again (attempt {attempt} of "
            f"{config.max_attempts}), {verified_s / 60:.1f} of {target_s / 60:.0f} min verified"
        )
        jobs = [
            Job(
                {"voice": cloner_voice.voice_id, "text": augmented.get(i) or line},
                inputs={"voice": cloner_voice.voice_id, "text": line, "attempt": attempt},
                label=i,
            )
            for i, line in revoice
        ]
        revoiced = work.step("revoiced")
        outcome = brainbox.run(
            context, revoiced, "cloner", "voice_to_text", jobs, result_file=".wav"
        )
        pending = []
        for (i, line), job, record in zip(revoice, jobs, outcome.records(), strict=True):
            if record.ok:
                problem = clip_problem(record.files[".wav"], augmented.get(i) or line)
                if problem is not None:  # stored as an error: a re-run voices it again
                    record = revoiced.put(record.key, job.cache_inputs(), error=problem)
            if record.ok:
                pending.append(
                    _Candidate(
                        id=i,
                        line=line,
                        augmented=augmented.get(i, line),
                        wav=record.files[".wav"],
                        attempt=attempt,
                    )
                )
            else:
                rejections.append(
                    Rejection(
                        id=i,
                        line=line,
                        attempt=attempt,
                        reason="cloner",
                        details={"error": record.error},
                    )
                )
        if not pending:
            break

    if not accepted:
        reasons = sorted({r.reason for r in rejections})
        raise dg.Failure(f"no clip passed verification ({len(rejections)} rejections: {reasons})")
    result = TrimmedClips(
        character=cloned_audio.character,
        language=language,
        clips=accepted,
        rejections=rejections,
        target_hours=config.target_hours,
        speaker_reference=reference_mode,
    ).bind(folder)
    durations = [c.duration_s for c in accepted]
    duration_histogram(durations, result.path(result.histogram), title="accepted clips")
    clips_page(
        result.path(result.report),
        f"{result.character} ({language}): trimmed clips",
        [
            (
                "accepted",
                [ReportClip(c.id, c.line, c.file, f"{c.duration_s:.1f} s") for c in accepted],
            ),
            (
                "rejected",
                [
                    ReportClip(r.id, r.line, r.file, f"{r.reason} (attempt {r.attempt})")
                    for r in rejections
                    if r.file
                ],
            ),
        ],
        summary=f"{len(accepted)} clips, {result.hours * 60:.1f} minutes; "
        f"{len(rejections)} rejections; speaker reference: {reference_mode}",
    )
    by_reason: dict[str, int] = {}
    for r in rejections:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    lines_total = len({c.id for c in cloned_audio.clips} | {e.id for e in cloned_audio.errors})
    png = base64.b64encode(result.path(result.histogram).read_bytes()).decode()
    return dg.MaterializeResult(
        value=result,
        check_results=[
            checks.acceptance_rate(
                lines_total,
                len({c.id for c in accepted}),
                warn_below=config.warn_acceptance,
                block_below=config.min_acceptance,
            )
        ],
        metadata={
            "accepted": len(accepted),
            "hours": round(result.hours, 4),
            "lines": lines_total,
            "acceptance_rate": round(len({c.id for c in accepted}) / max(1, lines_total), 3),
            "rejections": dg.MetadataValue.md(
                "| reason | clips |\n|---|---|\n"
                + "\n".join(f"| {k} | {v} |" for k, v in sorted(by_reason.items()))
            ),
            "speaker_reference": reference_mode,
            "durations": dg.MetadataValue.md(f"![durations](data:image/png;base64,{png})"),
            "report": dg.MetadataValue.path(
                str(
                    storage.asset_folder(context.asset_key, [cloned_audio.character, language])
                    / result.report
                )
            ),
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
