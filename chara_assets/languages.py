"""The languages chara speaks. Adding one is adding an entry here: its alphabet, where its
default corpus and dictionaries live (Debian packages), and the abbreviations that do not end a
sentence."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    """Partition key and ISO 639-1 code."""
    name: str
    """English name, for people."""
    espeak_voice: str
    """espeak-ng voice name."""
    letters: str = ""
    """The alphabet's lower-case letters; their upper-case forms are derived. A pooled sentence
    holds only these letters, ``,.-`` and spaces."""
    fortune_dirs: tuple[str, ...] = ()
    """Folders whose fortune files (``%``-separated records, not recursive) are the default
    corpus."""
    corpus_package: str = ""
    """The Debian package that installs ``fortune_dirs``, named in errors."""
    corpus_encoding: str = "utf-8"
    """Encoding of the default corpus files (Debian ships them all as UTF-8)."""
    word_lists: tuple[str, ...] = ()
    """Plain word lists, one word form a line, UTF-8."""
    hunspell: tuple[str, ...] = ()
    """Hunspell dictionaries (path without ``.aff``/``.dic``): their affix and compound rules
    give the inflected forms and compounds that word lists lack. Without the rules, their
    headwords join the word lists in the naive dictionary."""
    pymorphy: str = ""
    """pymorphy3 language code ("" for none): its dictionary knows every inflected form; a word
    either it or the Hunspell dictionaries know is known."""
    dictionary_packages: tuple[str, ...] = ()
    """The Debian packages that install ``word_lists`` and ``hunspell``, named in errors."""
    abbreviations: str = ""
    """Abbreviations, space-separated, lower case, without their final dot: a dot after one
    ends no sentence."""
    clone_prefix: str = ""
    """Said before every line the cloner voices (cloners stutter at the edges); cut off."""
    clone_suffix: str = ""
    """Said after every line the cloner voices; cut off."""


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language(
            code="de",
            name="German",
            espeak_voice="de",
            letters="abcdefghijklmnopqrstuvwxyzäöüß",
            fortune_dirs=("/usr/share/games/fortunes/de",),
            corpus_package="fortunes-de",
            word_lists=("/usr/share/dict/ngerman", "/usr/share/dict/ogerman"),
            hunspell=("/usr/share/hunspell/de_DE_frami",),
            dictionary_packages=("wngerman", "wogerman", "hunspell-de-de-frami"),
            abbreviations="bzw ca dr evtl ggf hr nr prof st str vgl z.b d.h u.a z.t",
            clone_prefix="Der Beginn. ",
            clone_suffix=" Das Ende.",
        ),
        Language(
            code="en",
            name="English",
            espeak_voice="en-us",
            letters="abcdefghijklmnopqrstuvwxyz",
            fortune_dirs=("/usr/share/games/fortunes",),
            corpus_package="fortunes",
            word_lists=("/usr/share/dict/american-english",),
            hunspell=("/usr/share/hunspell/en_US",),
            dictionary_packages=("wamerican", "hunspell-en-us"),
            abbreviations="mr mrs ms dr st prof jr sr vs e.g i.e mt gen col lt sgt capt rev",
            clone_prefix="The beginning. ",
            clone_suffix=" The end.",
        ),
        Language(
            code="ru",
            name="Russian",
            espeak_voice="ru",
            letters="абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
            fortune_dirs=("/usr/share/games/fortunes/ru",),
            corpus_package="fortunes-ru",
            hunspell=("/usr/share/hunspell/ru_RU",),
            pymorphy="ru",
            dictionary_packages=("hunspell-ru",),
            abbreviations="т.е т.к г гг им ул см стр",
            clone_prefix="Я начинаю. ",
            clone_suffix=" Я закончил.",
        ),
    )
}


def get_language(code: str) -> Language:
    """The language with this code, or a ValueError that lists the known codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ValueError(
            f"unknown language {code!r}; known languages: {', '.join(sorted(LANGUAGES))}"
        ) from None
