"""The voicing engine (chara_assets/voice/voicing.py) on FunctionModels: real WAV files, the real
verification and work cache; only the cloner, recogniser and speaker embedder are functions.

``Studio`` plays those three: its cloner voices each word of a text as a short tone (real audio
that passes the decode and noise checks), its recogniser hears back the words and timings the
cloner put into that file, and its embedder gives the file's voice vector. A script says how
each line goes wrong at each attempt (``"mismatch"``: the recogniser hears other words,
``"speaker"``: another voice, ``"truncated"``, ``"silence"``, ``"clipping"``, ``"fast"``,
``"no_words"``, ``"recognizer"`` / ``"cloner"``: the job fails, ``"broken"``: not a WAV).
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_assets.voice.verification import VerifyConfig, normalise_words
from chara_assets.voice.voicing import (
    Line,
    SpeakerReference,
    Verified,
    VoicingError,
    clip_problem,
    clone_lines,
    register_voice,
    voice_lines,
    voice_until_target,
)
from chara_resources.work_cache import WorkCache

from .engine_models import FunctionModels

RATE = 8000
WORD_S = 0.3  # a word every 0.3 s: 0.25 s of tone, 0.05 s of silence
VOICE, OTHER_VOICE = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
SENTENCES = [
    "Turn on the light in the kitchen please.",
    "My sister bought a new blue bicycle.",
    "The music is playing in the living room.",
    "Please close the window before you leave.",
    "We walked along the river after dinner.",
    "The garden smells of rain and fresh grass.",
]


def lines(count: int = len(SENTENCES)) -> list[Line]:
    return [
        Line(id=f"l{i}", line=s, augmented=f"The beginning. {s} The end.")
        for i, s in enumerate(SENTENCES[:count])
    ]


class Killed(BaseException):
    """Stands for the process being killed: not an ``Exception``, so no job records it."""


class Studio:
    """Cloner, recogniser and embedder as functions; ``script[line id]`` lists what goes wrong
    at attempts 1, 2, ... (missing or ``"ok"``: nothing)."""

    def __init__(self, tmp: Path, script: dict[str, list[str]] | None = None, **names: str):
        self.tmp, self.script = tmp, script or {}
        self.ids = {line.augmented: line.id for line in lines()}
        self.heard: dict[str, tuple[list[dict], list[float]]] = {}  # WAV sha256 -> words, voice
        self.voiced: Counter[str] = Counter()  # line id -> voicings
        self.kill_after: int | None = None  # recognitions before the "process" dies
        self.models = self.fresh(**names)

    def fresh(self, **names: str) -> FunctionModels:
        """New models (a restarted process): nothing asked yet, the same work cache."""
        self.models = FunctionModels(
            {
                "cloner.voice_to_text": self.voice,
                "cloner.train": lambda args: {"voice": args["voice"]},
                "recognizer.transcribe_to_array": self.recognize,
                "speaker_embedder.vector": self.embed,
            },
            names={f"cloner.{m}": n for m, n in names.items()},
        )
        return self.models

    def asked(self, job: str) -> int:
        return sum(1 for name, _ in self.models.calls if name == job)

    def voice(self, args: dict) -> Path:
        line_id = self.ids[args["text"]]
        self.voiced[line_id] += 1
        attempt = self.voiced[line_id]
        plan = self.script.get(line_id, [])
        how = plan[attempt - 1] if attempt <= len(plan) else "ok"
        if how == "cloner":
            raise RuntimeError(f"the cloner cannot say {args['text']!r}")
        path = self.tmp / f"{line_id}-{attempt}.wav"
        if how == "broken":
            path.write_bytes(b"RIFF, but not really")
            return path
        words = args["text"].split()
        step = 0.1 if how == "fast" else WORD_S
        starts = np.arange(len(words)) * step
        if how == "silence":  # 1.2 s pause in the middle of the line
            starts[len(words) // 2 :] += 1.2
        if how == "truncated":  # the cloner gives back the first words only
            words, starts = words[:4], starts[:4]
        seconds = starts[-1] + step + 0.2
        if how == "fast":  # trailing silence keeps it long enough for the text
            seconds += len(args["text"]) / 15
        if how == "truncated":  # long enough to pass as audio, too short for the text
            letters = len("".join(normalise_words(args["text"], "en")))
            seconds = (len(args["text"]) / 40 + letters / 25) / 2
        t = np.arange(int(seconds * RATE)) / RATE
        audio, pitch = np.zeros_like(t), 150 + 3 * len(self.heard)  # each clip its own file
        timed = []
        for word, start in zip(words, starts, strict=True):
            end = start + step * 0.8
            inside = (t >= start) & (t < end)
            audio[inside] = 0.4 * np.sin(2 * np.pi * pitch * t[inside])
            timed.append({"word": word, "start": float(start), "end": float(end), "conf": 0.9})
        if how == "clipping":
            audio = np.clip(audio * 5, -1.0, 1.0)
        path.write_bytes(_wav(audio))
        if how == "mismatch":
            for w in timed[3:6]:
                w["word"] = "banana"
        voice = OTHER_VOICE if how == "speaker" else VOICE
        self.heard[_sha(path)] = ([] if how == "no_words" else timed, voice)
        if how == "recognizer":
            self.heard[_sha(path)] = (None, voice)  # type: ignore[assignment]
        return path

    def recognize(self, args: dict) -> list[dict]:
        if self.kill_after is not None and self.asked("recognizer.transcribe_to_array") > (
            self.kill_after
        ):
            raise Killed
        words, _ = self.heard[_sha(self.models.file(args["file"]))]
        if words is None:
            raise RuntimeError("the recogniser failed on this file")
        return words

    def embed(self, args: dict) -> list[float]:
        # The voice sample (not voiced by the cloner) is the character's voice.
        return self.heard.get(_sha(self.models.file(args["file"])), (None, VOICE))[1]


def _wav(samples: np.ndarray) -> bytes:
    """16-bit WAV bytes (written in memory: soundfile fsyncs the files it closes)."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run(
    studio: Studio,
    work: WorkCache,
    folder: Path,
    *,
    count: int = len(SENTENCES),
    max_attempts: int = 3,
    target_s: float = 3600,
    reference: SpeakerReference | None = None,
) -> Verified:
    """What cloned_audio then trimmed_clips do: the first voicing, then voice_until_target."""
    models = studio.models
    first, _ = voice_lines(models, work.step("voiced"), "v1", lines(count), attempt=1)
    return voice_until_target(
        models,
        work,
        first,
        folder,
        language="en",
        voice_id="v1",
        config=VerifyConfig(),
        reference=reference or SpeakerReference("sample", VOICE),
        target_s=target_s,
        max_attempts=max_attempts,
    )


