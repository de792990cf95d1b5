"""Paraphrase chain (per character|language): what Avatar has, new paraphrases from the LLM, and
their upload in the format the live ParaphraseService loads.

avatar_paraphrase_stats -> paraphrase_sets -> avatar_paraphrases
"""

import dataclasses
import pickle
from collections import Counter
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field

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
from chara_resources.brainbox_jobs import Job
from chara_resources.folder_asset import FolderManifest
from chara_resources.languages import get_language
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage

from ..characters.models import Character
from ..characters.resource import CharacterCatalog
from ..partitions import character_language_partitions
from . import checks
from . import restore as R
from .grammar import (
    majority,
    parse_article,
    parse_case,
    parse_translation,
    slots_needing_case,
    translation_prompt,
)
from .prompts import Persona, case_prompt, paraphrase_prompt, system_prompt
from .records import Paraphrase, build_records, check_records
from .resource import TemplateFolder
from .restore import Candidate, candidate_text, restore_answer
from .selection import batches, choose_groups, usage_by_group
from .templates import Group, Slot, missing_words


class AvatarRecord(BaseModel):
    """One paraphrase record on Avatar (what chara needs of it) and how often it was said."""

    filename: str  # the record id
    original_template_name: str
    used_variables_tag: str
    language: str
    character: str | None
    user: str | None
    seen: int = 0


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


class ParaphraseLine(BaseModel):
    template: str
    variables_tag: str
    language: str
    character: str
    user: str | None
    text: str
    grammar: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    template_fingerprint: str = ""
    words: dict[str, dict[str, str]] = Field(default_factory=dict)  # translated option words
    record_id: str = ""

    def paraphrase(self) -> Paraphrase:
        data = self.model_dump(exclude={"record_id"})
        return Paraphrase(**data)


class GroupOutcome(BaseModel):
    """What became of one template group: accepted, rejected (with the main reason), skipped."""

    template: str
    variables_tag: str
    outcome: str  # accepted / rejected / skipped / not_in_language
    reason: str
    existing: int = 0
    seen: int = 0
    accepted: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)


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


def _md_table(header: list[str], rows: list[list[Any]]) -> dg.MetadataValue:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


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
    mine = []
    unserved = 0
    for record in records:
        if record.language != language.code:
            continue
        if record.character != avatar_name:
            unserved += record.character == character.name
            continue
        seen = (feedback.get(record.filename) or {}).get("seen", 0)
        mine.append(
            AvatarRecord(
                filename=record.filename,
                original_template_name=record.original_template_name,
                used_variables_tag=record.used_variables_tag,
                language=record.language,
                character=record.character,
                user=record.user,
                seen=seen if isinstance(seen, int) and seen > 0 else 0,
            )
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
            "usage": _md_table(
                ["template", "variables", "paraphrases", "seen"],
                [[t, tag or "-", len(s), sum(s)] for (t, tag), s in sorted(per_template.items())],
            ),
        },
    )


class ParaphraseSetsConfig(dg.Config):
    templates: list[str] = Field(
        default_factory=list,
        description="only these templates (the template sensor names the changed ones); they "
        "are paraphrased however many paraphrases they have. Empty: every template",
    )
    paraphrases_upper_count: int = Field(
        default=0,
        ge=0,
        description="take only template groups with at most this many paraphrases on Avatar "
        "(0: only new ones)",
    )
    paraphrases_per_answer: int = Field(
        default=5,
        ge=1,
        le=100,
        description="paraphrases asked for per group; also the number wanted",
    )
    max_attempts: int = Field(default=3, ge=1, description="questions per group at most")
    batch_size: int = Field(default=20, ge=1, description="template groups per BrainBox batch")
    translate_options: bool = Field(
        default=True,
        description="ask the LLM for option words a template lacks in the language (majority "
        "of case_votes answers); otherwise the option's value is said",
    )
    case_votes: int = Field(
        default=3,
        ge=1,
        description="de/ru: answers asked per variable for its case (majority wins)",
    )
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
    max_failure_ratio: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="the asset fails if more LLM jobs than this share fail",
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


def paraphrase_job(group: Group, persona: Persona, wanted: int, attempt: int) -> Job:
    """The LLM job asking for paraphrases of one group (its inputs key the work cache)."""
    prompt = paraphrase_prompt(group, persona, wanted, seed=attempt)
    system = system_prompt(persona)
    return Job(
        arguments={"prompt": prompt, "system_prompt": system},
        inputs={"prompt": prompt, "system": system, "attempt": attempt},
        label=group.template.name,
    )


