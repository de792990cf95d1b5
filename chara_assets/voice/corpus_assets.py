"""Voice chain, part 1: the sentences a character's voice dataset will say.

sentence_pool (per language) -> pool_phonemes (per language) -> text_corpus -> corpus_review
(a person, external) -> reviewed_corpus (per character|language).
"""

import json
import os
import warnings
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from chara_resources.folder_asset import FolderManifest
from chara_resources.languages import get_language
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import CharaStorage

from ..characters.resource import CharacterCatalog
from ..metadata import md_image, md_table
from ..partitions import (
    character_language_partitions,
    language_partitions,
    parse_partition_key,
)
from . import checks
from .review import (
    ACCEPT,
    REVIEW_ASSET,
    read_review,
    review_folder,
    sentence_id,
    write_review_task,
)

with warnings.catch_warnings():  # a beta class in Dagster 1.13; we rely on its basic form only
    warnings.simplefilter("ignore", dg.BetaWarning)
    BY_LANGUAGE = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="language")


class SentencePool(FolderManifest):
    """Sentences of real text that passed every filter, one per line in ``sentences.txt``."""

    language: str
    sentences_file: str = "sentences.txt"
    count: int
    sources: list[str]
    rejections: dict[str, int]

    def sentences(self) -> list[str]:
        return self.path(self.sentences_file).read_text(encoding="utf-8").splitlines()


class PoolPhonemes(FolderManifest):
    """Per pool sentence, per word, its phonemes (``phonemes.jsonl``, aligned with the pool)."""

    language: str
    phonemes_file: str = "phonemes.jsonl"
    count: int

    def phonemes(self) -> list[list[list[str]]]:
        with open(self.path(self.phonemes_file), encoding="utf-8") as f:
            return [json.loads(line) for line in f]


class TextCorpus(FolderManifest):
    """Sentences selected for phoneme coverage; the accepted ones first."""

    character: str
    language: str
    sentences: list[str]
    target: int
    accepted_before: int
    coverage: dict[str, int]
    chart: str = "coverage.png"


class ReviewedCorpus(FolderManifest):
    """The sentences a person accepted: what the voice will say."""

    character: str
    language: str
    sentences: list[str]
    target: int
    auto_accepted: bool


class SentencePoolConfig(dg.Config):
    extra_files: list[str] = Field(
        default_factory=list, description="more plain-text corpus files for this language"
    )
    min_length: int = Field(default=80, ge=1, le=1000, description="shortest sentence kept")
    max_length: int = Field(default=100, ge=1, le=1000, description="longest sentence kept")
    max_capitals: int = Field(default=4, ge=0, description="capital letters a sentence may have")


def _corpus_folder_files(language: str) -> list[Path]:
    """User corpora: ``corpora/<language>/*.txt`` in the project (or $CHARA_CORPORA)."""
    root = Path(os.environ.get("CHARA_CORPORA", PROJECT_ROOT / "corpora"))
    return sorted((root / language).glob("*.txt")) if (root / language).is_dir() else []


@dg.asset(
    partitions_def=language_partitions,
    group_name="voice",
    kinds={"text"},
    description=(
        "Sentences of real text in the language that pass every filter: the language's "
        "letters only, 80-100 characters, few capitals, every word in the dictionary."
    ),
)
def sentence_pool(
    context: dg.AssetExecutionContext, config: SentencePoolConfig, storage: CharaStorage
) -> dg.MaterializeResult:
    from .corpus import default_corpus_files, load_corpus
    from .sentences import Dictionary, filter_sentences, split_sentences

    if config.min_length > config.max_length:
        raise dg.Failure(
            f"sentence_pool config: min_length ({config.min_length}) is greater than "
            f"max_length ({config.max_length}); no sentence could pass"
        )
    language = get_language(context.partition_key)
    extra = [Path(f) for f in config.extra_files] + _corpus_folder_files(language.code)
    sources = [str(p) for p in default_corpus_files(language.code)] + [str(p) for p in extra]
    texts = load_corpus(language.code, extra_files=extra)
    candidates = [s for text in texts for s in split_sentences(text, language.code)]
    result = filter_sentences(
        candidates,
        language.code,
        Dictionary(language.code),
        min_len=config.min_length,
        max_len=config.max_length,
        max_capitals=config.max_capitals,
    )
    if not result.kept:
        raise dg.Failure(
            f"no {language.name} sentence passed the filters ({len(candidates)} candidates "
            f"from {len(sources)} files); rejections: {dict(result.reasons)}"
        )
    folder = storage.staging(context)
    pool = SentencePool(
        language=language.code,
        count=len(result.kept),
        sources=sources,
        rejections=dict(result.reasons),
    ).bind(folder)
    pool.path(pool.sentences_file).write_text("\n".join(result.kept) + "\n", encoding="utf-8")
    return dg.MaterializeResult(
        value=pool,
        metadata={
            "sentences": len(result.kept),
            "candidates": len(candidates),
            "rejections": md_table(("reason", "sentences"), result.reasons.most_common()),
            "unknown_words": md_table(("word", "times"), result.unknown_words.most_common(20)),
            "examples": dg.MetadataValue.md("\n".join(f"- {s}" for s in result.kept[:10])),
            "sources": dg.MetadataValue.md("\n".join(f"- `{s}`" for s in sources)),
        },
    )


