"""Paraphrase chain (per character|language): what Avatar has, new paraphrases from the LLM, and
their upload in the format the live ParaphraseService loads.

avatar_paraphrase_stats -> paraphrase_sets -> avatar_paraphrases

The work is done by the engine (engine.py, no Dagster); these assets gather its inputs and
report what it returns.
"""

import pickle
from typing import Any

import dagster as dg
from pydantic import Field

from chara_resources.avatar import (
    PARAPHRASE_SERVICE,
    AvatarError,
    AvatarResource,
    AvatarStore,
    load_paraphrase_pickle,
    paraphrase_files,
    read_paraphrase_feedback,
    upload_paraphrase_file,
)
from chara_resources.brainbox import BrainBoxResource
from chara_resources.folder_asset import FolderManifest
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage

from ..characters.models import Character
from ..characters.resource import CharacterCatalog
from ..metadata import md_table
from ..partitions import character_language_partitions
from . import checks
from . import restore as R
from .engine import (
    AvatarRecord,
    GroupOutcome,
    ParaphraseLine,
    ParaphraseSettings,
    TooManyFailures,
    Voice,
    lines_to_upload,
    paraphrase_templates,
    served_records,
)
from .prompts import Persona
from .records import build_records, check_records
from .resource import TemplateFolder
from .templates import TemplateSpec


class AvatarParaphraseStats(FolderManifest):
    """The paraphrase records Avatar has for this character and language, with usage counts."""

    character: str
    language: str
    avatar: str
    files: list[str]
    records_total: int  # in every file, all characters and languages
    records: list[AvatarRecord]  # under the character's Avatar name: what Avatar serves
    avatar_name: str = ""  # (absent from manifests written before the field)
    # Records under the character's file name when it differs from the Avatar name (chara
    # wrote those before it had Avatar names): Avatar never serves them for the character.
    records_under_file_name: int = 0


class ParaphraseSets(FolderManifest):
    """New paraphrases per template group, and every group's outcome with its reason."""

    character: str
    language: str
    user: str | None
    llm: str
    paraphrases: list[ParaphraseLine]
    outcomes: list[GroupOutcome]
    rejected_examples: dict[str, list[str]] = Field(default_factory=dict)


class AvatarParaphrases(FolderManifest):
    """What was uploaded to Avatar (the file and record ids) and what was there already."""

    character: str
    language: str
    avatar: str
    uploaded_file: str = ""
    uploaded: list[str]
    already_there: int
    stale: list[str]


def _trusted_store(context: dg.AssetExecutionContext, avatar: AvatarResource) -> AvatarStore:
    if not avatar.is_trusted():
        raise dg.Failure(
            f"the Avatar server {avatar.url} is not configured as trusted: its paraphrase files "
            "are Python pickles, and reading one can run code the server chose. If you control "
            "that server, set CHARA_AVATAR_TRUSTED=1 (resource config avatar.trusted: true); "
            "see docs/paraphrasing.md"
        )
    return avatar.store(context)


