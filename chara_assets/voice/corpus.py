"""Source text for the sentence pool: Debian's fortune files per language, plus the user's own
plain-text files. Pure functions, no Dagster.

Fortune files hold records separated by lines that are a lone ``%``; a record usually ends with
an attribution line (``-- Author``), which is not part of the text and is dropped. Files that
``fortune -o`` reads (in an ``off/`` folder, or flagged as ROT13-rotated in the ``.dat`` index
that ``strfile`` writes) are offensive ones: skipped unless asked for, and decoded when asked.

Debian (bookworm) ships every file of ``fortunes``, ``fortunes-de`` and ``fortunes-ru`` as UTF-8;
files are decoded strictly in one declared encoding (never guessed), so a KOI8-R or Latin-1 file
read as UTF-8 fails with the byte offset instead of turning into mojibake.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from chara_resources.languages import Language, get_language

STR_ROTATED = 0x4
"""strfile's flag in a ``.dat`` header: the records are ROT13-encoded (offensive fortunes)."""

_RECORD_SEPARATOR = re.compile(r"^%[ \t]*\r?$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t\r]*\n")
# An attribution: "-- Name" (any indent) or an indented em/en dash before a name.
_ATTRIBUTION = re.compile(r"^(?:\s*--+\s*\S|\s+[—–]\s*\S)")
_NOT_CORPUS_SUFFIXES = (".dat", ".u8", ".pos")


class CorpusError(ValueError):
    """A corpus file or a language's corpus that cannot be used; the message names which."""


def resolve_language(language: str | Language) -> Language:
    """The Language for a code (or the Language itself); an unknown code is a CorpusError."""
    if isinstance(language, Language):
        return language
    try:
        return get_language(language)
    except ValueError as e:
        raise CorpusError(str(e)) from None


def read_corpus(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole text of a corpus file, decoded strictly in ``encoding`` (a leading BOM
    dropped). CorpusError for a missing, unreadable, undecodable or empty file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such corpus file") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read the corpus file: {e.strerror or e}") from None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"{path}: unknown encoding {encoding!r}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path}: not valid {encoding} at byte offset {e.start} "
            f"(bytes {data[e.start : e.start + 4]!r}: {e.reason}); "
            "give the file's real encoding, e.g. 'latin-1' or 'koi8-r'"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise CorpusError(f"{path}: empty corpus file")
    return text


def fortune_flags(path: str | Path) -> int:
    """The flags of the fortune file's ``.dat`` index (0 when it has none or it is short)."""
    dat = Path(f"{path}.dat")
    try:
        with dat.open("rb") as f:
            header = f.read(20)
    except OSError:
        return 0
    if len(header) < 20:
        return 0
    _version, _count, _longest, _shortest, flags = struct.unpack(">5I", header)
    return flags


def is_offensive(path: str | Path) -> bool:
    """Whether ``fortune`` treats this file as offensive (``-o``): in an ``off/`` folder, or
    ROT13-rotated according to its ``.dat`` index."""
    path = Path(path)
    return path.parent.name == "off" or bool(fortune_flags(path) & STR_ROTATED)


def _strip_attribution(record: str) -> str:
    lines = record.splitlines()
    for i, line in enumerate(lines):
        if i > 0 and _ATTRIBUTION.match(line):
            lines = lines[:i]
            break
    return "\n".join(lines).strip()


def split_records(text: str) -> list[str]:
    """The ``%``-separated records of fortune text, each without its attribution lines and
    without empty ones. Plain text (no ``%`` lines) is one record."""
    records = (_strip_attribution(r) for r in _RECORD_SEPARATOR.split(text))
    return [r for r in records if r]


def iter_fortune_records(
    path: str | Path, encoding: str = "utf-8", *, offensive: bool = False
) -> Iterator[str]:
    """The records of one fortune file (see split_records). An offensive file yields nothing
    unless ``offensive``; then its ROT13 text is decoded when its index says it is rotated."""
    path = Path(path)
    if is_offensive(path) and not offensive:
        return
    text = read_corpus(path, encoding)
    if fortune_flags(path) & STR_ROTATED:
        text = codecs.decode(text, "rot13")
    records = split_records(text)
    if not records:
        raise CorpusError(f"{path}: empty corpus file (no text between its '%' lines)")
    yield from records


def iter_paragraphs(path: str | Path, encoding: str = "utf-8") -> Iterator[str]:
    """The paragraphs of a user's plain-text corpus file: blocks between blank lines (and
    between ``%`` lines, so a fortune file works too)."""
    for record in split_records(read_corpus(path, encoding)):
        for paragraph in _BLANK_LINES.split(record):
            if paragraph.strip():
                yield paragraph.strip()


def default_corpus_files(language: str | Language) -> list[Path]:
    """The language's Debian fortune files (not the offensive ones, nor ``.dat``/``.u8``
    companions), sorted; empty when the package is not installed."""
    lang = resolve_language(language)
    files: dict[Path, Path] = {}
    for folder in map(Path, lang.fortune_dirs):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.endswith(_NOT_CORPUS_SUFFIXES) or path.name.startswith("."):
                continue
            if not path.is_file() or is_offensive(path):
                continue
            files.setdefault(path.resolve(), path)
    return list(files.values())


def load_corpus(
    language: str | Language,
    extra_files: Iterable[str | Path] = (),
    *,
    encoding: str = "utf-8",
    include_default: bool = True,
) -> list[str]:
    """The language's text as records/paragraphs: its default fortune files (in the
    language's ``corpus_encoding``), then the user's ``extra_files`` (plain text in
    ``encoding``). CorpusError when a file is bad or the language has no corpus at all."""
    lang = resolve_language(language)
    extra = [Path(p) for p in extra_files]
    defaults = default_corpus_files(lang) if include_default else []
    if not defaults and not extra:
        where = ", ".join(lang.fortune_dirs) or "(no default corpus folder)"
        hint = f" (install the Debian package {lang.corpus_package})" if lang.corpus_package else ""
        raise CorpusError(
            f"no corpus for {lang.name} ({lang.code}): no fortune files in {where}{hint}"
            " and no extra corpus files given"
        )
    texts: list[str] = []
    for path in defaults:
        texts.extend(iter_fortune_records(path, lang.corpus_encoding))
    for path in extra:
        texts.extend(iter_paragraphs(path, encoding))
    return texts
