"""The sentence pool: normalisation, splitting, each filter, the dictionaries (inflected German and
Russian forms known, foreign words not), fortune files, bad input, and real pools per language
from the Debian corpora (``pytest -s`` prints their counts)."""

from __future__ import annotations

import codecs
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from chara_assets.voice.corpus import (
    STR_ROTATED,
    CorpusError,
    default_corpus_files,
    iter_fortune_records,
    iter_paragraphs,
    load_corpus,
    read_corpus,
)
from chara_assets.voice.sentences import (
    REASONS,
    Dictionary,
    PoolResult,
    filter_sentences,
    normalise,
    split_sentences,
)
from chara_resources.languages import get_language

# --- normalisation and splitting ------------------------------------------------------------


def test_normalise_makes_typography_plain() -> None:
    text = "„Nein“ — sagte er… «Да» ‘it’s’ “quoted” a–b\u00a0c\u00adx\n\tnext -- line"
    assert normalise(text) == '"Nein" - sagte er... "Да" \'it\'s\' "quoted" a-b cx next - line'


def test_split_sentences() -> None:
    text = (
        'He said "Stop." Then Dr. Smith left. J. R. R. Tolkien wrote it! Why? Because.\n'
        "\t-- a dash first. Done"
    )
    assert split_sentences(text, "en") == [
        'He said "Stop."',
        "Then Dr. Smith left.",
        "J. R. R. Tolkien wrote it!",
        "Why?",
        "Because. - a dash first.",
        "Done",
    ]
    # A lower-case word after "!" continues the sentence (Russian dialogue); z.B. is no end.
    assert split_sentences("- Нет! - сказал он. - Да.", "ru") == ["Нет! - сказал он.", "Да."]
    assert split_sentences("Das ist z.B. Obst. Und Gemüse.", "de") == [
        "Das ist z.B. Obst.",
        "Und Gemüse.",
    ]


# --- the filters, one by one ----------------------------------------------------------------

TOY_WORDS = "a the cat sat on mat and dog ran far away from home every day"
WORDS = Dictionary.from_words(TOY_WORDS.split(), name="toy")


def _sentence(n_chars: int, first: str = "The") -> str:
    """A toy sentence of exactly n_chars characters."""
    words = [first]
    while len(" ".join(words)) < n_chars - 6:
        words.append("cat")
    text = " ".join(words)
    return (text + " " + "a" * (n_chars - len(text) - 2) + ".")[:n_chars]


def test_length_bounds_are_inclusive() -> None:
    sentences = [_sentence(n) for n in (79, 80, 100, 101)]
    words = Dictionary.from_words([*TOY_WORDS.split(), *("a" * n for n in range(1, 21))])
    result = filter_sentences(sentences, "en", words)
    assert [len(s) for s in result.kept] == [80, 100]
    assert result.reasons == {"length": 2}


def test_each_filter_rejects_for_its_reason() -> None:
    base = "The cat sat on the mat and the dog ran far away from home every day and the cat sat."
    assert 80 <= len(base) <= 100
    cases = {
        "characters": [
            base.replace("mat", "mat?"),
            base.replace(" and", "'s and"),
            base.replace("day", "day 2"),
            base.replace("cat", "cät", 1),
        ],
        "length": ["The cat sat on the mat."],
        "capitals": [base.replace("the cat", "The Cat").replace("the dog", "The Dog")],
        "inner_capital": [base.replace("home", "hoMe")],
        "unknown_word": [base.replace("dog", "hund")],
    }
    for reason, sentences in cases.items():
        result = filter_sentences(sentences, "en", WORDS)
        assert result.reasons == {reason: len(sentences)}, (reason, result.reasons)
        assert result.kept == []
    pool = filter_sentences([base, base.replace("The cat", "The Cat"), base], "en", WORDS)
    assert pool.kept == [base, base.replace("The cat", "The Cat")]
    assert pool.reasons == {"duplicate": 1}
    assert set(pool.reasons) <= set(REASONS)