@pytest.fixture
def work(tmp_path: Path) -> WorkCache:
    return WorkCache(tmp_path / "work")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "out"


def test_failed_lines_are_voiced_again_until_every_line_passes(tmp_path, work, folder) -> None:
    studio = Studio(tmp_path, {"l1": ["mismatch"], "l2": ["speaker", "cloner"]})
    result = _run(studio, work, folder)
    assert {c.id: c.attempt for c in result.clips} == {
        "l0": 1, "l1": 2, "l2": 3, "l3": 1, "l4": 1, "l5": 1
    }  # fmt: skip
    assert [(r.id, r.attempt, r.reason) for r in result.rejections] == [
        ("l1", 1, "mismatch"),
        ("l2", 1, "speaker"),
        ("l2", 2, "cloner"),
    ]
    assert studio.voiced == {"l0": 1, "l1": 2, "l2": 3, "l3": 1, "l4": 1, "l5": 1}
    assert result.attempts == 3 and result.lines == 6 and result.accepted_lines == 6
    # Accepted clips are cut to the line: the prefix and suffix words are gone.
    for clip in result.clips:
        assert sf.info(folder / clip.file).duration < 0.3 * (len(clip.line.split()) + 1)
    # Rejected clips are kept to listen to; a failed voicing has no clip.
    mismatch, speaker, cloner = result.rejections
    assert (folder / mismatch.file).exists() and mismatch.file == "rejected/l1-1.wav"
    assert speaker.details["similarity"] < 0.75 and "speaker" in speaker.details["failed"]
    assert cloner.file is None and "cannot say" in cloner.details["error"]
    assert studio.models.lines[0].startswith("attempt 1 of 3: ")


def test_a_line_that_always_fails_stops_at_max_attempts(tmp_path, work, folder) -> None:
    studio = Studio(tmp_path, {"l1": ["mismatch"] * 5})
    result = _run(studio, work, folder, max_attempts=2)
    assert studio.voiced["l1"] == 2 and result.attempts == 2
    assert [(r.attempt, r.reason) for r in result.rejections] == [(1, "mismatch"), (2, "mismatch")]
    assert "l1" not in {c.id for c in result.clips} and result.accepted_lines == 5
    assert all((folder / r.file).exists() for r in result.rejections)


