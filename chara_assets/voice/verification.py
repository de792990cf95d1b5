"""Verification of voiced clips: does the clip say the line, in the right voice, cleanly?

Pure logic on files and recogniser output, no Dagster.

A zero-shot cloner voices every line as ``prefix + line + suffix`` (see :data:`FRAMES`) because
cloners stutter at the edges of what they say. Each clip is then recognised with word timings
(``[{"word", "start", "end", "conf"}]``, seconds) and checked here:

1. ``audio``: the WAV is readable and holds samples;
2. ``truncated``: the clip is long enough for its text (``max_chars_per_s``): a cloner that
   returns part of a long line is caught as such, not as a recognition mismatch;
3. ``no_words``: the recogniser heard at least one word with letters in it;
4. ``mismatch``: :func:`best_window` drops 0..``max_drop`` recognised words at each end (the
   prefix, the suffix and whatever the cloner stuttered there) and keeps the window whose text is
   closest to the line, by Levenshtein distance over the letters of the joined words (see
   :func:`best_window` for why characters, not words). It passes when the distance is at most
   :func:`distance_limit`;
5. ``clipping``: the share of samples at or near full scale in the kept part;
6. ``silence``: the longest pause inside the kept part, from the signal's energy (recogniser
   word timings put no gap where Whisper stretches a word over a pause);
7. ``speaker``: cosine similarity of the kept part's speaker embedding to the character's
   reference embedding;
8. ``rate``: characters per second far from the data set's median (median/MAD), which needs
   every clip's rate first: :func:`reject_rate_outliers` runs after :func:`verify_clip`.

Every rejection has one of the reason names in :data:`REASONS`; :class:`Verdict` keeps the
measures behind it in ``details``. The kept part is then cut with :meth:`Verdict.cut` (or
:func:`cut_clip`), padded a little but never into the dropped prefix/suffix words.

How the defaults were chosen (measured here with the embedded stand-ins, not the production
cloner): 25-40 sentence-pool lines (80-100 characters) per language, each voiced correctly and
with four defects (one word replaced, three words left out, three words repeated, the last 30%
cut off), recognised, and the correct clip also checked against another line.

* Characters, not words. AUC of distance, correct vs one-word-replaced clips, characters/words:
  Piper + Whisper (en, the closest to production) 0.97/0.87, festival + Whisper (ru) 0.88/0.55,
  espeak-ng + Whisper (de) 0.68/0.57, Piper + pocketsphinx (en) 0.61/0.54; characters were as
  good or better for every defect. A word threshold of 2 let 92% of one-word replacements
  through on en/Whisper; Russian inflection errors cost a whole word but only 1-2 letters.
* Threshold: 2 letters, or 5% of the line's letters if more (``max_relative=0.05``). Share of
  correct clips rejected at ``<= 2`` -> with 5%: en/Whisper 16% -> 8%, ru 68% -> 56%, de 100% ->
  96%, en/pocketsphinx 97% -> 93%; defects passed: one of 25 word replacements (en/Whisper),
  none else except a repetition that Whisper itself left out of its transcript (distance 0
  at any threshold). 10% rejects fewer correct clips but passes 16-60% of word replacements.
  The high rejection rates are the stand-ins' recognition errors (espeak-ng's German and
  pocketsphinx on literary lines are poor); short, plain lines pass with pocketsphinx.
* Whisper writes numbers as digits ("work 12"): :func:`normalise_words` spells them out
  (that fix alone moved en/Whisper's rejections from 24% to 16%).
* Speaker (Resemblyzer, kept part vs a 7 s reference of the same voice): Piper joe 0.85-0.92,
  espeak-ng voices (en-us, +f3, +m3, +klatt2, en-gb+f4) 0.40-0.64, joe pitch-shifted by 6-11%
  (another stand-in character) 0.74-0.89: ``min_similarity=0.75``.
* Pauses: correct joe clips have at most 0.34 s of silence inside the line; a 1.2 s pause
  inserted is measured as 1.18 s: ``max_pause_s=0.8``.
* Rate: with ``k=3.5`` no correct clip and none of the defects above was flagged (a repeated
  phrase changes the rate by less than the voices vary); it catches gross failures only,
  like a clip at half or double speed.
"""

