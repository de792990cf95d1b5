"""Verification of voiced clips: hand-made word timings, synthetic audio, then real speech.

The real-speech tests voice "The beginning. <line> The end." with the stand-in English voice
(Piper "joe"), recognise it with pocketsphinx (the embedded recogniser for English), verify and
cut it. Piper samples noise, so its clips differ from run to run: the lines below are ones that
pocketsphinx recognised exactly in repeated runs (fortune-file sentences are recognised far
worse; see the module docstring of chara_assets.voice.verification for the measurements).
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_assets.voice.verification import (
    REASONS,
    Verdict,
    VerifyConfig,
    best_window,
    clipping_ratio,
    cut_clip,
    distance_limit,
    frame_line,
    levenshtein,
    longest_pause,
    longest_silence,
    normalise_words,
    rate_bounds,
    rate_outliers,
    reject_rate_outliers,
    verify_clip,
)

RATE = 16000


def words_of(text: str, start: float = 0.0, step: float = 0.4, gap: float = 0.05) -> list[dict]:
    """Recogniser-shaped words for ``text``, one every ``step`` seconds."""
    out = []
    for i, w in enumerate(text.split()):
        t = start + i * step
        out.append({"word": w, "start": t, "end": t + step - gap, "conf": 0.9})
    return out


def write_speechlike(path: Path, spans: list[tuple[float, float]], seconds: float) -> Path:
    """A WAV that is a 200 Hz tone inside ``spans`` and silent elsewhere."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = np.zeros_like(t)
    for a, b in spans:
        inside = (t >= a) & (t < b)
        audio[inside] = 0.5 * np.sin(2 * np.pi * 200 * t[inside])
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def plain_levenshtein(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


# --- text ------------------------------------------------------------------------------------


def test_levenshtein_matches_the_plain_dynamic_programme():
    rnd = random.Random(5)
    for _ in range(400):
        a = "".join(rnd.choice("abcé") for _ in range(rnd.randrange(0, 70)))
        b = "".join(rnd.choice("abcd") for _ in range(rnd.randrange(0, 70)))
        assert levenshtein(a, b) == plain_levenshtein(a, b)
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    # Word sequences work the same way, and a 200-symbol pattern (over 64 bits) too.
    assert levenshtein(["turn", "on", "the", "light"], ["turn", "the", "lights"]) == 2
    long_a, long_b = "ab" * 100, "ba" * 100
    assert levenshtein(long_a, long_b) == plain_levenshtein(long_a, long_b) == 2


def test_normalise_words_folds_letters_and_drops_punctuation():
    assert normalise_words("Ёжик, ещё!", "ru") == ["ежик", "еще"]
    assert normalise_words("Die Straße.", "de") == ["die", "strasse"]
    assert normalise_words("Don't stop—well-known?", "en") == ["dont", "stop", "well", "known"]
    assert normalise_words(" ... ", "en") == []
    # Whisper writes numbers as digits; lines spell them.
    assert normalise_words("work 12", "en") == ["work", "twelve"]


def test_frame_line_uses_the_language_prefix_and_suffix():
    assert frame_line("Hallo.", "de-DE") == "Der Beginn. Hallo. Das Ende."
    with pytest.raises(KeyError, match="known"):
        frame_line("x", "fr")


# --- best window -----------------------------------------------------------------------------


def test_prefix_and_suffix_are_dropped():
    words = words_of("the beginning turn on the light in the kitchen the end")
    w = best_window(words, "Turn on the light in the kitchen.", "en")
    assert w is not None
    assert (w.start, w.end, w.distance) == (2, 9, 0)
    assert w.text == "turn on the light in the kitchen"
    assert w.start_s == pytest.approx(0.8) and w.end_s == pytest.approx(3.55)
    # The cut may not reach into the dropped words.
    assert w.not_before_s == pytest.approx(0.75) and w.not_after_s == pytest.approx(3.6)


def test_stutters_at_the_edges_are_dropped_too():
    words = words_of("the the beginning beginning turn on the light the end end uh")
    w = best_window(words, "Turn on the light.", "en")
    assert w is not None and (w.start, len(words) - w.end, w.distance) == (4, 4, 0)


def test_no_more_than_max_drop_words_are_dropped():
    words = words_of("well hello there dear friend turn on the light")
    assert best_window(words, "Turn on the light.", "en", max_drop=5).distance == 0
    assert best_window(words, "Turn on the light.", "en", max_drop=4) is None


def test_a_missing_short_word_is_within_tolerance():
    words = words_of("the beginning turn on the light the kitchen the end")  # no "in"
    w = best_window(words, "Turn on the light in the kitchen.", "en")
    assert w is not None and w.distance == 2


def test_a_wrong_line_is_a_mismatch():
    words = words_of("the beginning your coffee is ready the end")
    line = "Turn on the light in the kitchen."
    assert best_window(words, line, "en") is None
    w = best_window(words, line, "en", max_distance=None)
    assert w is not None and w.distance > 10


def test_distance_limit_grows_with_long_lines_only():
    assert distance_limit(20, 2, 0.05) == 2
    assert distance_limit(100, 2, 0.05) == 5
    assert distance_limit(100, 2, None) == 2


def test_word_unit_counts_words():
    words = words_of("the beginning turn of the lights the end")
    w = best_window(words, "Turn on the light.", "en", unit="words", max_distance=None)
    assert w is not None and w.distance == 2 and w.reference_length == 4


def test_letterless_words_are_not_window_edges():
    words = words_of("the beginning ... turn on the light ... the end")
    w = best_window(words, "Turn on the light.", "en")
    assert w is not None and w.text == "turn on the light"


def test_yo_and_eszett_compare_equal():
    ru = words_of("я начинаю ещё раз ёлка я закончил")
    assert best_window(ru, "Еще раз елка.", "ru").distance == 0
    de = words_of("der beginn grosse strasse das ende")
    assert best_window(de, "Große Straße.", "de").distance == 0


def test_no_words_gives_no_window():
    assert best_window([], "Hello.", "en") is None
    assert best_window(words_of("... ?"), "Hello.", "en") is None


# --- measures --------------------------------------------------------------------------------


def test_pause_and_silence_measures():
    words = [
        {"word": "a", "start": 0.0, "end": 0.3, "conf": 1},
        {"word": "b", "start": 1.5, "end": 1.8, "conf": 1},
        {"word": "c", "start": 1.9, "end": 2.2, "conf": 1},
    ]
    assert longest_pause(words) == pytest.approx(1.2)
    assert longest_pause(words[:1]) == 0.0
    t = np.arange(3 * RATE) / RATE
    audio = np.where((t < 1) | (t >= 2.5), np.sin(2 * np.pi * 200 * t), 0.0)
    assert longest_silence(audio, RATE) == pytest.approx(1.5, abs=0.03)
    edges = np.where((t >= 1) & (t < 2), np.sin(2 * np.pi * 200 * t), 0.0)  # quiet ends only
    assert longest_silence(edges, RATE) == pytest.approx(1.0, abs=0.03)
    assert longest_silence(edges, RATE, interior=True) == 0.0
    assert longest_silence(np.zeros(10), RATE) == 0.0


def test_clipping_ratio():
    assert clipping_ratio(np.array([0.1, -1.0, 1.0, 0.5])) == 0.5
    assert clipping_ratio(np.zeros(0)) == 0.0


def test_rate_outliers_are_robust():
    rates = [14.0, 15.0, 15.5, 16.0, 14.5, 15.2, 30.0, float("nan"), 5.0]
    flags = rate_outliers(rates)
    assert flags.tolist() == [False] * 6 + [True, False, True]
    assert not rate_outliers([1.0, 50.0, 3.0]).any()  # too few to judge
    assert rate_outliers([15.0] * 6 + [16.0]).tolist() == [False] * 6 + [True]  # MAD 0
    low, high = rate_bounds(rates)
    assert low < 14.0 and 16.0 < high < 30.0


def test_reject_rate_outliers_turns_only_passing_clips():
    ok = [Verdict(True, None, {"rate_cps": r, "failed": []}) for r in (15, 15.5, 14.5, 16, 15.2)]
    fast = Verdict(True, None, {"rate_cps": 40.0, "failed": []})
    bad = Verdict(False, "mismatch", {"rate_cps": 60.0, "failed": ["mismatch"]})
    out = reject_rate_outliers([*ok, fast, bad])
    assert out[:5] == ok and out[6] is bad
    assert (out[5].ok, out[5].reason, out[5].details["failed"]) == (False, "rate", ["rate"])


# --- verify_clip and cut_clip on synthetic audio ---------------------------------------------


def test_verify_clip_passes_and_reports(tmp_path: Path):
    words = words_of("the beginning turn on the light the end")
    wav = write_speechlike(tmp_path / "a.wav", [(w["start"], w["end"]) for w in words], 3.4)
    v = verify_clip(wav, words, "Turn on the light.", "en")
    assert v.ok and v.reason is None, v.details
    assert v.details["distance"] == 0 and v.details["failed"] == []
    assert v.start_s == pytest.approx(0.8) and v.end_s == pytest.approx(2.35)
    assert v.details["rate_cps"] == pytest.approx(len("turnonthelight") / 1.55)
    assert "similarity" not in v.details  # no reference: no speaker check


def test_verify_clip_reasons(tmp_path: Path):
    words = words_of("the beginning turn on the light the end")
    spans = [(w["start"], w["end"]) for w in words]
    wav = write_speechlike(tmp_path / "a.wav", spans, 3.4)
    line = "Turn on the light."

    v = verify_clip(wav, words, "Play some music now.", "en")
    assert (v.ok, v.reason) == (False, "mismatch") and v.details["distance"] > v.details["limit"]
    assert verify_clip(wav, [], line, "en").reason == "no_words"
    assert verify_clip(wav, words, line, "en", rate_bounds=(20.0, 30.0)).reason == "rate"

    # A 1.5 s pause inside the line: found from the energy even though the words leave no gap.
    paused = words_of("the beginning turn on") + words_of("the light the end", start=3.1)
    paused[3]["end"] = 3.1
    long = write_speechlike(tmp_path / "p.wav", [(0, 1.55), (3.1, 4.65)], 5.0)
    v = verify_clip(long, paused, line, "en")
    assert v.reason == "silence" and v.details["pause_s"] == pytest.approx(1.5, abs=0.05)
    assert v.details["word_pause_s"] < 0.1

    clipped = tmp_path / "c.wav"
    data, rate = sf.read(wav)
    sf.write(clipped, np.clip(data * 4, -1, 1), rate, subtype="PCM_16")
    v = verify_clip(clipped, words, line, "en")
    assert v.reason == "clipping" and v.details["clipping"] > 0.1


def test_unreadable_or_empty_audio(tmp_path: Path):
    words = words_of("the beginning hello the end")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x01junk" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), RATE, subtype="PCM_16")
    for path in (garbage, empty, tmp_path / "missing.wav"):
        v = verify_clip(path, words, "Hello.", "en")
        assert (v.ok, v.reason) == (False, "audio") and str(path) in v.details["error"]
        with pytest.raises(ValueError, match="nothing to cut"):
            v.cut(path, tmp_path / "out.wav")
    assert "audio" in REASONS


def test_cut_clip_pads_but_never_into_dropped_words(tmp_path: Path):
    src = tmp_path / "ramp.wav"
    ramp = np.linspace(-0.5, 0.5, 2 * RATE)
    sf.write(src, np.stack([ramp, -ramp], axis=1), RATE, subtype="FLOAT")
    dst = tmp_path / "out" / "cut.wav"
    assert cut_clip(src, dst, 0.5, 1.0, pad_s=0.1) == pytest.approx(0.7)
    info = sf.info(dst)
    assert (info.subtype, info.channels, info.samplerate) == ("PCM_16", 2, RATE)
    data, _ = sf.read(dst)
    assert data[len(data) // 2, 0] == pytest.approx(ramp[int(0.75 * RATE)], abs=1e-3)
    # Clamped by the neighbours' bounds and by the file's ends.
    assert cut_clip(src, dst, 0.5, 1.0, pad_s=0.1, not_before_s=0.45, not_after_s=1.02) == (
        pytest.approx(0.57)
    )
    assert cut_clip(src, dst, 0.0, 2.0, pad_s=0.5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="empty cut"):
        cut_clip(src, dst, 1.0, 1.0, pad_s=0.0)
    with pytest.raises(ValueError, match="cannot read"):
        cut_clip(tmp_path / "missing.wav", dst, 0, 1)


# --- real speech -----------------------------------------------------------------------------

LINE = "The music is playing in the living room."
OTHER_LINE = "Your coffee is ready in the kitchen."
REFERENCE_TEXT = (
    "Hello! I am your cheerful helper. I will remind you about your timers and tell you what "
    "the weather looks like today."
)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Clips voiced once for the module: joe's clip and reference, espeak-ng's clip."""
    from chara_resources.embedded.recognition import Recognizer
    from chara_resources.embedded.speaker import SpeakerEmbedder
    from chara_resources.embedded.speech import StandInVoices

    folder = tmp_path_factory.mktemp("verification")
    voices, recognizer, embedder = StandInVoices(), Recognizer(), SpeakerEmbedder()
    joe = folder / "joe.wav"
    voices.speak(frame_line(LINE, "en"), "en", joe)
    voices.speak(REFERENCE_TEXT, "en", folder / "reference.wav")
    other = folder / "f3.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us+f3", "-w", str(other), frame_line(LINE, "en")],
        check=True,
        timeout=60,
    )
    return {
        "folder": folder,
        "recognizer": recognizer,
        "embedder": embedder,
        "joe": joe,
        "joe_words": recognizer.transcribe(joe, "en"),
        "other": other,
        "other_words": recognizer.transcribe(other, "en"),
        "reference": embedder.vector(folder / "reference.wav"),
    }


@pytest.mark.slow
def test_real_clip_passes_and_its_cut_holds_only_the_line(real: dict):
    v = verify_clip(real["joe"], real["joe_words"], LINE, "en")
    assert v.ok, (v.reason, v.details, real["joe_words"])
    dropped_start, dropped_end = v.details["dropped"]
    assert dropped_start >= 2 and dropped_end >= 2  # at least "the beginning" and "the end"

    cut = real["folder"] / "joe_cut.wav"
    seconds = v.cut(real["joe"], cut)
    assert 1.0 < seconds < sf.info(real["joe"]).duration - 1.0
    heard = real["recognizer"].transcribe(cut, "en")
    heard_words = {w for item in heard for w in normalise_words(item["word"], "en")}
    assert set(normalise_words(LINE, "en")) <= heard_words, heard
    assert not heard_words & {"beginning", "end"}, heard
    # Nothing left to drop: the cut says the line.
    assert best_window(heard, LINE, "en", max_drop=0) is not None, heard


@pytest.mark.slow
def test_real_clip_of_another_line_is_a_mismatch(real: dict):
    v = verify_clip(real["joe"], real["joe_words"], OTHER_LINE, "en")
    assert (v.ok, v.reason) == (False, "mismatch")
    assert v.details["distance"] > 10


@pytest.mark.slow
def test_speaker_check_separates_voices(real: dict):
    config = VerifyConfig()
    speaker = {"reference": real["reference"], "embedder": real["embedder"]}
    same = verify_clip(real["joe"], real["joe_words"], LINE, "en", **speaker)
    other = verify_clip(real["other"], real["other_words"], LINE, "en", **speaker)
    # Measured on the kept part of such clips: joe 0.86-0.92 against a joe reference, espeak-ng
    # voices (en-us, +f3, +m3) 0.40-0.55; the default threshold 0.75 sits between with margin.
    print(
        f"similarity: joe {same.details['similarity']:.3f}, "
        f"espeak-ng en-us+f3 {other.details['similarity']:.3f}"
    )
    assert same.ok and same.details["similarity"] >= config.min_similarity + 0.05
    assert "speaker" in other.details["failed"]
    assert other.details["similarity"] <= config.min_similarity - 0.1