def test_no_line_is_voiced_again_once_the_target_is_verified(tmp_path, work, folder) -> None:
    studio = Studio(tmp_path, {"l1": ["mismatch"]})
    result = _run(studio, work, folder, target_s=5.0)
    assert result.seconds >= 5.0 and result.attempts == 1
    assert studio.voiced["l1"] == 1 and [r.reason for r in result.rejections] == ["mismatch"]


@pytest.mark.parametrize(
    ("how", "reason", "detail"),
    [
        ("mismatch", "mismatch", "distance"),
        ("speaker", "speaker", "similarity"),
        ("truncated", "truncated", "needed_s"),
        ("silence", "silence", "pause_s"),
        ("clipping", "clipping", "clipping"),
        ("fast", "rate", "rate_cps"),
        ("no_words", "no_words", "words"),
        ("recognizer", "recognizer", "error"),
        ("cloner", "cloner", "error"),
        ("broken", "cloner", "error"),
    ],
)
def test_each_rejection_reason(tmp_path, work, folder, how, reason, detail) -> None:
    studio = Studio(tmp_path, {"l3": [how]})
    result = _run(studio, work, folder, max_attempts=1)
    (rejection,) = result.rejections
    assert (rejection.id, rejection.attempt, rejection.reason) == ("l3", 1, reason)
    assert detail in rejection.details, rejection.details
    assert {c.id for c in result.clips} == {"l0", "l1", "l2", "l4", "l5"}
    if reason == "cloner":  # nothing was voiced: nothing to keep
        assert rejection.file is None
    else:
        assert (folder / rejection.file).exists()
    if how == "broken":  # decoded before it counts as voiced
        assert rejection.details["error"].startswith("audio from the cloner: cannot read audio")


def test_no_clip_passing_is_an_error_that_names_the_reasons(tmp_path, work, folder) -> None:
    studio = Studio(tmp_path, {"l0": ["mismatch"], "l1": ["cloner"]})
    with pytest.raises(VoicingError, match=r"no clip passed verification \(2 rejections: "):
        _run(studio, work, folder, count=2, max_attempts=1)


def test_a_killed_run_resumes_without_asking_any_job_twice(tmp_path, work, folder) -> None:
    studio = Studio(tmp_path, {"l1": ["mismatch"], "l4": ["speaker"]})
    studio.kill_after = 3
    with pytest.raises(Killed):
        _run(studio, work, folder)
    first_run = list(studio.models.calls)
    assert sum(1 for name, _ in first_run if name.startswith("recognizer")) == 4  # 4th killed

    studio.kill_after = None
    studio.fresh()
    result = _run(studio, work, tmp_path / "out2")
    assert result.accepted_lines == 6
    second_run = studio.models.calls
    # Every line voiced once, and once more for the two that failed (attempt 2, a new job).
    assert studio.voiced == {"l0": 1, "l1": 2, "l2": 1, "l3": 1, "l4": 2, "l5": 1}
    assert studio.asked("cloner.voice_to_text") == 2  # the re-run voiced only those two
    # Every file was recognised and embedded once, killed run and re-run together, except the
    # recognition the kill interrupted: it stored nothing, so it was asked again.
    asked = Counter((name, args["file"]) for name, args in first_run + second_run if "file" in args)
    assert [job for job, n in asked.items() if n > 1] == [
        ("recognizer.transcribe_to_array", first_run[-1][1]["file"])
    ]

    studio.fresh()
    again = _run(studio, work, tmp_path / "out3")
    assert studio.models.calls == []  # a third run finds everything in the work cache
    assert [c.model_dump() for c in again.clips] == [c.model_dump() for c in result.clips]


def test_a_clip_that_fails_its_decode_is_voiced_again_by_the_next_run(tmp_path, work) -> None:
    studio = Studio(tmp_path, {"l0": ["broken"]})
    step = work.step("voiced")
    voiced, outcome = voice_lines(studio.models, step, "v1", lines(3), attempt=1)
    assert [v.wav is None for v in voiced] == [True, False, False]
    assert outcome.succeeded == 3  # the cloner answered; the decode check refused the file
    again, outcome = voice_lines(studio.models, step, "v1", lines(3), attempt=1)
    assert all(v.wav is not None for v in again) and (outcome.reused, outcome.submitted) == (2, 1)
    assert studio.voiced["l0"] == 2
    # Attempt 2 is a job of its own, not the stored attempt 1.
    voice_lines(studio.models, step, "v1", lines(1), attempt=2)
    assert studio.voiced["l0"] == 3


