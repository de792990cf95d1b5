"""The voice chain's engine: lines voiced by the cloner, the clips verified, failed lines voiced
again until enough is verified. No Dagster import: models are reached through ``Models``
(chara_resources/models.py) and every result is kept in the work cache.

- :func:`register_voice`: the character's voice sample registered with the cloner.
- :func:`voice_lines`: the one place a line is voiced, for the first attempt (``cloned_audio``,
  through :func:`clone_lines`) and every later one; each clip is decoded and checked
  (:func:`clip_problem`) before it counts as voiced.
- :func:`verify_batch`: clips recognised and their voices embedded, each checked with
  :func:`~chara_assets.voice.verification.verify_clip`, then for speaking-rate outliers.
- :func:`voice_until_target`: the first voicings verified, then the failed lines voiced again
  on :func:`~chara_resources.models.repeat_until_done` until ``target_s`` seconds are verified
  or ``max_attempts`` were made; accepted clips are cut to the line, rejected ones kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, Field

from chara_resources.brainbox_jobs import BatchOutcome, Job
from chara_resources.models import Models, repeat_until_done
from chara_resources.paths import copy_file
from chara_resources.work_cache import ItemRecord, WorkCache, WorkStep, file_sha256

from .verification import Verdict, VerifyConfig, reject_rate_outliers, verify_clip

STAND_IN_CLONER = "StandInVoice"
"""The embedded stand-in cloner: one fixed voice, not the sample's (see ``speaker_reference``)."""


class VoicingError(RuntimeError):
    """The chain cannot go on: the voice was not registered, too many lines failed to voice, or
    no clip passed verification."""


class Line(BaseModel):
    id: str
    line: str
    augmented: str


class Clip(Line):
    file: str
    duration_s: float


class ClipError(BaseModel):
    id: str
    line: str
    error: str


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


# ---------------------------------------------------------------------------------------------
# Voicing


def register_voice(
    models: Models, step: WorkStep, voice_id: str, sample: Path, text: str, server: str
) -> bool:
    """Register the voice sample (a WAV saying ``text``) with the cloner as ``voice_id`` on
    ``server`` (part of the item: a voice is registered on one server). Returns whether it was
    registered now (not reused); raises ``VoicingError`` if the cloner refuses."""
    name = models.put_file(f"{voice_id}.wav", sample)
    job = Job(
        {"voice": voice_id, "text": text, "file": name},
        inputs={"voice": voice_id, "server": server},
    )
    outcome = models.run(step, "cloner", "train", [job])
    record = next(outcome.records())
    if not record.ok:
        raise VoicingError(f"the cloner could not register {voice_id}: {record.error}")
    return bool(outcome.submitted)


def clip_problem(path: Path, text: str) -> str | None:
    """Why the cloner's clip for ``text`` cannot be used, or None: a cheap decode and sanity
    check (readable, not empty, silent or noise, a plausible length for the text) before the
    clip counts as voiced; what is said is checked later, by recognition."""
    from .audio import speech_problem

    # A voiced line lasts about len(text)/15 s; far outside these bounds it is not that line.
    problem = speech_problem(path, min_s=max(0.3, len(text) / 40), max_s=5.0 + len(text) / 3)
    return None if problem is None else f"audio from the cloner: {problem}"


@dataclass
class Voiced:
    """One voicing of a line: its clip (a work cache file), or why there is none."""

    line: Line
    attempt: int
    wav: Path | None = None
    error: str | None = None


def voice_lines(
    models: Models, step: WorkStep, voice_id: str, lines: Sequence[Line], attempt: int
) -> tuple[list[Voiced], BatchOutcome]:
    """Voice each line's augmented text with the cloner's voice ``voice_id``; the attempt is
    part of the item, so attempt 2 is a new job. A clip that fails :func:`clip_problem` is
    stored as the item's error (a re-run voices it again)."""
    inputs = [{"voice": voice_id, "text": line.augmented, "attempt": attempt} for line in lines]
    jobs = [
        Job({"voice": voice_id, "text": line.augmented}, inputs=i, label=line.id)
        for line, i in zip(lines, inputs, strict=True)
    ]
    outcome = models.run(step, "cloner", "voice_to_text", jobs, result_file=".wav")
    voiced = []
    for line, i, record in zip(lines, inputs, outcome.records(), strict=True):
        error = record.error
        if record.ok and (error := clip_problem(record.files[".wav"], line.augmented)):
            step.put(record.key, i, error=error)  # a re-run voices it again
        voiced.append(Voiced(line, attempt, None if error else record.files[".wav"], error))
    return voiced, outcome


