"""Choosing the sentences a voice is trained on so that they cover every native phoneme.

A Piper voice only learns the sounds its training sentences contain. Sentences are
phonemized with espeak-ng (:class:`chara_resources.embedded.phonemes.EspeakPhonemes`), turned
into a sentence x phoneme count matrix (:class:`PhonemeMatrix`), and chosen greedily by
:func:`select_sentences`: each step takes the sentence whose phonemes are, on average, the
least covered so far. Pure logic: no Dagster, no files (except :func:`coverage_chart`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from chara_resources.languages import PerLanguage, get_language

# The native phoneme inventories (how each was derived and curated) are in the registry.
NATIVE_PHONEMES = PerLanguage(lambda lang: lang.native_phonemes)

ForeignMode = Literal["drop", "ignore"]
_SWITCH = re.compile(r"^\(([a-z]{2,3})(?:-[a-z0-9]+)?\)$")  # espeak's "(en)", "(en-us)"


# --- The matrix -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PhonemeMatrix:
    """Native phoneme counts per sentence, plus what marks each sentence as foreign.

    Attributes:
        language: language code, a key of :data:`NATIVE_PHONEMES`.
        phonemes: the column labels: the language's native phonemes, sorted.
        counts: ``(sentences, phonemes)`` integer array; only native phonemes spoken with
            the language's own rules are counted (not those inside a foreign span).
        foreign: per sentence, its foreign markers in order of appearance: espeak's
            language-switch tokens (``"(en)"``) and non-native phonemes. Empty: native.
        texts: the sentences (needed for banned words and to voice each text once), or None.

    Raises:
        ValueError: an unknown language, inconsistent lengths, repeated phoneme labels, or
            counts that are not non-negative integers.
    """

    language: str
    phonemes: tuple[str, ...]
    counts: np.ndarray
    foreign: tuple[tuple[str, ...], ...]
    texts: tuple[str, ...] | None = None
    _scoring: np.ndarray = field(init=False, repr=False)  # float32 copy of counts

    def __post_init__(self) -> None:
        if self.language not in NATIVE_PHONEMES:
            raise ValueError(
                f"no phoneme inventory for {self.language!r}; known: {sorted(NATIVE_PHONEMES)}"
            )
        counts = np.asarray(self.counts)
        if counts.ndim != 2 or counts.shape[1] != len(self.phonemes):
            raise ValueError(
                f"counts must be (sentences, {len(self.phonemes)}), not {counts.shape}"
            )
        if counts.size and (not np.issubdtype(counts.dtype, np.integer) or counts.min() < 0):
            raise ValueError("counts must be non-negative integers")
        if len(set(self.phonemes)) != len(self.phonemes):
            raise ValueError("phoneme labels must be distinct")
        if len(self.foreign) != counts.shape[0]:
            raise ValueError("one foreign-marker tuple per sentence is needed")
        if self.texts is not None and len(self.texts) != counts.shape[0]:
            raise ValueError("one text per sentence is needed")
        object.__setattr__(self, "phonemes", tuple(self.phonemes))
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "foreign", tuple(tuple(m) for m in self.foreign))
        if self.texts is not None:
            object.__setattr__(self, "texts", tuple(self.texts))
        # float32 halves the memory traffic of the per-step scoring; counts are small
        # integers and the scores only need to rank candidates.
        object.__setattr__(self, "_scoring", counts.astype(np.float32))

    def __len__(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def from_phonemes(
        cls,
        phonemized: Sequence[Sequence[Sequence[str]]],
        language: str,
        texts: Sequence[str] | None = None,
    ) -> PhonemeMatrix:
        """Build from ``EspeakPhonemes.phonemize`` output (per sentence, per word, phonemes).

        A ``"(xx)"`` token opens a span spoken with language xx's rules, which lasts until a
        token of this language (``"(de)"``) or the end of the sentence, across words; its
        phonemes are not counted and the token is recorded as a foreign marker. A phoneme
        outside the native inventory is recorded as a marker and not counted.

        Raises:
            ValueError: unknown language, or texts of a different length.
        """
        if language not in NATIVE_PHONEMES:
            raise ValueError(
                f"no phoneme inventory for {language!r}; known: {sorted(NATIVE_PHONEMES)}"
            )
        phonemes = tuple(sorted(NATIVE_PHONEMES[language]))
        column = {p: i for i, p in enumerate(phonemes)}
        rows: list[int] = []
        cols: list[int] = []
        foreign: list[tuple[str, ...]] = []
        for row, words in enumerate(phonemized):
            markers: list[str] = []
            in_foreign = False
            for word in words:
                for p in word:
                    switch = _SWITCH.match(p)
                    if switch:
                        in_foreign = switch.group(1) != language
                        if in_foreign:
                            markers.append(p)
                    elif in_foreign:
                        continue
                    elif p in column:
                        rows.append(row)
                        cols.append(column[p])
                    else:
                        markers.append(p)
            foreign.append(tuple(markers))
        n = len(foreign)
        flat = np.asarray(rows, dtype=np.int64) * len(phonemes) + np.asarray(cols, dtype=np.int64)
        counts = np.bincount(flat, minlength=n * len(phonemes)).reshape(n, len(phonemes))
        return cls(
            language=language,
            phonemes=phonemes,
            counts=counts.astype(np.int32),
            foreign=tuple(foreign),
            texts=None if texts is None else tuple(texts),
        )

    @classmethod
    def from_texts(cls, texts: Sequence[str], language: str) -> PhonemeMatrix:
        """Phonemize ``texts`` with espeak-ng (the language's voice) and build the matrix.

        Raises:
            ValueError: unknown language.
            chara_resources.embedded.phonemes.PhonemizerError: espeak-ng is missing.
        """
        from chara_resources.embedded.phonemes import EspeakPhonemes

        voice = get_language(language).espeak_voice
        return cls.from_phonemes(EspeakPhonemes().phonemize(list(texts), voice), language, texts)

    def indices_of(self, texts: Iterable[str]) -> list[int]:
        """Row index of each text (its first occurrence), e.g. for accepted sentences.

        Raises:
            ValueError: the matrix has no texts, or a text is not in it.
        """
        if self.texts is None:
            raise ValueError("this matrix was built without texts")
        first: dict[str, int] = {}
        for i, text in enumerate(self.texts):
            first.setdefault(text, i)
        missing = [t for t in texts if t not in first]
        if missing:
            raise ValueError(f"{len(missing)} text(s) not in the matrix, e.g. {missing[0]!r}")
        return [first[t] for t in texts]


# --- Weights and scores ---------------------------------------------------------------------
def phoneme_weights(counts: np.ndarray) -> np.ndarray:
    """``w(p) = exp(1 - c(p) / max c)``: e for an unseen phoneme, 1 for the most frequent.

    Input: per-phoneme counts of the selection so far. Output: float64 weights, same shape.
    With nothing selected yet (max c = 0) every phoneme weighs e.
    """
    counts = np.asarray(counts, dtype=np.float64)
    top = counts.max(initial=0.0)
    if top <= 0:
        return np.full(counts.shape, math.e)
    return np.exp(1.0 - counts / top)


def sentence_scores(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Count-weighted mean weight of each sentence's phonemes: ``(rows @ w) / rows.sum(1)``.

    Input: ``(sentences, phonemes)`` counts and per-phoneme weights. Output: one score per
    sentence; 0 for a sentence without phonemes.
    """
    rows = np.asarray(rows, dtype=np.float64)
    total = rows.sum(axis=1)
    return np.divide(rows @ weights, total, out=np.zeros(len(rows)), where=total > 0)


# --- Selection ------------------------------------------------------------------------------
def _banned_rows(matrix: PhonemeMatrix, banned_words: Iterable[str]) -> np.ndarray:
    words = sorted({w.strip() for w in banned_words if w.strip()}, key=len, reverse=True)
    banned = np.zeros(len(matrix), dtype=bool)
    if not words:
        return banned
    if matrix.texts is None:
        raise ValueError("banned words need a matrix built with texts")
    # Whole words, case-insensitively; lookarounds rather than \b so that a banned word
    # may itself start or end with a non-word character.
    pattern = re.compile(
        r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE
    )
    for i, text in enumerate(matrix.texts):
        if pattern.search(text):
            banned[i] = True
    return banned


def _check_indices(matrix: PhonemeMatrix, indices: Iterable[int], what: str) -> list[int]:
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < len(matrix)]
    if bad:
        raise ValueError(f"{what} index {bad[0]} is outside the matrix (0..{len(matrix) - 1})")
    return list(dict.fromkeys(out))  # without repeats, in order