def read_avatar_records(store: AvatarStore) -> tuple[list[str], list[Any]]:
    """The paraphrase files and every record in them; a file that is not a paraphrase list is
    an error naming it (nothing is uploaded after one)."""
    files = paraphrase_files(store)
    records: list[Any] = []
    for name in files:
        path = f"{PARAPHRASE_SERVICE}/{name}"
        source = f"{store.location}: resources/{path}"
        try:
            loaded = load_paraphrase_pickle(store.read_bytes("resources", path), source)
            records += check_records(loaded, source)
        except (AvatarError, ValueError) as exc:
            raise dg.Failure(str(exc)) from None
    return files, records


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="paraphrase",
    kinds={"avatar"},
    description="The paraphrase records Avatar has for the character and language, and how "
    "often each was said (Avatar's feedback file).",
)
def avatar_paraphrase_stats(
    context: dg.AssetExecutionContext,
    avatar: AvatarResource,
    characters: CharacterCatalog,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    character, language = characters.for_partition(context)
    store = _trusted_store(context, avatar)
    try:
        files, records = read_avatar_records(store)
        feedback = read_paraphrase_feedback(store)
    finally:
        store.close()
    avatar_name = character.avatar_name
    mine, unserved = served_records(
        records, feedback, avatar_name=avatar_name, file_name=character.name, language=language.code
    )
    stats = AvatarParaphraseStats(
        character=character.name,
        language=language.code,
        avatar=store.location,
        files=files,
        records_total=len(records),
        records=mine,
        avatar_name=avatar_name,
        records_under_file_name=unserved,
    ).bind(storage.staging(context))
    if unserved:
        context.log.warning(
            f"{unserved} paraphrase records on Avatar name the character {character.name!r}, "
            f"not its Avatar name {avatar_name!r}: Avatar never serves them for "
            f"{avatar_name!r}, and they are not counted (see docs/paraphrasing.md)"
        )
    per_template: dict[tuple[str, str], list[int]] = {}
    for r in mine:
        per_template.setdefault((r.original_template_name, r.used_variables_tag), []).append(r.seen)
    context.log.info(
        f"Avatar {store.location}: {len(files)} paraphrase files, {len(records)} records, "
        f"{len(mine)} for {avatar_name!r} in {language.code}"
    )
    return dg.MaterializeResult(
        value=stats,
        metadata={
            "avatar": store.location,
            "files": len(files),
            "avatar_name": avatar_name,
            "records": len(mine),
            "records_under_file_name": unserved,
            "records_all_characters": len(records),
            "usage": md_table(
                ["template", "variables", "paraphrases", "seen"],
                [[t, tag or "-", len(s), sum(s)] for (t, tag), s in sorted(per_template.items())],
            ),
        },
    )


class ParaphraseSetsConfig(dg.Config, ParaphraseSettings):
    """The engine's settings (engine.ParaphraseSettings), the user and the check's threshold."""

    user: str = Field(
        default="",
        description="a user file name: paraphrases for that user (their description and "
        "relationship go into the prompt). Empty: paraphrases for everyone; the prompt names "
        "the user when exactly one has a relationship with the character",
    )
    max_rejection: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="the rejection_rate check warns when more of the LLM's lines are rejected",
    )


def _persona(
    character: Character, characters: CharacterCatalog, user_name: str
) -> tuple[Persona, str | None]:
    users = characters.load().users
    if user_name:
        if user_name not in users:
            raise dg.Failure(
                f"user {user_name!r} has no valid file in {characters.users_path}; "
                f"users: {', '.join(sorted(users)) or 'none'}"
            )
        user, record_user = users[user_name], user_name
    else:
        related = [u for u in users.values() if character.name in u.relationships]
        user, record_user = (related[0] if len(related) == 1 else None), None
    persona = Persona(
        character=character.display_name,
        character_description=character.description,
        user=user.display_name if user else "",
        user_description=user.description if user else "",
        relationship=user.relationships.get(character.name, "") if user else "",
    )
    return persona, record_user


def _templates(
    context: dg.AssetExecutionContext, templates: TemplateFolder, names: list[str]
) -> list[TemplateSpec]:
    """The templates named (all when none are), broken files logged; a name not found fails."""
    library = templates.load()
    for error in library.errors:
        context.log.warning(f"skipping a broken template file: {error}")
    missing = [n for n in names if n not in library.templates]
    if missing:
        broken = sorted(library.broken_files)
        raise dg.Failure(
            f"no template {', '.join(map(repr, missing))} in {library.folder}"
            + (f" (broken files: {', '.join(broken)})" if broken else "")
        )
    return [library.templates[n] for n in (names or sorted(library.templates))]


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="paraphrase",
    kinds={"llm"},
    pool=brainbox_pool(),
    check_specs=[checks.rejection_spec("paraphrase_sets")],
    description="New paraphrases of the templates in the character's voice from the BrainBox "
    "llm role, restored strictly (every variable exactly once); for de/ru each variable's "
    "case by majority vote; every template group's outcome with its reason.",
)
def paraphrase_sets(
    context: dg.AssetExecutionContext,
    config: ParaphraseSetsConfig,
    avatar_paraphrase_stats: AvatarParaphraseStats,
    brainbox: BrainBoxResource,
    characters: CharacterCatalog,
    templates: TemplateFolder,
    storage: CharaStorage,
):  # no return annotation: with check_specs Dagster would read it as the outputs
    character, language = characters.for_partition(context)
    persona, record_user = _persona(character, characters, config.user)
    specs = _templates(context, templates, config.templates)
    voice = Voice(persona, character.avatar_name, language.code, record_user)
    try:
        made = paraphrase_templates(
            brainbox.models(context),
            storage.work(context),
            specs,
            avatar_paraphrase_stats.records,
            voice,
            config,
        )
    except TooManyFailures as exc:
        raise dg.Failure(str(exc)) from None
    sets = ParaphraseSets(
        character=character.name,
        language=language.code,
        user=record_user,
        llm=made.llm,
        paraphrases=made.lines,
        outcomes=made.outcomes,
        rejected_examples=made.examples,
    ).bind(storage.staging(context))
    outcomes = [
        [o.template, o.variables_tag or "-", o.outcome, o.reason, o.existing, o.seen, o.accepted]
        for o in made.outcomes
    ]
    rejections = [
        [reason, count, (made.examples.get(reason) or [""])[0]]
        for reason, count in made.reasons.most_common()
        if reason != R.ACCEPTED
    ]
    return dg.MaterializeResult(
        value=sets,
        check_results=[
            checks.rejection_rate(made.reasons, R.ACCEPTED, max_rejection=config.max_rejection)
        ],
        metadata={
            "llm": made.llm,
            "groups_paraphrased": made.groups_paraphrased,
            "groups_skipped": made.groups_skipped,
            "paraphrases": len(made.lines),
            "llm_jobs": made.llm_jobs,
            "templates": md_table(
                ["template", "variables", "outcome", "reason", "existing", "seen", "accepted"],
                outcomes,
            ),
            "accepted_examples": md_table(
                ["template", "paraphrase", "grammar"],
                [[p.template, p.text, _grammar_text(p.grammar) or "-"] for p in made.lines[:15]],
            ),
            "rejections": md_table(["reason", "count", "example"], rejections),
        },
    )