@dg.asset(
    partitions_def=language_partitions,
    group_name="voice",
    kinds={"text"},
    description="Phonemes of every pool sentence, from espeak-ng's library on this machine (the "
    "same on every BrainBox: foreign words come out marked as (xx) tokens).",
)
def pool_phonemes(
    context: dg.AssetExecutionContext,
    sentence_pool: SentencePool,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    # Phonemized here, not on BrainBox: libespeak-ng does a pool in about a second, and kaia's
    # EspeakPhonemizer container drops espeak's language-switch marks, which are how foreign
    # words are found (docs/kaia-5.2-servers.md).
    from chara_resources.embedded.phonemes import EspeakPhonemes, PhonemizerError

    language = get_language(sentence_pool.language)
    sentences = sentence_pool.sentences()
    try:
        phonemized = EspeakPhonemes().phonemize(sentences, language.espeak_voice)
    except PhonemizerError as exc:
        raise dg.Failure(f"phonemizing the {language.name} pool: {exc}") from None
    folder = storage.staging(context)
    result = PoolPhonemes(language=language.code, count=len(sentences)).bind(folder)
    foreign = 0
    with open(result.path(result.phonemes_file), "w", encoding="utf-8") as f:
        for phonemes in phonemized:
            foreign += any(p.startswith("(") for word in phonemes for p in word)
            f.write(json.dumps(phonemes, ensure_ascii=False) + "\n")
    context.log.info(f"{len(sentences)} sentences phonemized, {foreign} with foreign words")
    return dg.MaterializeResult(
        value=result,
        metadata={
            "sentences": len(sentences),
            "with_foreign_words": foreign,
            "espeak_voice": language.espeak_voice,
        },
    )


class TextCorpusConfig(dg.Config):
    target: int = Field(
        default=600,
        ge=1,
        description="sentences to select (about an hour of speech at ~6 s each)",
    )
    foreign: Literal["drop", "ignore"] = Field(
        default="drop", description="sentences with foreign words or non-native phonemes"
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"text"},
    ins={
        "sentence_pool": dg.AssetIn(partition_mapping=BY_LANGUAGE),
        "pool_phonemes": dg.AssetIn(partition_mapping=BY_LANGUAGE),
    },
    check_specs=[checks.coverage_spec("text_corpus")],
    description=(
        "Sentences chosen so that every native phoneme is covered (greedy, rarest phonemes "
        "first), seeded with the sentences a person already accepted; rejected sentences and "
        "the character's banned words are left out."
    ),
)
def text_corpus(
    context: dg.AssetExecutionContext,
    config: TextCorpusConfig,
    sentence_pool: SentencePool,
    pool_phonemes: PoolPhonemes,
    characters: CharacterCatalog,
    storage: CharaStorage,
):  # no return annotation: with check_specs Dagster would read it as the outputs
    from .selection import PhonemeMatrix, coverage_chart, select_corpus

    character, language = characters.for_partition(context)
    texts = sentence_pool.sentences()
    matrix = PhonemeMatrix.from_phonemes(pool_phonemes.phonemes(), language.code, texts)
    review = read_review(review_folder(storage.root_path, character.name, language.code))
    choice = select_corpus(
        matrix,
        config.target,
        accepted=review.accepted,
        rejected=review.rejected,
        banned_words=character.banned_words,
        foreign=config.foreign,
    )
    if choice.accepted_gone:
        context.log.warning(
            f"{choice.accepted_gone} accepted sentences are no longer in the "
            "pool; they stay accepted but are not part of this selection"
        )
    folder = storage.staging(context)
    corpus = TextCorpus(
        character=character.name,
        language=language.code,
        sentences=[texts[i] for i in choice.chosen],
        target=config.target,
        accepted_before=choice.accepted,
        coverage=choice.selected,
    ).bind(folder)
    coverage_chart(choice.selected, choice.random, corpus.path(corpus.chart))
    if len(choice.chosen) < config.target:
        context.log.warning(
            f"only {len(choice.chosen)} of {config.target} sentences could be selected: the "
            "pool is too small (add corpus files for the language)"
        )
    return dg.MaterializeResult(
        value=corpus,
        check_results=[checks.phoneme_coverage(choice.selected, choice.pool)],
        metadata={
            "sentences": len(choice.chosen),
            "target": config.target,
            "accepted_before": choice.accepted,
            "rejected_before": len(review.rejected),
            "least_covered": dg.MetadataValue.md(
                ", ".join(f"`{p}` {n}" for p, n in choice.least_covered())
            ),
            "min_count_selected_vs_random": dg.MetadataValue.text(
                f"{min(choice.selected.values(), default=0)} vs "
                f"{min(choice.random.values(), default=0)}"
            ),
            "coverage": md_table(
                ("phoneme", "selected / random"),
                [(f"`{p}`", f"{n} / {choice.random.get(p, 0)}") for p, n in choice.table_order()],
            ),
            "chart": md_image(corpus.path(corpus.chart), "phoneme counts"),
            "review": dg.MetadataValue.md(
                f"Review with `chara review {character.name} {language.code}`, then "
                "materialize `reviewed_corpus`."
            ),
        },
    )