def question_job(prompt: str, vote: int, label: str) -> Job:
    """One of several identical questions (case, translation) whose answers are voted on."""
    return Job(arguments={"prompt": prompt}, inputs={"prompt": prompt, "vote": vote}, label=label)


def _has_determiner(text: str, slot: Slot, language: str) -> bool:
    before = text.split(slot.fragment, 1)[0].split()
    determiners = get_language(language).determiners
    return bool(before) and before[-1].casefold().strip(",.;:") in determiners


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
    code = language.code
    persona, record_user = _persona(character, characters, config.user)
    library = templates.load()
    for error in library.errors:
        context.log.warning(f"skipping a broken template file: {error}")
    missing = [n for n in config.templates if n not in library.templates]
    if missing:
        broken = sorted(library.broken_files)
        raise dg.Failure(
            f"no template {', '.join(map(repr, missing))} in {library.folder}"
            + (f" (broken files: {', '.join(broken)})" if broken else "")
        )
    specs = [library.templates[n] for n in (config.templates or sorted(library.templates))]
    outcomes: list[GroupOutcome] = [
        GroupOutcome(
            template=s.name,
            variables_tag="",
            outcome="not_in_language",
            reason=f"no lines in {code}",
        )
        for s in specs
        if code not in s.lines
    ]
    groups = [g for s in specs for g in s.groups(code)]
    usage = usage_by_group(
        avatar_paraphrase_stats.records,
        {r.filename: {"seen": r.seen} for r in avatar_paraphrase_stats.records},
        character=character.avatar_name,
        language=code,
        user=record_user,
    )
    chosen, skipped = choose_groups(
        groups, usage, upper_count=config.paraphrases_upper_count, explicit=config.templates
    )
    for group, why in skipped:
        found = usage[(group.template.name, group.tag)]
        outcomes.append(
            GroupOutcome(
                template=group.template.name,
                variables_tag=group.tag,
                outcome="skipped",
                reason=why,
                existing=found.existing,
                seen=found.seen,
            )
        )
    context.log.info(
        f"{len(chosen)} template groups to paraphrase for {character.name}|{code}, "
        f"{len(skipped)} skipped (more than {config.paraphrases_upper_count} paraphrases)"
    )

    call = brainbox.call("llm", "question")
    llm = f"{call.decider}:{call.parameter or ''}"
    work = storage.work(context)
    answers = work.step("answers", {"llm": llm})
    system = system_prompt(persona)
    accepted: dict[str, list[Candidate]] = {g.key: [] for g in chosen}
    reasons: dict[str, Counter] = {g.key: Counter() for g in chosen}
    examples: dict[str, list[str]] = {}
    jobs_total = jobs_failed = 0
    wanted = config.paraphrases_per_answer
    for attempt in range(config.max_attempts):
        pending = [g for g in chosen if len(accepted[g.key]) < wanted]
        if not pending:
            break
        for batch in batches(pending, config.batch_size):
            jobs = []
            prompts_by_key: dict[str, str] = {}
            for group in batch:
                job = paraphrase_job(group, persona, wanted, attempt)
                prompts_by_key[group.key] = job.arguments["prompt"] + "\n" + system
                jobs.append(job)
            outcome = brainbox.run(context, answers, "llm", "question", jobs)
            for group, record in zip(batch, outcome.records(), strict=True):
                jobs_total += 1
                if not record.ok:
                    jobs_failed += 1
                    reasons[group.key][R.LLM_ERROR] += 1
                    examples.setdefault(R.LLM_ERROR, []).append(str(record.error)[:200])
                    continue
                known = [line.text for line in group.lines]
                known += [candidate_text(c) for c in accepted[group.key]]
                restored = restore_answer(
                    str(record.result or ""),
                    group.lines,
                    known=known,
                    prompt=prompts_by_key[group.key],
                    speaker=persona.character,
                    language=code,
                )
                reasons[group.key].update(restored.reasons())
                if restored.answer_reason:
                    examples.setdefault(restored.answer_reason, []).append(str(record.result)[:200])
                for candidate in restored.candidates:
                    if candidate.ok:
                        accepted[group.key].append(candidate)
                    else:
                        examples.setdefault(candidate.reason, []).append(candidate.text[:200])
        done = sum(min(wanted, len(accepted[g.key])) for g in chosen)
        context.log.info(
            f"attempt {attempt + 1}/{config.max_attempts}: {done} of {wanted * len(chosen)} "
            "paraphrases accepted"
        )
    if jobs_total and (
        jobs_failed == jobs_total or jobs_failed / jobs_total > config.max_failure_ratio
    ):
        raise dg.Failure(
            f"{jobs_failed} of {jobs_total} LLM jobs failed; first errors: "
            + " | ".join(examples.get(R.LLM_ERROR, [])[:3])
        )

    grammar = _vote_cases(context, brainbox, work, llm, chosen, accepted, code, config)
    words = (
        _translate_options(context, brainbox, work, llm, chosen, accepted, code, config)
        if config.translate_options
        else {}
    )
    paraphrases: list[ParaphraseLine] = []
    for group in chosen:
        kept = accepted[group.key][:wanted]
        for candidate in kept:
            text = candidate_text(candidate)
            line = ParaphraseLine(
                template=group.template.name,
                variables_tag=group.tag,
                language=code,
                character=character.avatar_name,
                user=record_user,
                text=text,
                grammar=grammar.get((group.key, text), {}),
                template_fingerprint=group.template.fingerprint,
                words={
                    name: found
                    for name in group.variable_names
                    if (found := words.get((group.template.name, name)))
                },
            )
            line.record_id = line.paraphrase().record_id
            paraphrases.append(line)
        found = usage.get((group.template.name, group.tag))
        rejections = Counter({k: v for k, v in reasons[group.key].items() if k != R.ACCEPTED})
        if kept:
            result, why = "accepted", f"{len(kept)} accepted"
        else:
            main = rejections.most_common(1)
            result, why = "rejected", (main[0][0] if main else "no answer")
        outcomes.append(
            GroupOutcome(
                template=group.template.name,
                variables_tag=group.tag,
                outcome=result,
                reason=why,
                existing=found.existing if found else 0,
                seen=found.seen if found else 0,
                accepted=len(kept),
                reasons=dict(reasons[group.key]),
            )
        )
    sets = ParaphraseSets(
        character=character.name,
        language=code,
        user=record_user,
        llm=llm,
        paraphrases=paraphrases,
        outcomes=outcomes,
        rejected_examples={k: v[:5] for k, v in sorted(examples.items())},
    ).bind(storage.staging(context))
    totals = Counter()
    for group in chosen:
        totals.update(reasons[group.key])
    return dg.MaterializeResult(
        value=sets,
        check_results=[
            checks.rejection_rate(totals, R.ACCEPTED, max_rejection=config.max_rejection)
        ],
        metadata={
            "llm": llm,
            "groups_paraphrased": len(chosen),
            "groups_skipped": len(skipped),
            "paraphrases": len(paraphrases),
            "llm_jobs": jobs_total,
            "templates": _md_table(
                ["template", "variables", "outcome", "reason", "existing", "seen", "accepted"],
                [
                    [
                        o.template,
                        o.variables_tag or "-",
                        o.outcome,
                        o.reason,
                        o.existing,
                        o.seen,
                        o.accepted,
                    ]
                    for o in outcomes
                ],
            ),
            "accepted_examples": _md_table(
                ["template", "paraphrase", "grammar"],
                [[p.template, p.text, _grammar_text(p.grammar) or "-"] for p in paraphrases[:15]],
            ),
            "rejections": _md_table(
                ["reason", "count", "example"],
                [
                    [reason, count, (examples.get(reason) or [""])[0]]
                    for reason, count in totals.most_common()
                    if reason != R.ACCEPTED
                ],
            ),
        },
    )