def test_filters_run_in_order_and_count_unknown_words() -> None:
    # Bad characters and too short: counted once, as the first filter that fails.
    result = filter_sentences(
        ["Cat?", "The hund sat on the mat and the katze ran far away."], "en", WORDS
    )
    assert result.reasons == {"characters": 1, "length": 1}
    base = "The hund sat on the mat and the katze ran far away from home every day, hund and cat."
    result = filter_sentences([base], "en", WORDS)
    assert result.reasons == {"unknown_word": 1}
    assert result.unknown_words == {"hund": 2, "katze": 1}


@pytest.mark.slow
def test_typographic_quotes_and_dashes_are_normalised_before_filtering() -> None:
    sentence = "Вчера вечером мы с друзьями долго гуляли — по заснеженным улицам старого города."
    result = filter_sentences([sentence], "ru", Dictionary("ru"))
    assert result.kept == [sentence.replace("—", "-")]
    quoted = filter_sentences(["«" + sentence[:-1] + "»."], "ru", Dictionary("ru"))
    assert quoted.reasons == {"characters": 1}  # plain quotes are not allowed either


# --- real dictionaries: inflection and foreign words ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "sentence", "naive_misses"),
    [
        (
            "de",
            "Wer die Niedertracht der anderen beklagt, sollte über die eigene Urteilsfähigkeit "
            "nachdenken.",
            {"Niedertracht", "Urteilsfähigkeit"},
        ),
        (
            "ru",
            "Вчера вечером мы с друзьями долго гуляли по заснеженным улицам старого города и пели "
            "песни.",
            {"вечером", "друзьями", "гуляли", "заснеженным", "улицам", "старого", "города"},
        ),
        (
            "en",
            "The children were playing in the gardens while their parents walked slowly along "
            "the river.",
            set(),
        ),
    ],
)
def test_inflected_forms_are_known(language: str, sentence: str, naive_misses: set[str]) -> None:
    assert 80 <= len(sentence) <= 100
    result = filter_sentences([sentence], language, Dictionary(language))
    assert result.kept == [sentence], result.unknown_words
    naive = filter_sentences([sentence], language, Dictionary(language, morphology=False))
    assert naive_misses <= set(naive.unknown_words)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "sentence", "foreign"),
    [
        (
            "de",
            "Die Kinder spielten gestern lange im Garten, aber das Wetter war however sehr schön.",
            "however",
        ),
        (
            "ru",
            "Вчера вечером мы с друзьями долго гуляли по улицам старого города и ждали уикенд.",
            "уикенд",
        ),
        (
            "en",
            "The children were playing in the gardens yesterday while their parents drank kaffee.",
            "kaffee",
        ),
    ],
)
def test_foreign_word_is_rejected(language: str, sentence: str, foreign: str) -> None:
    assert 80 <= len(sentence) <= 100
    result = filter_sentences([sentence], language, Dictionary(language))
    assert result.reasons == {"unknown_word": 1}
    assert result.unknown_words == {foreign: 1}


@pytest.mark.slow
def test_dictionary_case_and_hyphens() -> None:
    de, en, ru = (Dictionary(code) for code in ("de", "en", "ru"))
    assert "Der" in de and "der" in de and "Haus" in de
    assert "haus" not in de  # a German noun in lower case is misspelt
    assert "Fußballtrainerinnen" in de and "E-Mail" in de
    assert "The" in en and "London" in en and "london" not in en
    assert "по-немецки" in ru and "красивейшими" in ru and "шёл" in ru
    assert "хелпом" not in ru
    toy = Dictionary.from_words(["cat", "dog"])
    assert "cat-dog" in toy and "Cat" in toy and "cat-cow" not in toy and "CAT" not in toy