from __future__ import annotations

import math
import re
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rapidfuzz.distance import Levenshtein

from chara_resources.languages import LANGUAGES, PerLanguage, language_code
from chara_resources.paths import temporary_sibling

REASONS = (
    "audio",
    "truncated",
    "no_words",
    "mismatch",
    "clipping",
    "silence",
    "speaker",
    "rate",
)
"""Rejection reasons, in the order :func:`verify_clip` reports them when several apply."""

FRAMES = PerLanguage(lambda lang: (lang.clone_prefix, lang.clone_suffix))
"""Per language, the prefix and suffix a line is voiced between."""

# Characters that split a word in two; an apostrophe inside a word joins it ("don't" -> "dont").
_SPLITTERS = str.maketrans(dict.fromkeys("-‐‑‒–—―/", " "))
_DIGITS = re.compile(r"\d+")

Word = Mapping[str, Any]
"""One recognised word: ``{"word": str, "start": float, "end": float, "conf": float}``."""


# ---------------------------------------------------------------------------------------------
# Text


def frame_line(line: str, language: str) -> str:
    """The text to voice for ``line``: the language's prefix, the line, the suffix.

    Raises ``KeyError`` naming the known languages if ``language`` has no frame.
    """
    try:
        prefix, suffix = FRAMES[language_code(language)]
    except KeyError:
        known = ", ".join(FRAMES)
        raise KeyError(f"no prefix/suffix for language {language!r}; known: {known}") from None
    return f"{prefix}{line.strip()}{suffix}"


def _spell_number(digits: str, language: str) -> str:
    """``"12"`` -> ``"twelve"`` (``"zwölf"``, ``"двенадцать"``) with num2words when it is
    installed (kaia's packages bring it); ``""`` (the digits are dropped) when it is not or does
    not know the language."""
    try:
        from num2words import num2words
    except ImportError:
        return ""
    try:
        return str(num2words(int(digits), lang=language_code(language)))
    except (NotImplementedError, OverflowError, ValueError):
        return ""


def normalise_words(text: str, language: str) -> list[str]:
    """The words of ``text`` as compared: letters only, lower-case, ``ß`` -> ``ss``, ``ё`` -> ``е``.

    Whitespace and dashes/slashes separate words; other non-letters (punctuation, apostrophes)
    are dropped, so ``"Don't, well-known!"`` gives ``["dont", "well", "known"]`` and a token
    without letters gives nothing. Runs of digits are spelled out in ``language`` (``en``,
    ``de``, ``ru``; see ``_spell_number``): corpus lines never hold digits, but Whisper writes
    "work 12" for "work twelve", which would otherwise cost six letters. The registry's spelling
    folds of every language apply (a German name in a Russian line still compares equal).
    Returns an empty list for empty text.
    """
    text = unicodedata.normalize("NFC", text)
    if any(ch.isdigit() for ch in text):
        text = _DIGITS.sub(lambda m: f" {_spell_number(m.group(), language)} ", text)
    folds = {a: b for lang in LANGUAGES.values() for a, b in lang.spelling_folds.items()}
    text = text.translate(str.maketrans(folds)).lower()
    words = ("".join(filter(str.isalpha, w)) for w in text.translate(_SPLITTERS).split())
    # Combining marks are not letters: one that NFC could not compose (or that lower() made,
    # "İ" -> "i" + dot) is dropped here, so both sides lose it alike.
    return [w for w in words if w]


# ---------------------------------------------------------------------------------------------
# Levenshtein distance


