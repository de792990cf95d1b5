"""Phoneme-coverage sentence selection: weights and scores on tiny matrices, quality on real
English text (Debian fortune files, phonemized with espeak-ng), and the selection rules."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from chara_assets.voice.selection import (
    NATIVE_PHONEMES,
    PhonemeMatrix,
    coverage,
    coverage_chart,
    phoneme_weights,
    random_selection,
    select_corpus,
    select_sentences,
    sentence_scores,
)

FORTUNES = Path("/usr/share/games/fortunes")  # Debian packages fortunes, fortunes-min
POOL_SIZE = 4000


def fortune_sentences(folder: Path) -> list[str]:
    """Distinct sentences of 60-120 characters from the fortune files directly in folder."""
    sentences: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix:  # skip the .dat indexes and .u8 links
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%$", text, flags=re.MULTILINE):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(entry.split())):
                if 60 <= len(sentence) <= 120:
                    sentences.append(sentence)
    return list(dict.fromkeys(sentences))


@pytest.fixture(scope="module")
def pool() -> PhonemeMatrix:
    """A few thousand real English sentences, spread over all the fortune files."""
    if not (FORTUNES / "fortunes").is_file():
        pytest.skip(f"needs the English fortune files in {FORTUNES} (Debian package fortunes)")
    sentences = fortune_sentences(FORTUNES)
    step = max(1, len(sentences) // POOL_SIZE)
    return PhonemeMatrix.from_texts(sentences[::step][:POOL_SIZE], "en")


def tiny(rows: list[dict[str, int]], texts: list[str] | None = None) -> PhonemeMatrix:
    """A hand-made matrix over the phonemes s, t, ʒ, θ (real English labels)."""
    phonemes = ("s", "t", "ʒ", "θ")
    counts = np.array([[row.get(p, 0) for p in phonemes] for row in rows], dtype=np.int32)
    return PhonemeMatrix("en", phonemes, counts, ((),) * len(rows), texts)


# --- weights, scores and the greedy step on tiny matrices --------------------------------------
def test_weights_follow_the_formula() -> None:
    assert phoneme_weights(np.array([0, 0, 0])) == pytest.approx([math.e] * 3)  # max c = 0
    assert phoneme_weights(np.array([4, 2, 0])) == pytest.approx([1.0, math.exp(0.5), math.e])


def test_score_is_the_count_weighted_mean_weight() -> None:
    weights = np.array([1.0, 2.0, 4.0])
    rows = np.array([[1, 1, 0], [3, 0, 1], [0, 0, 0]])
    # (1*1 + 1*2) / 2 = 1.5; (3*1 + 1*4) / 4 = 1.75; no phonemes: 0
    assert sentence_scores(rows, weights) == pytest.approx([1.5, 1.75, 0.0])


def test_the_rare_phoneme_is_chased_and_concentrated_sentences_win() -> None:
    matrix = tiny(
        [
            {"s": 4, "t": 4},  # 0: accepted, common phonemes only
            {"s": 1, "ʒ": 1},  # 1: score (1 + e) / 2 = 1.86
            {"t": 3, "ʒ": 1},  # 2: score (3 + e) / 4 = 1.43
            {"s": 2, "t": 2},  # 3: nothing rare
        ]
    )
    assert select_sentences(matrix, 2, accepted=[0]) == [0, 1]
    assert select_sentences(matrix, 4, accepted=[0]) == [0, 1, 2, 3]


def test_a_candidate_must_hold_a_phoneme_of_maximal_weight() -> None:
    matrix = tiny(
        [
            {"s": 4, "t": 4, "θ": 1},  # 0: accepted; ʒ unseen so far, θ seen once
            {"θ": 1},  # 1: score exp(1 - 1/4) = 2.12, but holds no ʒ
            {"s": 3, "ʒ": 1},  # 2: score (3 + e) / 4 = 1.43, holds ʒ (weight e)
        ]
    )
    assert select_sentences(matrix, 2, accepted=[0]) == [0, 2]


def test_with_nothing_selected_every_phoneme_weighs_the_same() -> None:
    matrix = tiny([{"s": 1, "t": 1}, {"ʒ": 2}, {"θ": 1, "s": 1}])
    assert select_sentences(matrix, 1) == [0]  # all score e: the lowest index wins


# --- quality on real text -------------------------------------------------------------------
@pytest.mark.slow
def test_selection_covers_every_phoneme_far_better_than_random(
    pool: PhonemeMatrix, tmp_path: Path
) -> None:
    in_pool = coverage(pool, range(len(pool)))
    frequent = [p for p, n in in_pool.items() if n >= 20]
    assert len(frequent) >= 50  # nearly all of the 59 English phonemes

    selected = select_sentences(pool, 300)
    assert len(selected) == len(set(selected)) == 300
    chosen = coverage(pool, selected)
    baseline = coverage(pool, random_selection(pool, 300, seed=0))
    lowest = min(chosen[p] for p in frequent)
    lowest_random = min(baseline[p] for p in frequent)
    assert lowest >= 3, {p: chosen[p] for p in frequent if chosen[p] < 3}
    # Measured: 48 vs 6 (seeds 0-9 of random: 2 to 6); 3x is the floor the design asks for.
    assert lowest >= 3 * max(lowest_random, 1), (lowest, lowest_random)

    chart = coverage_chart(chosen, baseline, tmp_path / "coverage.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_selection_is_deterministic(pool: PhonemeMatrix) -> None:
    assert select_sentences(pool, 120) == select_sentences(pool, 120)
    assert random_selection(pool, 50, seed=3) == random_selection(pool, 50, seed=3)
    assert random_selection(pool, 50, seed=3) != random_selection(pool, 50, seed=4)


@pytest.mark.slow
def test_accepted_sentences_come_first_and_count(pool: PhonemeMatrix) -> None:
    accepted = [17, 5, 999]
    selected = select_sentences(pool, 5, accepted=accepted)
    assert selected[:3] == accepted and len(selected) == 5
    # The next pick is the greedy step from the accepted counts, by the definition.
    counts = np.array(list(coverage(pool, accepted).values()))
    available = np.ones(len(pool), dtype=bool)
    available[accepted] = False
    available &= np.array([not markers for markers in pool.foreign])
    live = (pool.counts[available] > 0).any(axis=0)
    rarest = live & (counts == counts[live].min())
    candidates = np.flatnonzero(available & (pool.counts[:, rarest] > 0).any(axis=1))
    scores = sentence_scores(pool.counts[candidates], phoneme_weights(counts))
    assert selected[3] == candidates[np.argmax(scores)]
    # Accepted beyond the target: all are kept, nothing added.
    assert select_sentences(pool, 2, accepted=accepted) == accepted


@pytest.mark.slow
def test_rejected_and_banned_sentences_never_appear(pool: PhonemeMatrix) -> None:
    rejected = select_sentences(pool, 40)  # the favourites
    banned = ["the", "You"]
    selected = select_sentences(pool, 300, rejected=rejected, banned_words=banned)
    assert len(selected) == 300
    assert not set(selected) & set(rejected)
    for i in selected:
        assert not re.search(r"\b(the|you)\b", pool.texts[i], re.IGNORECASE), pool.texts[i]
    assert not set(random_selection(pool, 300, rejected=rejected)) & set(rejected)


def test_banned_words_are_whole_words_in_any_case() -> None:
    matrix = tiny([{"s": 1}, {"t": 1}, {"ʒ": 1}], ["I love it.", "Lovely day!", "LOVE, love."])
    assert select_sentences(matrix, 3, banned_words=["love"]) == [1]


def test_a_text_is_selected_once() -> None:
    texts = ["Hi there.", "Yo.", "hi  THERE."]  # rows 0 and 2: the same text
    matrix = tiny([{"s": 1, "ʒ": 1}, {"t": 1}, {"s": 1, "ʒ": 1}], texts)
    assert select_sentences(matrix, 3) == [0, 1]
    assert select_sentences(matrix, 3, rejected=[2]) == [1]  # rejected under either row


@pytest.mark.slow
def test_a_target_beyond_the_pool_returns_what_exists(pool: PhonemeMatrix) -> None:
    n = 150
    small = PhonemeMatrix("en", pool.phonemes, pool.counts[:n], pool.foreign[:n], pool.texts[:n])
    usable = [i for i in range(n) if not small.foreign[i] and small.counts[i].any()]
    selected = select_sentences(small, 10_000)
    assert sorted(selected) == usable
    assert select_sentences(small, 0) == []


# --- foreign words --------------------------------------------------------------------------
GERMAN = [
    "Stell den Timer auf fünf Minuten, bitte.",  # Timer: espeak switches to English
    "Schalte das Bluetooth im Wohnzimmer aus.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "Die Küche ist warm, und draußen regnet es seit heute früh.",
    "Wir treffen uns zu einem Rendezvous im Park.",  # the French nasal
    "Könntest du bitte das Licht im Flur einschalten?",
]


def test_native_pangrams_have_no_foreign_markers() -> None:
    for language, text in [
        ("en", "The quick brown fox jumps over the lazy dog."),
        ("de", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich."),
        ("ru", "Съешь же ещё этих мягких французских булок, да выпей чаю."),
    ]:
        matrix = PhonemeMatrix.from_texts([text], language)
        assert matrix.foreign == ((),), (language, matrix.foreign)
        assert set(matrix.phonemes) == NATIVE_PHONEMES[language]
        assert matrix.counts.sum() > 20


def test_foreign_spans_are_marked_and_not_counted() -> None:
    phonemized = [
        [["ʃ", "t", "ɛ", "l"], ["(en)", "t", "aɪ", "m", "ə"], ["aʊ", "f", "(de)", "n"]],
        [["r", "ɑ̃", "d", "eː"]],
        [["(en)", "θ", "ɪ", "ŋ"]],  # never switched back: foreign to the end
    ]
    matrix = PhonemeMatrix.from_phonemes(phonemized, "de")
    assert matrix.foreign == (("(en)",), ("ɑ̃",), ("(en)",))
    counted = [dict(zip(matrix.phonemes, row.tolist(), strict=True)) for row in matrix.counts]
    assert {p: n for p, n in counted[0].items() if n} == {"ʃ": 1, "t": 1, "ɛ": 1, "l": 1, "n": 1}
    assert {p: n for p, n in counted[1].items() if n} == {"r": 1, "d": 1, "eː": 1}
    assert not any(counted[2].values())


def test_foreign_drop_and_ignore() -> None:
    matrix = PhonemeMatrix.from_texts(GERMAN, "de")
    marked = {i for i, markers in enumerate(matrix.foreign) if markers}
    assert {0, 1, 4} <= marked and 3 not in marked
    dropped = select_sentences(matrix, 10, foreign="drop")
    assert not set(dropped) & marked and len(dropped) == len(GERMAN) - len(marked)
    assert sorted(select_sentences(matrix, 10, foreign="ignore")) == list(range(len(GERMAN)))
    # Accepted sentences stay even when foreign.
    assert select_sentences(matrix, 2, accepted=[0], foreign="drop")[0] == 0


def test_bad_arguments_are_refused() -> None:
    matrix = tiny([{"s": 1}, {"t": 1}])
    with pytest.raises(ValueError, match="both accepted and rejected"):
        select_sentences(matrix, 2, accepted=[0], rejected=[0])
    with pytest.raises(ValueError, match="foreign"):
        select_sentences(matrix, 2, foreign="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="texts"):
        select_sentences(matrix, 2, banned_words=["x"])
    with pytest.raises(ValueError, match="outside"):
        select_sentences(matrix, 2, accepted=[5])
    with pytest.raises(ValueError, match="target"):
        select_sentences(matrix, -1)
    with pytest.raises(ValueError, match="inventory"):
        PhonemeMatrix.from_phonemes([], "fr")


def test_a_corpus_starts_from_the_review_and_is_compared_with_random() -> None:
    texts = ["Sa.", "Ta.", "Zha.", "Tha.", "Sat."]
    matrix = tiny([{"s": 3}, {"t": 2}, {"ʒ": 1}, {"θ": 1}, {"s": 1, "t": 1}], texts)
    choice = select_corpus(
        matrix, 3, accepted=["Ta.", "no longer in the pool"], rejected=["Zha.", "gone too"]
    )
    assert (choice.accepted, choice.accepted_gone) == (1, 1)
    assert choice.chosen[0] == 1 and 2 not in choice.chosen and len(choice.chosen) == 3
    assert choice.selected == coverage(matrix, choice.chosen)
    assert choice.pool == {"s": 4, "t": 3, "ʒ": 1, "θ": 1}
    assert sum(choice.random.values()) > 0  # a random pick of as many sentences
    assert choice.random == coverage(matrix, random_selection(matrix, 3, seed=0))
    least = choice.least_covered(2)
    assert [n for _, n in least] == sorted(choice.selected.values())[:2]
    order = choice.table_order()
    assert order[: len(choice.least_covered())] == choice.least_covered()
    assert sorted(order) == sorted(choice.selected.items())  # every phoneme once
    with pytest.raises(ValueError, match="needs a matrix built with texts"):
        select_corpus(tiny([{"s": 1}]), 1)