@pytest.mark.slow
def test_inner_capital_in_a_real_sentence() -> None:
    sentence = "The old manager of the McDonald store said that nothing ever changes in this town."
    assert 80 <= len(sentence) <= 100
    result = filter_sentences([sentence], "en", Dictionary("en"))
    assert result.reasons == {"inner_capital": 1}


# --- fortune files and user files -----------------------------------------------------------


def _fortune(path: Path, records: list[str], *, rotated: bool = False) -> Path:
    text = "\n%\n".join(records) + "\n%\n"
    path.write_text(codecs.encode(text, "rot13") if rotated else text, encoding="utf-8")
    flags = STR_ROTATED if rotated else 0
    Path(f"{path}.dat").write_bytes(struct.pack(">5I", 2, len(records), 99, 1, flags) + b"%\0\0\0")
    return path


def test_fortune_records_attribution_and_offensive_files(tmp_path: Path) -> None:
    jokes = _fortune(
        tmp_path / "jokes",
        ["First line of the joke,\nsecond line.\n\t\t-- Somebody Famous\n\t\t(in a book)", "Two."],
    )
    rude = _fortune(tmp_path / "rude", ["Rude words here."], rotated=True)
    (tmp_path / "off").mkdir()
    _fortune(tmp_path / "off" / "worse", ["Worse."])
    (tmp_path / "jokes.u8").symlink_to("jokes")

    assert list(iter_fortune_records(jokes)) == ["First line of the joke,\nsecond line.", "Two."]
    assert list(iter_fortune_records(rude)) == []
    assert list(iter_fortune_records(rude, offensive=True)) == ["Rude words here."]
    assert list(iter_fortune_records(tmp_path / "off" / "worse")) == []

    lang = replace(get_language("en"), fortune_dirs=(str(tmp_path),))
    assert default_corpus_files(lang) == [jokes]

    (tmp_path / "mine").mkdir()
    mine = tmp_path / "mine" / "mine.txt"
    mine.write_text("My first paragraph\nspans two lines.\n\n\nMy second one.\n", encoding="utf-8")
    assert list(iter_paragraphs(mine)) == ["My first paragraph\nspans two lines.", "My second one."]
    assert load_corpus(lang, [mine]) == [
        "First line of the joke,\nsecond line.",
        "Two.",
        "My first paragraph\nspans two lines.",
        "My second one.",
    ]


def test_user_file_in_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "koi8.txt"
    path.write_bytes("abc Привет, мир.".encode("koi8-r"))
    with pytest.raises(CorpusError, match=r"koi8\.txt: not valid utf-8 at byte offset 4"):
        read_corpus(path)
    with pytest.raises(CorpusError, match=r"koi8\.txt"):
        load_corpus("ru", [path])
    assert read_corpus(path, "koi8-r") == "abc Привет, мир."
    assert load_corpus("ru", [path], encoding="koi8-r", include_default=False) == [
        "abc Привет, мир."
    ]


# --- bad input ------------------------------------------------------------------------------


