"""The languages chara speaks: everything chara knows about a language is in its entry here.

Both packages import this module (it imports neither dagster nor anything heavy); every
language-keyed table in the code is derived from :data:`LANGUAGES` (tests/test_languages.py
checks that, and that no other module spells a table by language code). Adding a language is
adding an entry (README: "Adding a language" says what each field needs).
"""

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

SOURCE_LANGUAGE = "en"
"""The language templates' option values, prompts and translation requests are written in."""


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
    """The alphabet's lower-case letters; their upper-case forms are derived. A pooled sentence
    holds only these letters, ``,.-`` and spaces. The first letter's Unicode script is the
    language's :attr:`script`."""
    native_phonemes: frozenset[str]
    """The phonemes espeak-ng emits for native words (what sentence selection covers); any
    other marks a foreign word. Build with :func:`symbols`; say in a comment how."""
    evaluation_text: str
    """The sentence every trained checkpoint says in the checkpoint report."""
    clone_prefix: str
    """Said before every line the cloner voices (cloners stutter at the edges); cut off."""
    clone_suffix: str
    """Said after every line the cloner voices; cut off."""
    piper_base_checkpoint: str
    """kaia's PiperTraining base checkpoint for the language (kaia cannot train from scratch)."""
    speech_engines: tuple[str, ...]
    """The embedded stand-in voice's engines, preferred first: ``piper``, ``espeak-ng``,
    ``festival`` (chara_resources/embedded/speech.py)."""
    recognisers: tuple[str, ...]
    """The embedded recogniser's engines when no Vosk model is configured, preferred first:
    ``whisper``, ``pocketsphinx`` (chara_resources/embedded/recognition.py; pocketsphinx's
    wheel ships a US-English model only)."""
    embedded_base_voice: str = ""
    """The packaged voice the embedded trainer warm-starts from ("" to train from scratch)."""
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
    min_script_share: float = 1.0
    """The share of a paraphrase's letters that must be in :attr:`script` (a Russian line may
    name a brand in Latin letters)."""
    common_words: frozenset[str] = frozenset()
    """Frequent short words: with the letters no other language has, they tell the embedded
    stand-in voice which language a text is in."""
    spelling_folds: Mapping[str, str] = field(default_factory=dict)
    """Letters recognisers and corpora spell in more than one way -> the one spelling compared."""
    case_words: Mapping[str, str] = field(default_factory=dict)
    """Words an LLM answer may name a grammatical case with (English, the language's own,
    stems) -> the case; empty: the language's words take no case and none is voted."""
    grammar: str = ""
    """The grammatron grammar that inflects the voted case (``de``, ``ru``; see
    chara_assets/paraphrase/grammar.py)."""
    article_words: Mapping[str, str] = field(default_factory=dict)
    """Words an answer may name an article kind with -> ``none``/``definite``/``indefinite``;
    empty: no article is voted."""
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


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language(
            code="de",
            name="German",
            espeak_voice="de",
            letters="abcdefghijklmnopqrstuvwxyzäöüß",
            # 47, from ~12,600 sentences of fortunes-de (voice de; see "en" for the method):
            # "ɜ" is espeak's vocalised r ("aber", "immer"), "??" its "ur" diphthong ("durch",
            # "kurz", "Ursache"), "ɔø" the "eu/äu" diphthong, "ɑ" the unstressed short a
            # ("Radio"), "i" the unstressed tense i ("Religion"); "r" and "ɾ" are both native r
            # allophones; "pf", "ts", "tʃ" (deutsch, tschüss) are native affricates. Excluded:
            # "dʒ", "ʒ" (only in loans: Job, Manager, Passagier), "w", "ɛɪ", "ɒ", "ɔː", "eə",
            # "əʊ", "ʌ", "ð", "eɪ", "θ", "ɹ", "ɜː" (English loans that espeak does not
            # bracket), the French nasals "ɑ̃", "ɔ̃", and digits.
            native_phonemes=symbols(
                "p b t d k ɡ f v s z ʃ ç x h j m n ŋ l r ɾ pf ts tʃ",
                "a ɑ ɑː ɛ ɛː eː ɪ i iː ɔ oː ʊ uː y yː œ øː ə ɜ",
                "aɪ aʊ ɔø ??",
            ),
            evaluation_text="Hallo! Ich bin deine neue Stimme. Wie gefällt dir, wie ich heute "
            "klinge?",
            clone_prefix="Der Beginn. ",
            clone_suffix=" Das Ende.",
            piper_base_checkpoint="thorsten",
            speech_engines=("espeak-ng",),
            recognisers=("whisper",),
            fortune_dirs=("/usr/share/games/fortunes/de",),
            corpus_package="fortunes-de",
            word_lists=("/usr/share/dict/ngerman", "/usr/share/dict/ogerman"),
            hunspell=("/usr/share/hunspell/de_DE_frami",),
            dictionary_packages=("wngerman", "wogerman", "hunspell-de-de-frami"),
            abbreviations="bzw ca dr evtl ggf hr nr prof st str vgl z.b d.h u.a z.t",
            common_words=symbols("der die das und ich nicht ist ein eine zu mit"),
            spelling_folds={"ß": "ss", "ẞ": "ss"},
            case_words={
                "nominativ": "nominative",
                "genitiv": "genitive",
                "dativ": "dative",
                "akkusativ": "accusative",
                "accusativ": "accusative",
            },
            grammar="de",
            article_words={
                "indefinite": "indefinite",
                "unbestimmt": "indefinite",
                "definite": "definite",
                "bestimmt": "definite",
                "no article": "none",
                "none": "none",
                "kein artikel": "none",
                "ohne artikel": "none",
            },
            article_question=" Then say which article it needs: definite (der, die, das), "
            "indefinite (ein, eine) or no article.",
            determiners=symbols(
                "der die das dem den des ein eine einen einem einer eines kein keine keinen",
                "keinem keiner mein meine dein deine ihr ihre sein seine unser unsere",
            ),
        ),
        Language(
            code="en",
            name="English",
            espeak_voice="en-us",
            letters="abcdefghijklmnopqrstuvwxyz",
            # Native phoneme inventories were derived by phonemizing the Debian fortune files
            # with espeak-ng 1.51, counting phonemes outside espeak's "(xx)" language-switch
            # spans, then curated by hand: a phoneme is native when espeak emits it for native
            # words. Symbols are exactly what the phonemizer emits, including espeak's own names
            # where it has no IPA ("??", 'u"', "ɪ^"). Everything else marks a foreign word.
            # en (en-us; ``fortunes``/``fortunes-min``, ~11,000 sentences of 60-120 characters),
            # 59: espeak's r-coloured vowels and diphthongs are single phonemes ("ɑːɹ", "ɔːɹ",
            # "oːɹ", "ɛɹ", "ɪɹ", "ʊɹ", "aɪɚ", "aɪə", "iə"), as are syllabic "əl" and "n̩"; "ʔ" is
            # the glottal stop of "button", "ɾ" the flap of "better", "ᵻ" the reduced vowel of
            # "before", "ɐ" the reduced "a"/"the"; "oː" (without ɹ) is what espeak gives
            # "more"/"story" at times. Excluded: "x" (Bach), "r" (trill), "o" (Tolkien), "ɑ̃"
            # (French nasal), and the artefacts "ææ", "ɐɐ", "əlh" of shouted or mangled words.
            native_phonemes=symbols(
                "p b t d k ɡ f v θ ð s z ʃ ʒ h tʃ dʒ m n ŋ l ɹ w j ɾ ʔ n̩ əl",  # consonants
                "ɪ ɛ æ ʌ ʊ ɔ ə ɐ ᵻ i iː uː ɑː ɔː ɜː ɚ oː",  # monophthongs
                "eɪ aɪ ɔɪ aʊ oʊ iə aɪə aɪɚ ɑːɹ ɔːɹ oːɹ ɛɹ ɪɹ ʊɹ",  # diphthongs, r-coloured units
            ),
            evaluation_text="Hello! I am your new voice. How do you like the way I sound today?",
            clone_prefix="The beginning. ",
            clone_suffix=" The end.",
            piper_base_checkpoint="lessac",
            # The packaged Piper voice; else espeak-ng.
            speech_engines=("piper", "espeak-ng"),
            # Whisper first for English too: on 90-character lines voiced by the stand-in voice,
            # Whisper base was 0-5 characters off where pocketsphinx was 2-19.
            recognisers=("whisper", "pocketsphinx"),
            embedded_base_voice="joe",
            fortune_dirs=("/usr/share/games/fortunes",),
            corpus_package="fortunes",
            word_lists=("/usr/share/dict/american-english",),
            hunspell=("/usr/share/hunspell/en_US",),
            dictionary_packages=("wamerican", "hunspell-en-us"),
            abbreviations="mr mrs ms dr st prof jr sr vs e.g i.e mt gen col lt sgt capt rev",
            common_words=symbols("the and i is you to a of it not with"),
        ),
        Language(
            code="ru",
            name="Russian",
            espeak_voice="ru",
            letters="абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
            # 53, from ~9,100 sentences of fortunes-ru (voice ru; see "en" for the method):
            # hard/soft consonant pairs ("t"/"tʲ", ..., "ɭ"/"ɭʲ" for л/ль), "ɕ" (щ), "ʑ" (soft
            # з), "tʃʲ" (ч) with its voiced allophone "dʒʲ" (врач бы), espeak's "ja"/"ju" units,
            # the vowels "ʌ", "ɪ", "ə" reduced, "ɵ" (ё after soft consonants), 'u"' (ю/у after
            # soft consonants: "любовь"), "ɪ^" (unstressed vowel after р: "теперь"), "ɔ"
            # (numerals: сорок). Excluded: English phonemes in unbracketed loans ("iː", "uː",
            # "l", "h", "w", "ɹ", "aɪ", "eɪ", "əʊ", "ɒ", "ɐ", "ð", "θ", "ŋ", "dʒ", "tʃ", ...) and
            # "ø" (3 hits, an artefact of reading decimal numbers).
            native_phonemes=symbols(
                "p pʲ b bʲ t tʲ d dʲ k kʲ ɡ ɡʲ f fʲ v vʲ s sʲ z ʑ ʃ ʒ ɕ x ts tʃʲ dʒʲ m mʲ n nʲ",
                "ɭ ɭʲ r rʲ j",
                'a ɑ ʌ e ɛ i ɪ ɪ^ o ɔ ɵ u u" y ə ja ju',
            ),
            evaluation_text="Привет! Я твой новый голос. Как тебе нравится, как я звучу сегодня?",
            clone_prefix="Я начинаю. ",
            clone_suffix=" Я закончил.",
            piper_base_checkpoint="denis",
            # festival's Russian voice is clearer than espeak-ng's.
            speech_engines=("festival", "espeak-ng"),
            recognisers=("whisper",),
            fortune_dirs=("/usr/share/games/fortunes/ru",),
            corpus_package="fortunes-ru",
            hunspell=("/usr/share/hunspell/ru_RU",),
            pymorphy="ru",
            dictionary_packages=("hunspell-ru",),
            abbreviations="т.е т.к г гг им ул см стр",
            min_script_share=0.8,
            spelling_folds={"ё": "е", "Ё": "е"},
            case_words={
                "nominative": "nominative",
                "именительн": "nominative",
                "genitive": "genitive",
                "родительн": "genitive",
                "dative": "dative",
                "дательн": "dative",
                "accusative": "accusative",
                "винительн": "accusative",
                "instrumental": "instrumental",
                "творительн": "instrumental",
                "prepositional": "prepositional",
                "предложн": "prepositional",
            },
            grammar="ru",
        ),
    )
}


def language_code(tag: str) -> str:
    """``"en-US"``, ``"en_us"``, ``" EN "`` -> ``"en"``: the bare code of a language tag (not
    checked against the registry)."""
    return re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]


class PerLanguage(Mapping[str, T], Generic[T]):
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