def _same_text_groups(matrix: PhonemeMatrix) -> dict[int, np.ndarray]:
    """Rows whose text occurs more than once, mapped to all rows with that text."""
    if matrix.texts is None:
        return {}
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(matrix.texts):
        groups.setdefault(" ".join(text.split()).casefold(), []).append(i)
    out: dict[int, np.ndarray] = {}
    for rows in groups.values():
        if len(rows) > 1:
            array = np.asarray(rows)
            out.update(dict.fromkeys(rows, array))
    return out


@dataclass
class _Pool:
    """The candidates still available, with per-phoneme availability kept incrementally."""

    matrix: PhonemeMatrix
    available: np.ndarray  # bool per row
    present: np.ndarray  # bool (rows, phonemes): the row contains the phoneme
    per_phoneme: np.ndarray  # available rows containing each phoneme
    same_text: dict[int, np.ndarray]

    @classmethod
    def build(
        cls,
        matrix: PhonemeMatrix,
        accepted: list[int],
        rejected: list[int],
        banned_words: Iterable[str],
        foreign: ForeignMode,
    ) -> _Pool:
        if foreign not in ("drop", "ignore"):
            raise ValueError(f"foreign must be 'drop' or 'ignore', not {foreign!r}")
        both = set(accepted) & set(rejected)
        if both:
            raise ValueError(f"sentence {min(both)} is both accepted and rejected")
        present = matrix.counts > 0
        same_text = _same_text_groups(matrix)
        available = present.any(axis=1)  # a sentence without native phonemes adds nothing
        for i in rejected:  # a rejected text is rejected wherever it occurs
            available[same_text.get(i, i)] = False
        available &= ~_banned_rows(matrix, banned_words)
        if foreign == "drop":
            available &= np.fromiter((not m for m in matrix.foreign), bool, len(matrix))
        pool = cls(matrix, available, present, present[available].sum(axis=0), same_text)
        for i in accepted:
            pool.take(i)
        return pool

    def take(self, row: int) -> None:
        """Remove ``row`` and every row with the same text (a text is voiced once)."""
        for r in self.same_text.get(row, (row,)):
            if self.available[r]:
                self.available[r] = False
                self.per_phoneme -= self.present[r]