def test_empty_corpus_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"empty\.txt: empty corpus file"):
        load_corpus("en", [empty])
    only_separators = tmp_path / "separators"
    only_separators.write_text("%\n%\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"separators: empty corpus file"):
        list(iter_fortune_records(only_separators))
    with pytest.raises(CorpusError, match=r"missing\.txt: no such corpus file"):
        read_corpus(tmp_path / "missing.txt")


def test_language_without_corpus(tmp_path: Path) -> None:
    lang = replace(get_language("de"), fortune_dirs=(str(tmp_path / "nowhere"),))
    with pytest.raises(CorpusError, match=r"no corpus for German \(de\).*fortunes-de"):
        load_corpus(lang)
    assert load_corpus(lang, [_fortune(tmp_path / "eigene", ["Ein Satz."])]) == ["Ein Satz."]


def test_unknown_language() -> None:
    for call in (
        lambda: load_corpus("xx"),
        lambda: default_corpus_files("xx"),
        lambda: Dictionary("xx"),
        lambda: split_sentences("Text.", "xx"),
        lambda: filter_sentences(["Text."], "xx", WORDS),
    ):
        with pytest.raises(
            CorpusError, match=r"unknown language 'xx'; known languages: de, en, ru"
        ):
            call()
    assert issubclass(CorpusError, ValueError)


def test_missing_dictionary_names_file_and_package(tmp_path: Path) -> None:
    lang = replace(get_language("de"), word_lists=(str(tmp_path / "ngerman"),))
    with pytest.raises(CorpusError, match=r"ngerman: dictionary file for German.*wngerman"):
        Dictionary(lang)
    lang = replace(get_language("ru"), hunspell=(str(tmp_path / "ru_RU"),))
    with pytest.raises(CorpusError, match=r"ru_RU\.aff: dictionary file.*hunspell-ru"):
        Dictionary(lang)


# --- real pools from the Debian corpora -----------------------------------------------------

# Per language: (at least this many sentences in, kept between these, at most this share of the
# sentences that reach the dictionary rejected by it). Measured: en 1162 kept, de 1666, ru 1773.
POOL_EXPECTATIONS = {
    "en": (20_000, (900, 2_500), 0.12),
    "de": (20_000, (1_200, 3_000), 0.15),
    "ru": (20_000, (1_300, 3_000), 0.05),
}


def _pool(language: str) -> PoolResult:
    """The language's pool from its Debian corpus, as ``sentence_pool`` makes it."""
    texts = load_corpus(language)
    sentences = [s for text in texts for s in split_sentences(text, language)]
    return filter_sentences(sentences, language, Dictionary(language))


@pytest.mark.slow
@pytest.mark.parametrize("language", sorted(POOL_EXPECTATIONS))
def test_pool_from_debian_corpus(language: str) -> None:
    lang = get_language(language)
    files = default_corpus_files(language)
    assert files, f"no fortune files: install the Debian package {lang.corpus_package}"
    assert not any(p.name.endswith((".dat", ".u8")) or p.parent.name == "off" for p in files)
    if language == "en":  # the German and Russian folders below it are not English
        assert {p.parent for p in files} == {Path(lang.fortune_dirs[0])}

    result = _pool(language)
    print(f"\n{result.summary()}\n  {len(files)} files (build time: bench/sentence_pool.py)")

    min_in, (min_kept, max_kept), max_unknown_share = POOL_EXPECTATIONS[language]
    assert result.total >= min_in
    assert min_kept <= len(result.kept) <= max_kept
    assert result.total == len(result.kept) + sum(result.reasons.values())
    assert set(result.reasons) <= set(REASONS)
    assert all(result.reasons[r] > 0 for r in ("characters", "length", "capitals"))
    checked = result.reasons["unknown_word"] + len(result.kept)
    assert result.reasons["unknown_word"] / checked <= max_unknown_share

    letters = set(lang.letters) | {c.upper() for c in lang.letters if len(c.upper()) == 1}
    assert len(set(result.kept)) == len(result.kept)
    for sentence in result.kept:
        assert 80 <= len(sentence) <= 100
        assert set(sentence) <= letters | set(",.- ")
        assert sum(c.isupper() for c in sentence) <= 4
        assert normalise(sentence) == sentence


@pytest.mark.slow
@pytest.mark.parametrize(("language", "min_share"), [("de", 0.05), ("ru", 0.9)])
def test_naive_word_list_rejects_good_inflected_sentences(language: str, min_share: float) -> None:
    """The reason for the morphological dictionary: listed forms alone reject much of the pool."""
    pool = _pool(language).kept
    naive = filter_sentences(pool, language, Dictionary(language, morphology=False))
    share = naive.reasons["unknown_word"] / len(pool)
    print(f"\n{language}: the naive word list rejects {share:.0%} of the pool")
    assert share >= min_share
