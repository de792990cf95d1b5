"""The sentence pool: sentences from real text, per language, fit to be voiced. Pure logic, no
Dagster.

A sentence is kept when it passes, in order (each rejection counted under its reason):

1. typographic normalisation (curly quotes, apostrophes, dashes, ellipses, odd spaces: plain);
2. ``characters``: only the language's letters, ``,.-`` and spaces (so ``'``, ``?``, ``!``,
   quotes and digits reject it);
3. ``length``: ``min_len`` to ``max_len`` characters;
4. ``capitals``: at most ``max_capitals`` capital letters;
5. ``inner_capital``: no capital letter right after a letter (``McDonald``, ``iPhone``);
6. ``duplicate``: not the same as a sentence already kept;
7. ``unknown_word``: every word is in the language's dictionary, the main guard against
   foreign words. The dictionary is the word lists plus Hunspell's affix and compound rules
   (and pymorphy3 for Russian), so inflected forms and compounds are known too: a plain list
   rejects most correct German and Russian sentences.

(``duplicate`` is checked before the dictionary: a sentence equal to a kept one would pass it.)
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path

from chara_resources.languages import Language

from .corpus import CorpusError, resolve_language

REASONS = ("characters", "length", "capitals", "inner_capital", "duplicate", "unknown_word")
"""Rejection reasons, in the order the filters run."""

_TYPOGRAPHY = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′`´ʼ", "'"),
        **dict.fromkeys("“”„‟«»″", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        "…": "...",
        **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", ""),
    }
)
_SPACES = re.compile(r"\s+")
_DOUBLE_DASH = re.compile(r" ?-{2,3} ?")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# A candidate sentence end: terminal punctuation, closing quotes/brackets, then a space.
_END = re.compile(r"[.!?]+[\"')\]]*(?= )")
_OPENERS = " -\"'(["


def normalise(text: str) -> str:
    """Text with typographic characters made plain (curly quotes and apostrophes, guillemets,
    dashes and ``--``, ellipsis), invisible characters dropped and every run of whitespace
    (line breaks, tabs, no-break spaces) one space; NFC."""
    text = unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY)
    text = _DOUBLE_DASH.sub(" - ", _SPACES.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def _alphabet(language: Language) -> frozenset[str]:
    upper = (c.upper() for c in language.letters)
    return frozenset(language.letters) | {c for c in upper if len(c) == 1}


def split_sentences(text: str, language: str | Language) -> list[str]:
    """The sentences of (normalised) text. A sentence ends at ``.``, ``!`` or ``?`` (possibly
    repeated, possibly followed by closing quotes) when the next letter is a capital or a digit
    follows, and the dot does not end a known abbreviation or an initial (``J.``). A leading
    dialogue dash is dropped."""
    lang = resolve_language(language)
    abbreviations = frozenset(lang.abbreviations.split())
    text = normalise(text)
    sentences: list[str] = []
    start = 0
    for match in _END.finditer(text):
        rest = text[match.end() :].lstrip(_OPENERS)
        if not rest or not (rest[0].isupper() or rest[0].isdigit()):
            continue
        if match.group().startswith(".") and len(match.group()) == 1:
            word = text[start : match.start()].rsplit(" ", 1)[-1]
            if word.lower() in abbreviations or (len(word) == 1 and word.isupper()):
                continue
        sentences.append(text[start : match.end()])
        start = match.end()
    sentences.append(text[start:])
    cleaned = (re.sub(r"^-+ ", "", s.strip()).strip() for s in sentences)
    return [s for s in cleaned if s]


class Dictionary:
    """The words of a language, built from its sources (see ``__init__``), or of a given list
    (``from_words``). ``contains`` is cached per word, the cache shared by every Dictionary of
    the same language, whose sources are read once per process.

    A word list knows a word as listed, or capitalised at a sentence start (``The`` for
    ``the``); a morphological lookup applies its own case rules. A hyphenated word is known
    when it is known whole or each of its parts is."""

    def __init__(self, language: str | Language, *, morphology: bool = True) -> None:
        """The language's dictionary. With ``morphology``: its word lists, its Hunspell
        dictionaries with their affix and compound rules (via spylls) and its pymorphy3
        dictionary. Without (the naive one): only listed word forms, the word lists plus the
        Hunspell headwords. CorpusError for an unknown language, or naming the file and the
        Debian package when a source is missing."""
        self._use(_language_sources(resolve_language(language), morphology))

    @classmethod
    def from_words(
        cls,
        words: Iterable[str],
        lookups: Iterable[Callable[[str], bool]] = (),
        *,
        name: str = "custom",
    ) -> Dictionary:
        """A dictionary of these words (and these lookups, each ``word -> known``)."""
        dictionary = cls.__new__(cls)
        dictionary._use(_Sources(name, frozenset(words), tuple(lookups)))
        return dictionary

    def _use(self, sources: _Sources) -> None:
        self.name = sources.name
        self.load_seconds = sources.load_seconds
        """How long reading its sources took (once per process)."""
        self._words = sources.words
        self._lookups = sources.lookups
        self._cache = sources.cache

    def contains(self, word: str) -> bool:
        known = self._cache.get(word)
        if known is None:
            known = self._lookup(word) or (
                "-" in word and all(self._lookup(part) for part in word.split("-") if part)
            )
            self._cache[word] = known
        return known

    __contains__ = contains

    def _lookup(self, word: str) -> bool:
        if word in self._words:
            return True
        if word[:1].isupper() and word[1:].islower() and word.lower() in self._words:
            return True
        return any(lookup(word) for lookup in self._lookups)

    def __repr__(self) -> str:
        return (
            f"Dictionary({self.name!r}, {len(self._words)} listed words, "
            f"{len(self._lookups)} morphological lookups)"
        )


def _missing(path: Path, lang: Language) -> CorpusError:
    packages = " and ".join(lang.dictionary_packages) or "its dictionary packages"
    return CorpusError(
        f"{path}: dictionary file for {lang.name} ({lang.code}) not found; install the Debian "
        f"packages {packages}"
    )


def _read_text(path: Path, lang: Language, encoding: str = "utf-8") -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _missing(path, lang) from None
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        where = f" at byte offset {e.start}" if isinstance(e, UnicodeDecodeError) else ""
        raise CorpusError(f"{path}: not valid {encoding}{where}") from None


def read_word_list(path: str | Path, lang: Language) -> list[str]:
    """The words of a plain word list (one a line, UTF-8)."""
    lines = _read_text(Path(path), lang).splitlines()
    return [w for w in (line.strip() for line in lines) if w]


def hunspell_encoding(stem: str, lang: Language) -> str:
    """The encoding a Hunspell dictionary declares in its ``.aff`` (``SET``), Hunspell's
    default ISO 8859-1 when none: ``de_DE_frami`` is ISO 8859-1, ``en_US`` and ``ru_RU`` UTF-8."""
    for line in _read_text(Path(stem + ".aff"), lang, "latin-1").splitlines():
        if line.startswith("SET "):
            return line.split()[1]
    return "iso8859-1"


def read_hunspell_headwords(stem: str, lang: Language) -> list[str]:
    """The headwords of a Hunspell ``.dic`` (its first line is the count), as listed: without
    their affix flags and without the forms the rules make of them."""
    text = _read_text(Path(stem + ".dic"), lang, hunspell_encoding(stem, lang))
    words = (line.split("/", 1)[0].split("\t", 1)[0].strip() for line in text.splitlines()[1:])
    return [w for w in words if w and not w.startswith("#")]


@dataclass(frozen=True)
class _Sources:
    name: str
    words: frozenset[str]
    lookups: tuple[Callable[[str], bool], ...] = ()
    load_seconds: float = 0.0
    cache: dict[str, bool] = field(default_factory=dict)


@cache
def _language_sources(lang: Language, morphology: bool) -> _Sources:
    start = time.perf_counter()
    name, words, lookups = _read_sources(lang, morphology)
    return _Sources(name, frozenset(words), tuple(lookups), time.perf_counter() - start)


def _read_sources(
    lang: Language, morphology: bool
) -> tuple[str, list[str], list[Callable[[str], bool]]]:
    words: list[str] = []
    for source in lang.word_lists:
        words.extend(read_word_list(source, lang))
    lookups: list[Callable[[str], bool]] = []
    if not morphology:
        for stem in lang.hunspell:
            words.extend(read_hunspell_headwords(stem, lang))
        return f"{lang.code} naive", words, lookups
    if lang.hunspell:
        from spylls.hunspell import Dictionary as Hunspell

        for stem in lang.hunspell:
            for suffix in (".aff", ".dic"):
                if not Path(stem + suffix).is_file():
                    raise _missing(Path(stem + suffix), lang)
            lookups.append(Hunspell.from_files(stem).lookup)
    if lang.pymorphy:
        import pymorphy3

        lookups.append(pymorphy3.MorphAnalyzer(lang=lang.pymorphy).word_is_known)
    return f"{lang.code} morphological", words, lookups


@dataclass
class PoolResult:
    """What filter_sentences made of its input."""

    language: str
    kept: list[str] = field(default_factory=list)
    """The kept sentences, normalised, in input order, each once."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Rejected sentences per reason (see REASONS)."""
    unknown_words: Counter[str] = field(default_factory=Counter)
    """Words the dictionary did not know, over the sentences it rejected: what it misses."""
    total: int = 0
    """Sentences in."""

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {self.reasons[r]}" for r in REASONS if self.reasons[r])
        common = ", ".join(f"{w} {n}" for w, n in self.unknown_words.most_common(10))
        return (
            f"{self.language}: {self.total} sentences in, {len(self.kept)} kept; rejected: "
            f"{reasons or 'none'}; most frequent unknown words: {common or 'none'}"
        )