def _grammar_text(grammar: dict[str, dict[str, str | None]]) -> str:
    return "; ".join(
        f"{fragment}: " + ", ".join(f"{k}={v}" for k, v in rule.items() if v)
        for fragment, rule in sorted(grammar.items())
    )


@dg.asset(
    partitions_def=character_language_partitions,
    group_name="paraphrase",
    kinds={"avatar"},
    pool="avatar",
    description="The new paraphrases uploaded to Avatar as the next paraphrase-NNNN.pkl (a "
    "pickled list of kaia-avatar ParaphraseRecords); records already there are not uploaded "
    "again.",
)
def avatar_paraphrases(
    context: dg.AssetExecutionContext,
    paraphrase_sets: ParaphraseSets,
    avatar: AvatarResource,
    characters: CharacterCatalog,
    templates: TemplateFolder,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    library = templates.load()
    # Records carry the character's Avatar name as it is now, whatever it was when the lines
    # were made: the name is what Avatar matches, not part of the paraphrase.
    avatar_name = characters.for_partition(context)[0].avatar_name
    store = _trusted_store(context, avatar)
    try:
        present = {r.filename for r in read_avatar_records(store)[1]}
        new, stale = lines_to_upload(
            paraphrase_sets.paraphrases, library.templates, present, avatar_name
        )
        if stale:
            context.log.warning(
                f"{len(stale)} paraphrases belong to templates that changed or were removed "
                "since they were made; they are not uploaded (the template sensor asks for new "
                "ones)"
            )
        uploaded_file = ""
        if new:
            payload = pickle.dumps(build_records(library.templates, new.values()))
            # What the live service will load must load: check it the way chara reads it.
            check_records(load_paraphrase_pickle(payload, "the new paraphrase file"), "upload")
            uploaded_file = upload_paraphrase_file(store, payload)
            context.log.info(
                f"uploaded {len(new)} paraphrases for {avatar_name!r} to {store.location} as "
                f"resources/{uploaded_file}"
            )
        else:
            context.log.info("nothing new to upload")
    finally:
        store.close()
    result = AvatarParaphrases(
        character=paraphrase_sets.character,
        language=paraphrase_sets.language,
        avatar=store.location,
        uploaded_file=uploaded_file,
        uploaded=sorted(new),
        already_there=len(paraphrase_sets.paraphrases) - len(new) - len(stale),
        stale=stale,
    ).bind(storage.staging(context))
    return dg.MaterializeResult(
        value=result,
        metadata={
            "uploaded": len(new),
            "avatar_name": avatar_name,
            "file": uploaded_file or "-",
            "already_there": result.already_there,
            "stale": len(stale),
        },
    )