def _grammar_text(grammar: dict[str, dict[str, str | None]]) -> str:
    return "; ".join(
        f"{fragment}: " + ", ".join(f"{k}={v}" for k, v in rule.items() if v)
        for fragment, rule in sorted(grammar.items())
    )


def _vote_cases(
    context: dg.AssetExecutionContext,
    brainbox: BrainBoxResource,
    work: Any,
    llm: str,
    chosen: list[Group],
    accepted: dict[str, list[Candidate]],
    language: str,
    config: ParaphraseSetsConfig,
) -> dict[tuple[str, str], dict[str, dict[str, str | None]]]:
    """(group key, paraphrase text) -> fragment -> {case, article, votes}, for de and ru."""
    questions: list[tuple[str, str, Slot, int]] = []  # group key, text, slot, vote
    jobs: list[Job] = []
    for group in chosen:
        for candidate in accepted[group.key][: config.paraphrases_per_answer]:
            text = candidate_text(candidate)
            slots = [p for p in candidate.parts if isinstance(p, Slot)]
            for slot in slots_needing_case(group.template, slots, language):
                prompt = case_prompt(text, slot, group.template, language)
                for vote in range(config.case_votes):
                    questions.append((group.key, text, slot, vote))
                    jobs.append(question_job(prompt, vote, "case"))
    if not jobs:
        return {}
    context.log.info(f"asking the case of {len(jobs) // config.case_votes} variables")
    step = work.step("cases", {"llm": llm})
    answers: dict[tuple[str, str, str], list[str]] = {}
    slots: dict[tuple[str, str, str], Slot] = {}
    for chunk in batches(list(zip(questions, jobs, strict=True)), 100):
        outcome = brainbox.run(context, step, "llm", "question", [j for _, j in chunk])
        for ((key, text, slot, _), _), record in zip(chunk, outcome.records(), strict=True):
            ident = (key, text, slot.fragment)
            slots[ident] = slot
            answers.setdefault(ident, []).append(str(record.result) if record.ok else "")
    result: dict[tuple[str, str], dict[str, dict[str, str | None]]] = {}
    for (key, text, fragment), said in answers.items():
        case_vote = majority([parse_case(a, language) for a in said])
        rule: dict[str, str | None] = {"case": case_vote.winner, "votes": case_vote.reason}
        slot = slots[(key, text, fragment)]
        if (
            get_language(language).article_words
            and not slot.count
            and not _has_determiner(text, slot, language)
        ):
            article_vote = majority([parse_article(a) for a in said])
            rule["article"] = article_vote.winner
            rule["article_votes"] = article_vote.reason
        result.setdefault((key, text), {})[fragment] = rule
    return result


