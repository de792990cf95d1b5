"""The languages chara speaks: everything chara knows about a language is in its entry, a
``language_data/<code>.toml`` file read into a :class:`Language` here.

Both packages import this module (it imports neither dagster nor anything heavy); every
language-keyed table in the code is derived from :data:`LANGUAGES` (tests/test_languages.py
checks that, and that no other module spells a table by language code). Adding a language is
adding a file (README: "Adding a language" says what each field needs).
"""

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_origin

T = TypeVar("T")

SOURCE_LANGUAGE = "en"
"""The language templates' option values, prompts and translation requests are written in."""
DATA = Path(__file__).resolve().parent / "language_data"


def symbols(*groups: str) -> frozenset[str]:
    """Space-separated symbols (phonemes, some with quotes or carets; words) as a set."""
    return frozenset(symbol for group in groups for symbol in group.split())


@dataclass(frozen=True)
class Language:
    code: str
    """Partition key and ISO 639-1 code (also Whisper's, num2words' and Vosk's model name)."""
    name: str
    """English name, for people and prompts."""
    espeak_voice: str
    """espeak-ng voice name (phonemes, the stand-in voice, Piper training)."""
    letters: str
    """The alphabet's lower-case letters (upper-case forms derived): a pooled sentence holds only
    these, ``,.-`` and spaces. The first one's Unicode script is :attr:`script`."""
    native_phonemes: frozenset[str]
    """What espeak-ng emits for native words (sentence selection covers them; any other phoneme
    marks a foreign word); in TOML strings of space-separated symbols."""
    evaluation_text: str
    """The sentence every trained checkpoint says in the checkpoint report."""
    clone_prefix: str
    """Said before every line the cloner voices (cloners stutter at the edges); cut off."""
    clone_suffix: str
    """Said after every line the cloner voices; cut off."""
    piper_base_checkpoint: str
    """kaia's PiperTraining base checkpoint for the language (kaia cannot train from scratch)."""
    speech_engines: tuple[str, ...]
    """The embedded stand-in voice's engines, preferred first (embedded/speech.py)."""
    recognisers: tuple[str, ...]
    """The embedded recogniser's engines without a Vosk model, preferred first
    (embedded/recognition.py; pocketsphinx's wheel ships a US-English model only)."""
    embedded_base_voice: str = ""
    """The packaged voice the embedded trainer warm-starts from ("" to train from scratch)."""
    fortune_dirs: tuple[str, ...] = ()
    """Folders whose fortune files (``%``-separated, not recursive) are the default corpus."""
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
    min_script_share: float = 1.0
    """The share of a paraphrase's letters that must be in :attr:`script`."""
    common_words: frozenset[str] = frozenset()
    """Frequent short words: with its own letters, they tell which language a text is in."""
    spelling_folds: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Letters recognisers and corpora spell in more than one way -> the one spelling compared."""
    case_words: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Words an LLM answer may name a case with -> the case; empty: no case is voted."""
    grammar: str = ""
    """The grammatron grammar that inflects the voted case (paraphrase/grammar.py)."""
    article_words: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Words an answer may name an article with -> none/definite/indefinite; empty: no vote."""
    article_question: str = ""
    """Appended to the case question for a word that may take an article."""
    determiners: frozenset[str] = frozenset()
    """Words before a placeholder that already decide its article (no article vote then)."""

    @property
    def script(self) -> str:
        """The Unicode script of the letters, as in their Unicode names: ``LATIN``, ``CYRILLIC``."""
        return letter_script(self.letters[0])


def letter_script(letter: str) -> str:
    """``"я"`` -> ``"CYRILLIC"``: the first word of the letter's Unicode name."""
    return unicodedata.name(letter, "UNKNOWN").split()[0]


def load_language(path: Path) -> Language:
    """The entry in a ``language_data/<code>.toml`` file; ValueError naming the file and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a readable TOML file ({exc})") from None
    kinds = {f.name: f.type for f in fields(Language) if f.name != "code"}
    values: dict[str, Any] = {"code": path.stem}
    for key, value in data.items():
        if key not in kinds:
            raise ValueError(f"{path}: unknown field {key!r}; fields: {', '.join(kinds)}")
        kind = get_origin(kinds[key]) or kinds[key]
        strings = [value] if kind is frozenset and isinstance(value, str) else value
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            values[key] = float(value)
        elif kind is str and isinstance(value, str):
            values[key] = value
        elif kind in (tuple, frozenset) and isinstance(strings, list):
            if not all(isinstance(v, str) for v in strings):
                raise ValueError(f"{path}: {key} must hold strings only, not {value!r}")
            values[key] = tuple(strings) if kind is tuple else symbols(*strings)
        elif kind is Mapping and isinstance(value, dict):
            if not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"{path}: {key} must map to strings only, not {value!r}")
            values[key] = value
        else:
            raise ValueError(f"{path}: {key} must be {kinds[key]}, not {value!r}")
    try:
        return Language(**values)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"{path}: {str(exc).split('__init__() ', 1)[-1]}") from None


LANGUAGES: dict[str, Language] = {
    lang.code: lang for lang in map(load_language, sorted(DATA.glob("*.toml")))
}
"""Every language, by code: one ``language_data/<code>.toml`` each."""


def language_code(tag: str) -> str:
    """``"en-US"``, ``"en_us"``, ``" EN "`` -> ``"en"``: the bare code of a language tag (not
    checked against the registry)."""
    return re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]


class PerLanguage(Mapping[str, T]):
    """A read-only table ``code -> pick(language)``, read from :data:`LANGUAGES` at every
    lookup, so a language added there is in every table. Languages whose value is empty (``""``,
    ``()``, ``{}``, ``False``) are not in the table."""

    def __init__(self, pick: Callable[[Language], T]) -> None:
        self._pick = pick

    def __getitem__(self, code: str) -> T:
        value = self._pick(LANGUAGES[code])
        if not value:
            raise KeyError(code)
        return value

    def __iter__(self) -> Iterator[str]:
        return (code for code, lang in LANGUAGES.items() if self._pick(lang))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"PerLanguage({dict(self)!r})"


def guess_language(text: str) -> str:
    """The registered language ``text`` is most likely in (for the embedded stand-in voice): each
    of its letters that no other language has counts 2 (Cyrillic, umlauts), each of its
    common words 1; a tie goes to the language with fewer letters of its own (English)."""
    text = text.lower()
    words = re.findall(r"[^\W\d_]+", text)

    def score(lang: Language) -> tuple[int, int]:
        others = {c for other in LANGUAGES.values() if other is not lang for c in other.letters}
        own = set(lang.letters) - others
        hits = sum(w in lang.common_words for w in words) + 2 * sum(c in own for c in text)
        return hits, -len(own)

    return max(LANGUAGES.values(), key=score).code


def get_language(code: str) -> Language:
    """The language with this code, or a ValueError that lists the known codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ValueError(
            f"unknown language {code!r}; known languages: {', '.join(sorted(LANGUAGES))}"
        ) from None
