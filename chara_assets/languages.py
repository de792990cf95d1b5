"""The languages chara speaks. Adding one is adding an entry here (and its corpora later)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str  # partition key and ISO 639-1 code
    name: str
    espeak_voice: str  # espeak-ng voice name


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language(code="de", name="German", espeak_voice="de"),
        Language(code="en", name="English", espeak_voice="en-us"),
        Language(code="ru", name="Russian", espeak_voice="ru"),
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