def _translate_options(
    context: dg.AssetExecutionContext,
    brainbox: BrainBoxResource,
    work: Any,
    llm: str,
    chosen: list[Group],
    accepted: dict[str, list[Candidate]],
    language: str,
    config: ParaphraseSetsConfig,
) -> dict[tuple[str, str], dict[str, str]]:
    """(template, variable) -> option value -> word, for option words the template lacks in
    ``language``, by majority over ``case_votes`` answers; no majority: the value is said."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for group in chosen:
        if not accepted[group.key]:
            continue
        for name in group.variable_names:
            values = missing_words(group.template.variables[name], language)
            if values:
                wanted[(group.template.name, name)] = values
    questions: list[tuple[tuple[str, str], str]] = []
    jobs: list[Job] = []
    specs = {g.template.name: g.template for g in chosen}
    for (template, name), values in sorted(wanted.items()):
        description = specs[template].variables[name].description
        for value in values:
            prompt = translation_prompt(value, description, language)
            for vote in range(config.case_votes):
                questions.append(((template, name), value))
                jobs.append(question_job(prompt, vote, "word"))
    if not jobs:
        return {}
    context.log.info(f"translating {len(jobs) // config.case_votes} option words")
    step = work.step("words", {"llm": llm})
    answers: dict[tuple[tuple[str, str], str], list[str | None]] = {}
    for chunk in batches(list(zip(questions, jobs, strict=True)), 100):
        outcome = brainbox.run(context, step, "llm", "question", [j for _, j in chunk])
        for (ident, _), record in zip(chunk, outcome.records(), strict=True):
            answers.setdefault(ident, []).append(
                parse_translation(str(record.result)) if record.ok else None
            )
    result: dict[tuple[str, str], dict[str, str]] = {}
    for (variable, value), said in answers.items():
        vote = majority(said)
        if vote.winner:
            result.setdefault(variable, {})[value] = vote.winner
        else:
            context.log.info(f"no translation of {value!r} ({vote.reason}): the value is said")
    return result


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
        _, records = read_avatar_records(store)
        present = {r.filename for r in records}
        stale: list[str] = []
        new: dict[str, Paraphrase] = {}
        for line in paraphrase_sets.paraphrases:
            spec = library.templates.get(line.template)
            if spec is None or spec.fingerprint != line.template_fingerprint:
                stale.append(line.record_id)
                continue
            paraphrase = dataclasses.replace(line.paraphrase(), character=avatar_name)
            if paraphrase.record_id not in present:
                new.setdefault(paraphrase.record_id, paraphrase)
        if stale:
            context.log.warning(
                f"{len(stale)} paraphrases belong to templates that changed or were removed "
                "since they were made; they are not uploaded (the template sensor asks for new "
                "ones)"
            )
        uploaded_file = ""
        if new:
            built = build_records(library.templates, new.values())
            payload = pickle.dumps(built)
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