def levenshtein(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Edit distance (insertions, deletions, substitutions, each 1) between two sequences.

    Works on strings (characters) and on lists of words alike; elements must be hashable
    (rapidfuzz compares them by hash). Raises ``TypeError`` for unhashable elements.
    """
    return Levenshtein.distance(a, b)


# ---------------------------------------------------------------------------------------------
# The best window of recognised words


@dataclass(frozen=True)
class Window:
    """The recognised words kept as the line, and how far they are from it."""

    start: int
    """Index of the first kept word in the recognised words (= words dropped at the start)."""
    end: int
    """Index one past the last kept word (``len(words) - end`` words dropped at the end)."""
    start_s: float
    """Start of the first kept word, seconds."""
    end_s: float
    """End of the last kept word, seconds."""
    distance: int
    """Levenshtein distance of the kept words to the line (see ``unit``)."""
    text: str
    """The kept words as recognised, joined by spaces."""
    reference_length: int
    """Length of the normalised line in ``unit``s (letters, or words)."""
    unit: str = "chars"
    """``"chars"``: letters of the joined words; ``"words"``: word sequences."""
    not_before_s: float = 0.0
    """End of the last dropped word before the window (0 if none): a cut starts no earlier."""
    not_after_s: float | None = None
    """Start of the first dropped word after the window (``None`` if none): a cut ends no later."""

    @property
    def relative_distance(self) -> float:
        """Distance per unit of the line (0 = exact)."""
        return self.distance / max(1, self.reference_length)


def distance_limit(reference_length: int, max_distance: int, max_relative: float | None) -> int:
    """The largest distance that passes for a line of ``reference_length`` units.

    ``max_distance`` alone when ``max_relative`` is ``None``; otherwise the larger of the two
    (``floor(max_relative * reference_length)``), so short lines keep the absolute tolerance
    and long lines, where recognition errors add up, get a proportional one.
    """
    limit = max_distance
    if max_relative is not None:
        limit = max(limit, math.floor(max_relative * reference_length + 1e-9))
    return limit


def _tokens(words: Sequence[Word], language: str) -> list[list[str]]:
    return [normalise_words(str(w.get("word", "")), language) for w in words]


def best_window(
    words: Sequence[Word],
    line: str,
    language: str,
    *,
    max_drop: int = 4,
    max_distance: int | None = 2,
    max_relative: float | None = 0.05,
    unit: str = "chars",
) -> Window | None:
    """The window of recognised words closest to ``line``, dropping 0..``max_drop`` at each end.

    Inputs: ``words`` as a recogniser returns them (``word``, ``start``, ``end`` in seconds, in
    order); ``line`` the text that should have been said (without prefix/suffix); ``unit``
    ``"chars"`` (Levenshtein over the letters of the joined words, no spaces) or ``"words"``
    (over word sequences). Characters are the default: measured on real clips they separate
    good and bad clips better (a misheard word costs its few wrong letters, not a whole word,
    and a recogniser's word split, "some one" for "someone", costs nothing).

    The window passes when its distance is at most ``distance_limit(len(line), max_distance,
    max_relative)``: 2, or 5% of the line's length if more (module docstring: measurements).
    Ties go to the window keeping more words; a window never starts or ends on a word without
    letters. The 5 x 5 windows cost at most 25 distances (rapidfuzz: microseconds each).

    Returns ``None`` if no recognised word has letters, or if the best distance is over the
    limit (``max_distance=None`` returns the best window whatever its distance). Raises
    ``ValueError`` for an unknown ``unit`` or a negative ``max_drop``.
    """
    if unit not in ("chars", "words"):
        raise ValueError(f"unit must be 'chars' or 'words', got {unit!r}")
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    tokens = _tokens(words, language)
    n = len(tokens)
    lettered = [i for i, t in enumerate(tokens) if t]
    if not lettered:
        return None
    line_tokens = normalise_words(line, language)
    pattern: Sequence[str] = "".join(line_tokens) if unit == "chars" else line_tokens

    best: tuple[int, int, int, int] | None = None  # (distance, -kept, start, end)
    for start in range(min(max_drop, n - 1) + 1):
        if not tokens[start]:
            continue
        # The symbols of words[start:end] for every end: letters joined, or word lists.
        pieces = ("".join(t) for t in tokens[start:]) if unit == "chars" else tokens[start:]
        kept: list[Sequence[str]] = list(accumulate(pieces))
        for end in range(max(start + 1, n - max_drop), n + 1):
            if not tokens[end - 1]:
                continue
            distance = Levenshtein.distance(pattern, kept[end - start - 1])
            key = (distance, -(end - start), start, end)
            if best is None or key < best:
                best = key
    if best is None:  # every candidate edge word is letterless (max_drop too small)
        return None
    distance, _, start, end = best
    too_far = max_distance is not None and distance > distance_limit(
        len(pattern), max_distance, max_relative
    )
    if too_far:
        return None
    return Window(
        start=start,
        end=end,
        start_s=float(words[start]["start"]),
        end_s=float(words[end - 1]["end"]),
        distance=distance,
        text=" ".join(str(w["word"]) for w in words[start:end]),
        reference_length=len(pattern),
        unit=unit,
        not_before_s=float(words[start - 1]["end"]) if start > 0 else 0.0,
        not_after_s=float(words[end]["start"]) if end < n else None,
    )


# ---------------------------------------------------------------------------------------------
# Audio measures


def clipping_ratio(samples: np.ndarray, *, level: float = 0.99) -> float:
    """Share of samples whose magnitude is at least ``level`` of full scale (0..1).

    ``samples``: float audio in [-1, 1], any shape (all channels count). A clean clip has 0; a
    cloner whose output overflowed and was clamped has plateaus at full scale. Returns 0.0 for
    an empty array.
    """
    samples = np.asarray(samples)
    if samples.size == 0:
        return 0.0
    return float(np.count_nonzero(np.abs(samples) >= level) / samples.size)


def longest_pause(words: Sequence[Word]) -> float:
    """Longest gap between consecutive words (next start - previous end), seconds; 0 if < 2 words.

    Recognisers differ: pocketsphinx leaves pauses as gaps, Whisper often stretches a word over
    the pause that follows it, so this can miss a pause; :func:`longest_silence` cannot.
    """
    return max((float(b["start"]) - float(a["end"]) for a, b in pairwise(words)), default=0.0)


def longest_silence(
    samples: np.ndarray,
    rate: int,
    *,
    frame_s: float = 0.02,
    below_peak_db: float = 40.0,
    interior: bool = False,
) -> float:
    """Longest run of quiet frames, seconds.

    A frame (``frame_s`` long) is quiet when its RMS is more than ``below_peak_db`` below the
    loudest frame's: relative, so it works at any recording level. With ``interior`` only runs
    between sounds count, not quiet at either end (a recogniser's first or last word often
    starts or ends in the pause around it). ``samples`` is mono float audio at ``rate`` Hz.
    Returns 0.0 for audio shorter than a frame or all-zero audio.
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    frame = max(1, round(rate * frame_s))
    count = samples.size // frame
    if count == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples[: count * frame].reshape(count, frame) ** 2, axis=1))
    peak = float(rms.max())
    if peak <= 0:
        return 0.0
    quiet = rms < peak * 10 ** (-below_peak_db / 20)
    if interior:
        loud = np.flatnonzero(~quiet)
        quiet = quiet[loud[0] : loud[-1] + 1]
    # Run lengths of True: positions where quiet runs start and stop.
    edges = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    longest = int((stops - starts).max()) if starts.size else 0
    return longest * frame / rate