corpus_review = dg.AssetSpec(
    REVIEW_ASSET,
    deps=[text_corpus],
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"human"},
    description=(
        "A person's YES/NO on the selected sentences, in the annotation service "
        "(`chara review CHARACTER LANGUAGE`); reported here when the person presses FINISH."
    ),
)


class ReviewedCorpusConfig(dg.Config):
    auto_accept: bool = Field(
        default=False,
        description=(
            "accept every selected sentence without a person (for demos); the decisions are "
            "written to the review log marked as automatic and reported in the metadata"
        ),
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="voice",
    kinds={"text"},
    deps=[corpus_review],
    description="The sentences a person accepted (all rounds): what the voice will say.",
)
def reviewed_corpus(
    context: dg.AssetExecutionContext,
    config: ReviewedCorpusConfig,
    text_corpus: TextCorpus,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    from ..annotation.log import AnnotationLog, default_log_path

    partition = parse_partition_key(context.partition_key)
    folder = review_folder(storage.root_path, partition.character, partition.language)
    if config.auto_accept:
        task = write_review_task(
            folder, partition.character, partition.language, text_corpus.sentences
        )
        log = AnnotationLog(default_log_path(task))
        decided = log.decisions()
        for sentence in text_corpus.sentences:
            if sentence_id(sentence) not in decided:
                log.append(sentence_id(sentence), ACCEPT, by="auto_accept")
        context.log.warning(
            "auto_accept is on: every selected sentence was accepted without a person"
        )
    review = read_review(folder)
    if not review.accepted:
        raise dg.Failure(
            f"no sentence of {partition.character}|{partition.language} has been accepted "
            f"yet: run `chara review {partition.character} {partition.language}`, answer, "
            "press FINISH, then materialize reviewed_corpus again"
        )
    shortfall = text_corpus.target - len(review.accepted)
    if shortfall > 0:
        context.log.warning(
            f"{len(review.accepted)} of {text_corpus.target} sentences accepted: materialize "
            "text_corpus again to select more, and review them"
        )
    result = ReviewedCorpus(
        character=partition.character,
        language=partition.language,
        sentences=review.accepted,
        target=text_corpus.target,
        auto_accepted=config.auto_accept,
    ).bind(storage.staging(context))
    return dg.MaterializeResult(
        value=result,
        metadata={
            "accepted": len(review.accepted),
            "rejected": len(review.rejected),
            "pending": len(review.pending),
            "target": text_corpus.target,
            "auto_accepted": config.auto_accept,
            "review_log": dg.MetadataValue.path(str(folder)),
        },
    )