def clone_lines(
    models: Models, step: WorkStep, voice_id: str, lines: Sequence[Line], folder: Path, ratio: float
) -> tuple[list[Clip], list[ClipError], BatchOutcome]:
    """The first voicing of every line, the clips copied to ``folder/clips/<id>.wav``. Raises
    ``VoicingError`` when every line or more than the share ``ratio`` of them failed."""
    import soundfile as sf

    voiced, outcome = voice_lines(models, step, voice_id, lines, attempt=1)
    clips, errors = [], []
    for v in voiced:
        if v.wav is None:
            errors.append(ClipError(id=v.line.id, line=v.line.line, error=str(v.error)))
            continue
        name = f"clips/{v.line.id}.wav"
        copy_file(v.wav, folder / name)
        duration = round(sf.info(v.wav).duration, 3)
        clips.append(Clip(**v.line.model_dump(), file=name, duration_s=duration))
    if lines and (not clips or len(errors) / len(lines) > ratio):
        raise VoicingError(
            f"{len(errors)} of {len(lines)} lines could not be voiced; first errors: "
            + " | ".join(e.error for e in errors[:3])
        )
    return clips, errors, outcome


# ---------------------------------------------------------------------------------------------
# Verification


def _put_all(models: Models, wavs: Sequence[Path]) -> list[str]:
    return [models.put_file(f"clip-{file_sha256(wav)[:24]}.wav", wav) for wav in wavs]


def _embed(models: Models, work: WorkCache, names: Sequence[str]) -> list[ItemRecord]:
    jobs = [Job({"file": n}, inputs={"file": n}) for n in names]
    return list(models.run(work.step("embedded"), "speaker_embedder", "vector", jobs).records())