def select_sentences(
    matrix: PhonemeMatrix,
    target: int,
    *,
    accepted: Iterable[int] = (),
    rejected: Iterable[int] = (),
    banned_words: Iterable[str] = (),
    foreign: ForeignMode = "drop",
) -> list[int]:
    """Greedy phoneme-coverage selection.

    Each step weighs every phoneme with :func:`phoneme_weights` of the counts selected so
    far; the candidates are the available sentences that contain at least one phoneme of
    maximal weight (the least-selected phoneme among those the pool still has), scored by
    :func:`sentence_scores`; the best is taken (ties: the lowest index).

    Inputs:
        matrix: the pool.
        target: how many sentences the result should have, accepted ones included.
        accepted: row indices already accepted: they come first, in this order, count from
            the start, and are kept even when rejected-by-rule (banned, foreign).
        rejected: row indices never to select.
        banned_words: words (case-insensitive, whole words) whose sentences are skipped.
        foreign: "drop" skips sentences with a foreign marker; "ignore" keeps them and counts
            only their native phonemes.

    Output: row indices in selection order; fewer than ``target`` when the pool runs out
    (sentences without any native phoneme are never selected; a text is selected once).

    Raises:
        ValueError: negative target, an index outside the matrix, an index both accepted and
            rejected, an unknown ``foreign`` mode, or banned words for a matrix without texts.

    Cost: per step O(candidates x phonemes) for the scores (float32 matrix-vector product
    over the candidate rows only) plus O(phonemes) bookkeeping; candidates shrink quickly to
    the sentences holding the rarest phonemes.
    """
    if target < 0:
        raise ValueError(f"target must be >= 0, not {target}")
    accepted = _check_indices(matrix, accepted, "accepted")
    rejected = _check_indices(matrix, rejected, "rejected")
    pool = _Pool.build(matrix, accepted, rejected, banned_words, foreign)
    selected = list(accepted)
    counts = matrix.counts[accepted].sum(axis=0, dtype=np.int64)
    # Rows holding each phoneme, pruned of taken rows whenever they are read.
    rows_with = [np.flatnonzero(pool.present[:, p]) for p in range(len(matrix.phonemes))]
    scoring = matrix._scoring
    total = scoring.sum(axis=1)
    inverse_total = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    mark = np.zeros(len(matrix), dtype=bool)  # scratch for the union of several phonemes
    while len(selected) < target:
        live = pool.per_phoneme > 0
        if not live.any():
            break
        # Maximal weight = minimal count, among the phonemes the pool can still supply.
        rarest = np.flatnonzero(live & (counts == counts[live].min()))
        for p in rarest:
            rows_with[p] = rows_with[p][pool.available[rows_with[p]]]
        if len(rarest) == 1:
            candidates = rows_with[rarest[0]]  # sorted, all available
        else:
            for p in rarest:
                mark[rows_with[p]] = True
            candidates = np.flatnonzero(mark)
            mark[candidates] = False
        weights = phoneme_weights(counts).astype(np.float32)
        # einsum rather than @: numpy's own single-threaded SIMD loop. Multi-threaded BLAS
        # was 4x slower for these skinny products on shared cores, and its summation order
        # (so a near-tie) could depend on the machine's thread count.
        scores = np.einsum("ij,j->i", scoring[candidates], weights) * inverse_total[candidates]
        best = int(candidates[int(np.argmax(scores))])
        selected.append(best)
        counts += matrix.counts[best]
        pool.take(best)
    return selected