def rate_outliers(
    rates: Sequence[float] | np.ndarray, *, k: float = 3.5, min_count: int = 5
) -> np.ndarray:
    """Which speaking rates are outliers: robust z-score ``0.6745 * |x - median| / MAD > k``.

    ``rates``: characters per second per clip; NaN entries (clips without a rate) are never
    outliers and do not count. With fewer than ``min_count`` rates nothing is flagged (a median
    of 3 says little). When over half the rates are equal (MAD 0) the mean absolute deviation
    (times 1.2533, its ratio to the standard deviation for a normal distribution) stands in.
    Returns a boolean array, one entry per rate.
    """
    x = np.asarray(rates, dtype=np.float64)
    bounds = rate_bounds(x, k=k, min_count=min_count)
    if bounds is None:
        return np.zeros(x.shape, dtype=bool)
    return (x < bounds[0]) | (x > bounds[1])  # NaN compares False: never an outlier


# ---------------------------------------------------------------------------------------------
# Cutting


def cut_clip(
    src: Path | str,
    dst: Path | str,
    start_s: float,
    end_s: float,
    *,
    pad_s: float = 0.05,
    not_before_s: float = 0.0,
    not_after_s: float | None = None,
    fade_s: float = 0.005,
) -> float:
    """Write ``src[start_s - pad_s : end_s + pad_s]`` to ``dst`` as 16-bit PCM WAV.

    The padded range is clamped to ``[not_before_s, not_after_s]`` (the dropped neighbour words:
    the cut never reaches into them) and to the file. Only the frames cut are read (a seek, then
    one read). ``fade_s`` fades the first and last few milliseconds in/out, so a cut through a
    sound does not click. Sample rate and channels stay as in ``src``; ``dst`` is written
    atomically (temporary file, then rename) and its folder created.

    Returns the duration written, seconds. Raises ``ValueError`` if ``src`` is unreadable or
    the range is empty after clamping.
    """
    import soundfile as sf

    src, dst = Path(src), Path(dst)
    try:
        reader = sf.SoundFile(str(src))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"cannot read audio file {src}: {e}") from e
    with reader:
        rate, frames = reader.samplerate, reader.frames
        lo = max(start_s - pad_s, not_before_s, 0.0)
        hi = end_s + pad_s
        if not_after_s is not None:
            hi = min(hi, not_after_s)
        first = round(lo * rate)
        last = min(round(hi * rate), frames)
        if last <= first:
            raise ValueError(
                f"empty cut of {src}: {start_s:.3f}..{end_s:.3f} s gives frames {first}..{last}"
            )
        reader.seek(first)
        data = reader.read(last - first, dtype="float32", always_2d=True)
    fade = min(int(fade_s * rate), len(data) // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)[:, None]
        data[:fade] *= ramp
        data[len(data) - fade :] *= ramp[::-1]
    with temporary_sibling(dst) as tmp:
        sf.write(str(tmp), data, rate, subtype="PCM_16", format="WAV")
    return len(data) / rate


# ---------------------------------------------------------------------------------------------
# The verdict


class Embedder(Protocol):
    """Anything that embeds a WAV file's voice (``SpeakerEmbedder`` does)."""

    def vector(self, wav: Path) -> Sequence[float]: ...


@dataclass(frozen=True)
class VerifyConfig:
    """Thresholds of :func:`verify_clip`; the defaults are the measured ones (module docs)."""

    max_drop: int = 4
    """Recognised words that may be dropped at each end (prefix/suffix words and stutters)."""
    max_distance: int = 2
    """Levenshtein distance that always passes."""
    max_relative: float | None = 0.05
    """Distances up to this share of the line's length pass too (see distance_limit); ``None``:
    ``max_distance`` only."""
    unit: str = "chars"
    """``"chars"`` or ``"words"``: what the distance counts."""
    clip_level: float = 0.99
    """Sample magnitude that counts as clipped."""
    max_clipping: float = 0.001
    """Largest share of clipped samples in the kept part."""
    max_pause_s: float = 0.8
    """Longest silence allowed inside the kept part, seconds."""
    silence_below_peak_db: float = 40.0
    """A 20 ms frame this far below the loudest one counts as silence."""
    min_similarity: float = 0.75
    """Least cosine similarity of the clip's speaker embedding to the reference."""
    max_chars_per_s: float = 25.0
    """A voiced clip shorter than its framed text's letters at this rate is ``"truncated"``:
    the cloner gave back part of the line (CosyVoice 3 in kaia 5.2 returns only the first
    synthesised segment). People speak 10-17 letters a second."""


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify_clip` found.

    ``ok`` is True when every check passed; otherwise ``reason`` is the first failing one of
    :data:`REASONS` and ``details["failed"]`` lists all that failed. ``details`` holds the
    measures (``distance``, ``limit``, ``kept_text``, ``clipping``, ``pause_s``,
    ``word_pause_s``, ``similarity``, ``rate_cps``, ``error``...). ``start_s``/``end_s`` are the
    kept words' bounds and ``not_before_s``/``not_after_s`` the dropped neighbours' (``None``
    when there is no window).
    """

    ok: bool
    reason: str | None
    details: dict[str, Any] = field(default_factory=dict)
    start_s: float | None = None
    end_s: float | None = None
    not_before_s: float = 0.0
    not_after_s: float | None = None

    def cut(self, src: Path | str, dst: Path | str, *, pad_s: float = 0.05) -> float:
        """Cut ``src`` to the kept words with :func:`cut_clip`; ``ValueError`` if no window."""
        if self.start_s is None or self.end_s is None:
            raise ValueError(f"nothing to cut: the clip was rejected as {self.reason!r}")
        return cut_clip(
            src,
            dst,
            self.start_s,
            self.end_s,
            pad_s=pad_s,
            not_before_s=self.not_before_s,
            not_after_s=self.not_after_s,
        )


def _read_audio(wav: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate; ValueError for unreadable, empty or non-finite audio."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"cannot read audio file {wav}: {e}") from e
    if data.shape[0] == 0:
        raise ValueError(f"audio file {wav} has no samples")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"audio file {wav} has non-finite samples")
    return data, int(rate)


def _kept_vector(samples: np.ndarray, rate: int, embedder: Embedder | None) -> Sequence[float]:
    """The kept part's speaker embedding, via a temporary WAV (default: a ``SpeakerEmbedder``)."""
    import soundfile as sf

    if embedder is None:
        from chara_resources.embedded.speaker import SpeakerEmbedder

        embedder = SpeakerEmbedder()
    with tempfile.TemporaryDirectory(prefix="chara-verify-") as tmp:
        path = Path(tmp) / "kept.wav"
        sf.write(str(path), samples, rate, subtype="FLOAT")
        return embedder.vector(path)


def verify_clip(
    wav: Path | str,
    words: Sequence[Word],
    line: str,
    language: str,
    *,
    config: VerifyConfig = VerifyConfig(),
    reference: Sequence[float] | None = None,
    embedder: Embedder | None = None,
    vector: Sequence[float] | None = None,
    rate_bounds: tuple[float, float] | None = None,
) -> Verdict:
    """Check one voiced clip against its line; see the module docstring for the checks.

    Inputs: ``wav`` the voiced clip (prefix + line + suffix); ``words`` its recognition;
    ``line`` the text without prefix/suffix; ``config`` the thresholds; ``reference`` the
    character's speaker embedding (``None`` skips the speaker check) and ``embedder`` what embeds
    the kept part (default: a ``SpeakerEmbedder``), or ``vector`` the clip's embedding when it
    is known already (computed on BrainBox from the whole clip: the prefix and suffix add a
    second of the same voice); ``rate_bounds`` the (low, high) characters per
    second allowed (``None`` skips the rate check: use :func:`reject_rate_outliers` on the whole
    data set instead).

    Returns a :class:`Verdict`; never raises for a bad clip (an unreadable WAV is ``"audio"``,
    an embedding that fails on too little speech is ``"speaker"`` with the error in details).
    Raises ``ValueError`` only for a bad ``config.unit``.
    """
    wav = Path(wav)
    try:
        data, rate = _read_audio(wav)
    except ValueError as e:
        return Verdict(False, "audio", {"error": str(e)})
    duration = data.shape[0] / rate
    letters = len("".join(normalise_words(frame_line(line, language), language)))
    needed_s = letters / config.max_chars_per_s
    if duration < needed_s:
        details = {"duration_s": duration, "needed_s": needed_s, "letters": letters}
        return Verdict(False, "truncated", details)

    window = best_window(
        words, line, language, max_drop=config.max_drop, max_distance=None, unit=config.unit
    )
    if window is None:
        return Verdict(False, "no_words", {"words": len(words), "duration_s": duration})

    limit = distance_limit(window.reference_length, config.max_distance, config.max_relative)
    start_s = min(max(window.start_s, 0.0), duration)
    end_s = min(max(window.end_s, start_s), duration)
    kept_words = list(words[window.start : window.end])
    chars = len("".join(normalise_words(line, language)))
    details: dict[str, Any] = {
        "distance": window.distance,
        "limit": limit,
        "unit": window.unit,
        "kept_text": window.text,
        "dropped": (window.start, len(words) - window.end),
        "duration_s": duration,
        "word_pause_s": longest_pause(kept_words),
        "rate_cps": chars / (end_s - start_s) if end_s > start_s else float("nan"),
    }
    failed: list[str] = []
    if window.distance > limit:
        failed.append("mismatch")

    first, last = int(start_s * rate), max(int(start_s * rate) + 1, int(end_s * rate))
    kept = data[first:last]
    mono = kept.mean(axis=1)
    details["clipping"] = clipping_ratio(kept, level=config.clip_level)
    if details["clipping"] > config.max_clipping:
        failed.append("clipping")
    details["pause_s"] = longest_silence(
        mono, rate, below_peak_db=config.silence_below_peak_db, interior=True
    )
    if details["pause_s"] > config.max_pause_s:
        failed.append("silence")

    if reference is not None:
        from chara_resources.embedded.speaker import cosine_similarity

        try:
            if vector is None:
                vector = _kept_vector(mono, rate, embedder)
            details["similarity"] = cosine_similarity(vector, reference)
        except ValueError as e:  # too little speech to embed: cannot be the right voice
            details["similarity"] = float("nan")
            details["speaker_error"] = str(e)
        if not details["similarity"] >= config.min_similarity:  # NaN fails too
            failed.append("speaker")

    if rate_bounds is not None:
        low, high = rate_bounds
        if not low <= details["rate_cps"] <= high:
            failed.append("rate")

    details["failed"] = failed
    return Verdict(
        ok=not failed,
        reason=failed[0] if failed else None,
        details=details,
        start_s=start_s,
        end_s=end_s,
        not_before_s=window.not_before_s,
        not_after_s=window.not_after_s,
    )


def rate_bounds(
    rates: Sequence[float] | np.ndarray, *, k: float = 3.5, min_count: int = 5
) -> tuple[float, float] | None:
    """The (low, high) characters per second that :func:`rate_outliers` would not flag:
    ``median -/+ k * MAD / 0.6745`` (or the mean absolute deviation's stand-in).

    ``None`` if there are fewer than ``min_count`` finite rates or they do not vary. Handy to
    check clips voiced later against an existing data set's rates.
    """
    x = np.asarray(rates, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < min_count:
        return None
    median = float(np.median(x))
    mad = float(np.median(np.abs(x - median)))
    if mad > 0:
        spread = k * mad / 0.6745
    else:
        mean_ad = float(np.mean(np.abs(x - median)))
        if mean_ad == 0:
            return None
        spread = k * 1.2533 * mean_ad
    return (median - spread, median + spread)


def reject_rate_outliers(verdicts: Sequence[Verdict], *, k: float = 3.5) -> list[Verdict]:
    """The verdicts again, with passing clips whose speaking rate is an outlier turned into
    ``"rate"`` rejections.

    The median and MAD come from the passing clips only: a rejected clip's rate (a wrong line,
    a truncated clip) says nothing about how the character speaks. Verdicts without a rate, and
    rejected ones, are returned unchanged. See :func:`rate_outliers` for ``k``.
    """
    passing = [i for i, v in enumerate(verdicts) if v.ok]
    rates = [verdicts[i].details.get("rate_cps", float("nan")) for i in passing]
    flags = rate_outliers(rates, k=k)
    out = list(verdicts)
    for i, flagged in zip(passing, flags, strict=True):
        if flagged:
            v = verdicts[i]
            details = {**v.details, "failed": [*v.details.get("failed", []), "rate"]}
            out[i] = replace(v, ok=False, reason="rate", details=details)
    return out


__all__ = [
    "FRAMES",
    "REASONS",
    "Embedder",
    "Verdict",
    "VerifyConfig",
    "Window",
    "best_window",
    "clipping_ratio",
    "cut_clip",
    "distance_limit",
    "frame_line",
    "levenshtein",
    "longest_pause",
    "longest_silence",
    "normalise_words",
    "rate_bounds",
    "rate_outliers",
    "reject_rate_outliers",
    "verify_clip",
]
