"""Characters and users, as read from YAML files (pydantic models, no Dagster)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from chara_resources.languages import get_language
from chara_resources.paths import check_slug


def _slug(value: str) -> str:
    return check_slug(value, "name")


def _language(value: str) -> str:
    return get_language(value).code


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only spaces")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
LanguageCode = Annotated[str, AfterValidator(_language)]
# Text a person wrote: a value of only spaces is as empty as no value (and says nothing).
NonBlank = Annotated[str, AfterValidator(_not_blank)]


def check_avatar_name(value: str, source: str = "") -> str:
    """A name as the assistant's settings spell it, for records on Avatar.

    kaia-avatar matches it exactly (``Kiki`` is not ``kiki``), so it may not be blank, start or
    end with a space, or hold a line break or other control character. Errors: ``ValueError``
    naming ``source`` (where the name came from) when given.
    """
    what = f"{source} " if source else ""
    if not value.strip():
        raise ValueError(f"{what}is blank; Avatar needs the name the assistant's settings use")
    if value != value.strip():
        raise ValueError(
            f"{what}{value!r} starts or ends with a space; Avatar matches the name exactly"
        )
    if not value.isprintable():
        raise ValueError(f"{what}{value!r} holds a line break or another control character")
    return value


class VoiceClip(BaseModel):
    """One recording of the character's voice and what is said in it."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="audio file, relative to the character's YAML file")
    text: NonBlank = Field(description="exact transcription of the recording")
    language: LanguageCode | None = Field(
        default=None, description="language spoken; default: the character's first language"
    )


class Character(BaseModel):
    """A character of the assistant: the partition key ``name`` and what defines it."""

    model_config = ConfigDict(extra="forbid")

    name: Slug = Field(description="partition key and folder name; must equal the file name")
    display_name: NonBlank
    avatar_name: str | None = Field(
        default=None,
        description="the character's name in the assistant's settings, exactly as spelled "
        "there (Avatar's ParaphraseService matches it exactly); default: display_name. Every "
        "record chara writes to Avatar carries it",
    )
    gender: Literal["female", "male", "neutral"]
    description: NonBlank = Field(description="personality, for paraphrasing")
    languages: list[LanguageCode] = Field(min_length=1)
    voice_sample: list[VoiceClip] = Field(min_length=1)
    banned_words: list[NonBlank] = Field(
        default_factory=list,
        description="words never to appear in the character's voice dataset (any case)",
    )

    @field_validator("languages")
    @classmethod
    def _unique_languages(cls, value: list[str]) -> list[str]:
        duplicates = sorted({code for code in value if value.count(code) > 1})
        if duplicates:
            raise ValueError(f"languages listed twice: {', '.join(duplicates)}")
        return value

    @field_validator("avatar_name")
    @classmethod
    def _given_avatar_name(cls, value: str | None) -> str | None:
        return value if value is None else check_avatar_name(value)

    @model_validator(mode="after")
    def _default_avatar_name(self) -> Character:
        if self.avatar_name is None:  # after validation it is always set
            self.avatar_name = check_avatar_name(
                self.display_name, "display_name, the default avatar_name,"
            )
        return self

    def clips_for(self, language: str) -> tuple[list[VoiceClip], bool]:
        """The sample clips to use for ``language`` and whether they are in that language.

        Clips in the language itself are preferred; otherwise all clips are used (zero-shot
        cloners clone across languages), which the caller reports.
        """
        own = [c for c in self.voice_sample if (c.language or self.languages[0]) == language]
        return (own, True) if own else (list(self.voice_sample), False)


class User(BaseModel):
    """A person who uses the assistant, and how each character relates to them."""

    model_config = ConfigDict(extra="forbid")

    name: Slug
    display_name: NonBlank
    description: str = Field(default="", description="who the user is, for paraphrasing")
    relationships: dict[str, NonBlank] = Field(
        default_factory=dict,
        description="character name -> how the character and the user relate",
    )