def test_clone_lines_copies_the_clips_and_fails_when_too_many_lines_fail(tmp_path, work) -> None:
    studio = Studio(tmp_path, {"l0": ["cloner"], "l1": ["broken"]})
    out = tmp_path / "cloned"
    clips, errors, _ = clone_lines(studio.models, work.step("voiced"), "v1", lines(4), out, 0.5)
    assert [c.id for c in clips] == ["l2", "l3"] and [e.id for e in errors] == ["l0", "l1"]
    assert all(
        sf.info(out / c.file).duration == pytest.approx(c.duration_s, abs=1e-3) for c in clips
    )
    studio = Studio(tmp_path, {"l0": ["cloner"], "l1": ["cloner"], "l2": ["cloner"]})
    with pytest.raises(VoicingError, match="3 of 4 lines could not be voiced; first errors: "):
        clone_lines(studio.models, WorkCache(tmp_path / "w2").step("v"), "v1", lines(4), out, 0.5)


def test_speaker_reference_modes(tmp_path, work, folder) -> None:
    sample = tmp_path / "sample.wav"
    sf.write(sample, 0.3 * np.sin(np.arange(RATE * 2) / 10), RATE)
    studio = Studio(tmp_path, voice_to_text="StandInVoice:joe")
    assert SpeakerReference.choose(studio.models, work, "auto", sample).mode == "clips"
    assert studio.models.calls == []  # nothing to embed
    studio = Studio(tmp_path)
    reference = SpeakerReference.choose(studio.models, work, "auto", sample)
    assert (reference.mode, reference.vector) == ("sample", VOICE)
    studio.models.functions["speaker_embedder.vector"] = lambda args: 1 / 0
    with pytest.raises(VoicingError, match="the voice sample could not be embedded"):
        SpeakerReference.choose(studio.models, WorkCache(tmp_path / "w2"), "sample", sample)

    # 'clips': the clips' typical voice is the reference; the one in another voice fails.
    studio = Studio(tmp_path, {"l2": ["speaker"]})
    result = _run(studio, work, folder, max_attempts=1, reference=SpeakerReference("clips"))
    assert [(r.id, r.reason) for r in result.rejections] == [("l2", "speaker")]

    # A re-voiced clip is compared with the first clips' typical voice, not with itself.
    studio = Studio(tmp_path, {"l2": ["speaker", "speaker"]})
    work, reference = WorkCache(tmp_path / "w3"), SpeakerReference("clips")
    result = _run(studio, work, tmp_path / "o3", max_attempts=3, reference=reference)
    assert [(r.id, r.attempt, r.reason) for r in result.rejections] == [
        ("l2", 1, "speaker"),
        ("l2", 2, "speaker"),
    ]
    assert {c.id: c.attempt for c in result.clips}["l2"] == 3


def test_register_voice_registers_once_and_says_when_the_cloner_refuses(tmp_path, work) -> None:
    sample = tmp_path / "sample.wav"
    sf.write(sample, 0.3 * np.sin(np.arange(RATE) / 10), RATE)
    studio = Studio(tmp_path)
    step = work.step("register")
    assert register_voice(studio.models, step, "v1", sample, "Hello.", "embedded") is True
    assert register_voice(studio.models, step, "v1", sample, "Hello.", "embedded") is False
    assert studio.models.file("v1.wav") == sample
    studio.models.functions["cloner.train"] = lambda args: 1 / 0
    with pytest.raises(VoicingError, match="the cloner could not register v2: ZeroDivisionError"):
        register_voice(studio.models, step, "v2", sample, "Hello.", "embedded")


def test_clip_problem_names_what_is_wrong(tmp_path) -> None:
    text = "The beginning. Hello there. The end."
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(RATE * 2), RATE)
    assert "silent" in clip_problem(silent, text)
    long = tmp_path / "long.wav"
    sf.write(long, 0.3 * np.sin(np.arange(RATE * 30) / 10), RATE)
    assert "longer than" in clip_problem(long, text)
