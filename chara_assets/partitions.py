"""Partitions: ``character`` (dynamic, one per character file) x ``language`` (static), and
``modality`` (voice, face) for the identification chain."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from chara_resources.languages import LANGUAGES

from .identification.media import MODALITIES

CHARACTER_DIMENSION = "character"
LANGUAGE_DIMENSION = "language"

character_partitions = dg.DynamicPartitionsDefinition(name=CHARACTER_DIMENSION)
language_partitions = dg.StaticPartitionsDefinition(sorted(LANGUAGES))
character_language_partitions = dg.MultiPartitionsDefinition(
    {CHARACTER_DIMENSION: character_partitions, LANGUAGE_DIMENSION: language_partitions}
)


@dataclass(frozen=True)
class CharacterLanguage:
    character: str
    language: str

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey(
            {CHARACTER_DIMENSION: self.character, LANGUAGE_DIMENSION: self.language}
        )


def parse_partition_key(key: str) -> CharacterLanguage:
    """Parse ``alice|en`` (or a MultiPartitionKey) with the partitions definition."""
    parsed = character_language_partitions.get_partition_key_from_str(str(key))
    dims = parsed.keys_by_dimension
    return CharacterLanguage(dims[CHARACTER_DIMENSION], dims[LANGUAGE_DIMENSION])


# Identification is about the assistant's users, not a character: one partition per modality.
modality_partitions = dg.StaticPartitionsDefinition(sorted(MODALITIES))