def random_selection(
    matrix: PhonemeMatrix,
    target: int,
    *,
    seed: int = 0,
    accepted: Iterable[int] = (),
    rejected: Iterable[int] = (),
    banned_words: Iterable[str] = (),
    foreign: ForeignMode = "drop",
) -> list[int]:
    """The baseline: accepted sentences, then a seeded uniform sample of the same pool that
    :func:`select_sentences` draws from. Inputs, output and errors as there."""
    if target < 0:
        raise ValueError(f"target must be >= 0, not {target}")
    accepted = _check_indices(matrix, accepted, "accepted")
    rejected = _check_indices(matrix, rejected, "rejected")
    pool = _Pool.build(matrix, accepted, rejected, banned_words, foreign)
    selected = list(accepted)
    rng = np.random.default_rng(seed)
    for row in rng.permutation(np.flatnonzero(pool.available)):
        if len(selected) >= target:
            break
        if pool.available[row]:  # not taken as another row with the same text
            selected.append(int(row))
            pool.take(int(row))
    return selected


def coverage(matrix: PhonemeMatrix, indices: Iterable[int]) -> dict[str, int]:
    """Per native phoneme (all of them, zeros included), its count in the given rows.

    Raises:
        ValueError: an index outside the matrix.
    """
    rows = [int(i) for i in indices]
    _check_indices(matrix, rows, "coverage")
    totals = matrix.counts[rows].sum(axis=0, dtype=np.int64)
    return {p: int(c) for p, c in zip(matrix.phonemes, totals, strict=True)}


def coverage_chart(
    selected_counts: Mapping[str, int],
    random_counts: Mapping[str, int],
    path: str | Path,
    *,
    title: str = "Phoneme coverage: selection vs random",
) -> Path:
    """Write a PNG bar chart of per-phoneme counts, selection beside random, rarest first.

    Inputs: two ``phoneme -> count`` maps (e.g. from :func:`coverage`) and the PNG path.
    Output: the path written. Raises OSError when the file cannot be written.
    """
    # The object API with the Agg canvas: no pyplot global state, safe in any process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    phonemes = sorted(
        set(selected_counts) | set(random_counts),
        key=lambda p: (selected_counts.get(p, 0), p),
    )
    x = np.arange(len(phonemes))
    figure = Figure(figsize=(max(8.0, 0.28 * len(phonemes) + 2), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.bar(x - 0.2, [selected_counts.get(p, 0) for p in phonemes], 0.4, label="selection")
    ax.bar(x + 0.2, [random_counts.get(p, 0) for p in phonemes], 0.4, label="random")
    ax.set_xticks(x, phonemes, fontsize=8)
    ax.set_yscale("symlog", linthresh=10)  # rare phonemes matter; common ones dwarf them
    ax.set_ylabel("occurrences")
    ax.set_title(title)
    ax.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


# --- A character's corpus -------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusSelection:
    """Rows chosen (in order), and per native phoneme its count in them, in a random choice
    of as many rows, and in the whole pool."""

    chosen: list[int]
    accepted: int  # accepted texts still in the pool: they come first
    accepted_gone: int  # accepted texts no longer in the pool: left out
    selected: dict[str, int]
    random: dict[str, int]
    pool: dict[str, int]

    def least_covered(self, n: int = 8) -> list[tuple[str, int]]:
        return sorted(self.selected.items(), key=lambda kv: kv[1])[:n]

    def table_order(self) -> list[tuple[str, int]]:
        """The least covered phonemes first, then the rest by phoneme."""
        least = self.least_covered()
        return least + [kv for kv in sorted(self.selected.items()) if kv not in least]


def select_corpus(
    matrix: PhonemeMatrix,
    target: int,
    *,
    accepted: Sequence[str] = (),
    rejected: Sequence[str] = (),
    banned_words: Iterable[str] = (),
    foreign: ForeignMode = "drop",
) -> CorpusSelection:
    """:func:`select_sentences` from the texts a person ``accepted``, never those ``rejected``
    (texts no longer in the pool are left out), beside a seeded :func:`random_selection`.
    Errors as there; the matrix needs its texts."""
    if matrix.texts is None:
        raise ValueError("selecting a corpus needs a matrix built with texts")
    in_pool = set(matrix.texts)
    kept = [t for t in accepted if t in in_pool]
    chosen = select_sentences(
        matrix,
        target,
        accepted=matrix.indices_of(kept),
        rejected=matrix.indices_of([t for t in rejected if t in in_pool]),
        banned_words=banned_words,
        foreign=foreign,
    )
    baseline = random_selection(matrix, len(chosen), banned_words=banned_words, foreign=foreign)
    return CorpusSelection(
        chosen,
        len(kept),
        len(accepted) - len(kept),
        selected=coverage(matrix, chosen),
        random=coverage(matrix, baseline),
        pool=coverage(matrix, range(len(matrix))),
    )