def filter_sentences(
    sentences: Iterable[str],
    language: str | Language,
    dictionary: Dictionary,
    *,
    min_len: int = 80,
    max_len: int = 100,
    max_capitals: int = 4,
) -> PoolResult:
    """The sentences that pass every filter (see the module's docstring), normalised, in
    order and deduplicated, with the count of rejections per reason."""
    lang = resolve_language(language)
    allowed = _alphabet(lang) | set(",.- ")
    result = PoolResult(language=lang.code)
    seen: set[str] = set()
    for raw in sentences:
        result.total += 1
        sentence = normalise(raw)
        reason = None
        if not set(sentence) <= allowed:
            reason = "characters"
        elif not min_len <= len(sentence) <= max_len:
            reason = "length"
        elif sum(c.isupper() for c in sentence) > max_capitals:
            reason = "capitals"
        elif any(c.isupper() and p.isalpha() for p, c in pairwise(sentence)):
            reason = "inner_capital"
        elif sentence in seen:
            reason = "duplicate"
        else:
            unknown = [w for w in _WORD.findall(sentence) if not dictionary.contains(w)]
            if unknown:
                reason = "unknown_word"
                result.unknown_words.update(unknown)
        if reason:
            result.reasons[reason] += 1
        else:
            seen.add(sentence)
            result.kept.append(sentence)
    return result