def typical_voice(vectors: np.ndarray) -> list[float]:
    """The clips' typical voice: the mean of the three quarters of the clips nearest to the
    plain mean, so that a few clips in another voice do not pull the reference to themselves."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / (np.linalg.norm(v) or 1.0)

    mean = unit(vectors.mean(axis=0))
    nearest = np.argsort(-(vectors @ mean))[: max(1, int(np.ceil(0.75 * len(vectors))))]
    return list(unit(vectors[nearest].mean(axis=0)))


@dataclass
class SpeakerReference:
    """What a clip's voice is compared with: ``sample`` (the character's voice sample, embedded)
    or ``clips`` (the typical voice of the first clips checked, set by :func:`verify_batch`: a
    re-voiced clip is compared with the whole data set's voice, not with itself)."""

    mode: str
    vector: list[float] | None = None

    @classmethod
    def choose(cls, models: Models, work: WorkCache, requested: str, sample: Path) -> Self:
        """``requested`` is ``sample``, ``clips`` or ``auto``: the sample, except with the
        embedded stand-in cloner, which does not sound like the sample at all. Raises
        ``VoicingError`` if the sample cannot be embedded."""
        mode = requested
        if mode == "auto":
            stand_in = models.model("cloner", "voice_to_text").split(":")[0] == STAND_IN_CLONER
            mode = "clips" if stand_in else "sample"
        if mode != "sample":
            return cls(mode)
        (record,) = _embed(models, work, _put_all(models, [sample]))
        if not record.ok:
            raise VoicingError(f"the voice sample could not be embedded: {record.error}")
        return cls(mode, record.result)


def verify_batch(
    models: Models,
    work: WorkCache,
    language: str,
    clips: Sequence[Voiced],
    config: VerifyConfig,
    reference: SpeakerReference,
) -> list[Verdict]:
    """A verdict per clip (each has a ``wav``): recognised (step ``recognized``), embedded
    (``embedded``), checked by ``verify_clip`` against its line and ``reference`` (in ``clips``
    mode set to the first batch's typical voice), then rate outliers rejected. A failed
    recognition is the verdict ``recognizer``; a failed embedding fails ``speaker``."""
    if not clips:
        return []
    names = _put_all(models, [c.wav for c in clips if c.wav is not None])
    jobs = [Job({"file": n, "model": language}, inputs={"file": n}) for n in names]
    step = work.step("recognized")
    words = list(models.run(step, "recognizer", "transcribe_to_array", jobs).records())
    vectors = _embed(models, work, names)
    if reference.mode == "clips" and reference.vector is None and any(v.ok for v in vectors):
        reference.vector = typical_voice(np.array([v.result for v in vectors if v.ok]))
    verdicts = []
    for clip, said, voice in zip(clips, words, vectors, strict=True):
        if not said.ok:
            verdicts.append(Verdict(False, "recognizer", {"error": said.error}))
            continue
        # The whole clip's embedding stands for the kept part's: the same voice.
        vector, compare = (voice.result, reference.vector) if voice.ok else (None, None)
        verdict = verify_clip(
            clip.wav,
            said.result,
            clip.line.line,
            language,
            config=config,
            reference=compare,
            vector=vector,
        )
        if verdict.ok and not voice.ok:  # the voice could not be checked: not accepted
            details = {**verdict.details, "error": voice.error, "failed": ["speaker"]}
            verdict = replace(verdict, ok=False, reason="speaker", details=details)
        verdicts.append(verdict)
    return reject_rate_outliers(verdicts)


def _json_safe(details: dict[str, Any]) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        return v if v is None or isinstance(v, float | int | str | bool) else str(v)

    return {
        k: [plain(x) for x in v] if isinstance(v, list | tuple) else plain(v)
        for k, v in details.items()
    }


def _kept(clip: Voiced, verdict: Verdict, folder: Path) -> TrimmedClip | Rejection:
    """An accepted clip cut to its line (``clips/<id>.wav``), or the rejection with the clip
    kept to listen to (``rejected/<id>-<attempt>.wav``)."""
    assert clip.wav is not None
    line, n, details = clip.line, clip.attempt, _json_safe(verdict.details)
    if verdict.ok:
        name = f"clips/{line.id}.wav"
        duration = round(verdict.cut(clip.wav, folder / name), 3)
        return TrimmedClip(
            id=line.id, line=line.line, file=name, duration_s=duration, attempt=n, details=details
        )
    kept = f"rejected/{line.id}-{n}.wav"
    copy_file(clip.wav, folder / kept)
    reason = verdict.reason or "unknown"
    return Rejection(
        id=line.id, line=line.line, attempt=n, reason=reason, details=details, file=kept
    )


# ---------------------------------------------------------------------------------------------
# Re-voicing until the target


@dataclass
class Verified:
    """The accepted clips and every rejection (reason, attempt, kept clip) of all attempts."""

    lines: int
    speaker_reference: str
    clips: list[TrimmedClip] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    attempts: int = 0

    @property
    def seconds(self) -> float:
        return sum(c.duration_s for c in self.clips)

    @property
    def accepted_lines(self) -> int:
        return len({c.id for c in self.clips})


def voice_until_target(
    models: Models,
    work: WorkCache,
    first: Sequence[Voiced],
    folder: Path,
    *,
    language: str,
    voice_id: str,
    config: VerifyConfig,
    reference: SpeakerReference,
    target_s: float,
    max_attempts: int,
) -> Verified:
    """Verify ``first`` (attempt 1 of every line), then voice the lines that failed again (a
    failed voicing or a rejected clip; step ``revoiced``) and verify those, until ``target_s``
    seconds are verified, nothing failed, or ``max_attempts`` attempts were made. Raises
    ``VoicingError`` if no clip passed."""
    result = Verified(lines=len({v.line.id for v in first}), speaker_reference=reference.mode)
    pending = [v.line for v in first]

    def attempt(n: int, lines: Sequence[Line]) -> None:
        batch = first
        if n > 1:
            batch, _ = voice_lines(models, work.step("revoiced"), voice_id, lines, attempt=n)
        pending.clear()
        for v in batch:
            if v.wav is None:
                pending.append(v.line)  # voiced again, as a clip that failed verification
                error = {"error": v.error}
                result.rejections.append(
                    Rejection(
                        id=v.line.id, line=v.line.line, attempt=n, reason="cloner", details=error
                    )
                )
        clips = [v for v in batch if v.wav is not None]
        verdicts = verify_batch(models, work, language, clips, config, reference)
        for clip, verdict in zip(clips, verdicts, strict=True):
            kept = _kept(clip, verdict, folder)
            if isinstance(kept, TrimmedClip):
                result.clips.append(kept)
            else:
                result.rejections.append(kept)
                pending.append(clip.line)

    def progress(n: int) -> str:
        return (
            f"attempt {n} of {max_attempts}: {result.seconds / 60:.1f} of {target_s / 60:.0f} "
            f"min verified, {len(pending)} lines to voice again"
        )

    result.attempts = repeat_until_done(
        attempt,
        lambda: list(pending),
        max_attempts=max_attempts,
        done=lambda: result.seconds >= target_s,
        progress=progress,
        log=models.log,
    )
    if not result.clips:
        reasons = sorted({r.reason for r in result.rejections})
        raise VoicingError(
            f"no clip passed verification ({len(result.rejections)} rejections: {reasons})"
        )
    return result
