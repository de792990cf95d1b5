"""The paraphrase engine: which template groups to paraphrase, the LLM's paraphrases restored
strictly attempt after attempt, and for de/ru each variable's case and the option words a
template lacks, by majority vote.

No Dagster here: the LLM is the ``llm`` role of a ``Models`` (chara_resources/models.py) and
every answer lands in the work cache the moment it arrives, so a re-run asks nothing twice.
``paraphrase_sets`` (assets.py) gathers the inputs, calls :func:`paraphrase_templates` and
reports what it returns.
"""

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from chara_resources.brainbox_jobs import Job
from chara_resources.languages import get_language
from chara_resources.models import Models, repeat_until_done
from chara_resources.work_cache import ItemRecord, WorkCache, WorkStep

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
from .records import Paraphrase
from .restore import Candidate, candidate_text, restore_answer
from .selection import Usage, batches, choose_groups, usage_by_group
from .templates import Group, Slot, TemplateSpec, missing_words

K = TypeVar("K")
QUESTIONS_PER_BATCH = 100  # case and word questions per models.run call


class AvatarRecord(BaseModel):
    """One paraphrase record on Avatar (what chara needs of it) and how often it was said."""

    filename: str  # the record id
    original_template_name: str
    used_variables_tag: str
    language: str
    character: str | None
    user: str | None
    seen: int = 0


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


class TooManyFailures(RuntimeError):
    """More of the LLM's jobs failed than ``max_failure_ratio`` allows."""


class ParaphraseSettings(BaseModel):
    """How to paraphrase (``ParaphraseSetsConfig`` in assets.py is these and a little more)."""

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
    max_failure_ratio: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="the asset fails if more LLM jobs than this share fail",
    )


@dataclass(frozen=True)
class Voice:
    """Whose lines for whom: the prompt's persona, the character's Avatar name and the user
    the records are for (None: everyone), in one language."""

    persona: Persona
    avatar_name: str
    language: str
    user: str | None = None


@dataclass
class ParaphraseResult:
    """What ``paraphrase_sets`` stores and reports."""

    llm: str  # what served llm.question
    lines: list[ParaphraseLine]
    outcomes: list[GroupOutcome]
    examples: dict[str, list[str]]  # reason -> up to 5 rejected lines (or errors), by reason
    reasons: Counter[str]  # lines per reason over the paraphrased groups
    groups_paraphrased: int
    groups_skipped: int
    llm_jobs: int
    llm_failed: int


def paraphrase_job(group: Group, persona: Persona, wanted: int, attempt: int) -> Job:
    """The LLM job asking for paraphrases of one group (its inputs key the work cache);
    ``attempt`` counts from 0."""
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


def served_records(
    records: Iterable[object],
    feedback: Mapping[str, Mapping[str, object]],
    *,
    avatar_name: str,
    file_name: str,
    language: str,
) -> tuple[list[AvatarRecord], int]:
    """The records Avatar serves for ``avatar_name`` in ``language``, with their ``seen``
    counts; and how many name the character by ``file_name`` instead (Avatar never serves
    those). ``records``: kaia-avatar ParaphraseRecords."""
    mine: list[AvatarRecord] = []
    unserved = 0
    for record in records:
        if record.language != language:
            continue
        if record.character != avatar_name:
            unserved += record.character == file_name
            continue
        seen = (feedback.get(record.filename) or {}).get("seen", 0)
        found = AvatarRecord.model_validate(record, from_attributes=True)
        found.seen = seen if isinstance(seen, int) and seen > 0 else 0
        mine.append(found)
    return mine, unserved


def lines_to_upload(
    lines: Iterable[ParaphraseLine],
    specs: Mapping[str, TemplateSpec],
    present: set[str],
    avatar_name: str,
) -> tuple[dict[str, Paraphrase], list[str]]:
    """New paraphrases by record id, for the character's Avatar name as it is now (records
    already ``present`` left out), and the record ids of lines whose template changed or went."""
    new: dict[str, Paraphrase] = {}
    stale: list[str] = []
    for line in lines:
        spec = specs.get(line.template)
        if spec is None or spec.fingerprint != line.template_fingerprint:
            stale.append(line.record_id)
            continue
        paraphrase = dataclasses.replace(line.paraphrase(), character=avatar_name)
        if paraphrase.record_id not in present:
            new.setdefault(paraphrase.record_id, paraphrase)
    return new, stale


@dataclass
class _Answers:
    """The LLM's answers judged so far: accepted lines and reasons per group key."""

    accepted: dict[str, list[Candidate]]
    reasons: dict[str, Counter[str]]
    examples: dict[str, list[str]] = field(default_factory=dict)
    jobs: int = 0
    failed: int = 0

    def example(self, reason: str, text: str) -> None:
        self.examples.setdefault(reason, []).append(text[:200])

    def judge(self, group: Group, job: Job, record: ItemRecord, voice: Voice) -> None:
        self.jobs += 1
        if not record.ok:
            self.failed += 1
            self.reasons[group.key][R.LLM_ERROR] += 1
            self.example(R.LLM_ERROR, str(record.error))
            return
        accepted = self.accepted[group.key]
        restored = restore_answer(
            str(record.result or ""),
            group.lines,
            known=[line.text for line in group.lines] + [candidate_text(c) for c in accepted],
            prompt=job.arguments["prompt"] + "\n" + job.arguments["system_prompt"],
            speaker=voice.persona.character,
            language=voice.language,
        )
        self.reasons[group.key].update(restored.reasons())
        if restored.answer_reason:
            self.example(restored.answer_reason, str(record.result))
        for candidate in restored.candidates:
            if candidate.ok:
                accepted.append(candidate)
            else:
                self.example(candidate.reason, candidate.text)


def ask_paraphrases(
    models: Models,
    step: WorkStep,
    groups: Sequence[Group],
    voice: Voice,
    settings: ParaphraseSettings,
) -> _Answers:
    """Ask for paraphrases of every group, again for those still short of
    ``paraphrases_per_answer`` accepted lines, up to ``max_attempts`` questions per group."""
    answers = _Answers({g.key: [] for g in groups}, {g.key: Counter() for g in groups})
    wanted = settings.paraphrases_per_answer

    def attempt(n: int, pending: Sequence[Group]) -> None:
        for batch in batches(list(pending), settings.batch_size):
            jobs = [paraphrase_job(group, voice.persona, wanted, n - 1) for group in batch]
            outcome = models.run(step, "llm", "question", jobs)
            for group, job, record in zip(batch, jobs, outcome.records(), strict=True):
                answers.judge(group, job, record, voice)

    def progress(n: int) -> str:
        done = sum(min(wanted, len(answers.accepted[g.key])) for g in groups)
        total = wanted * len(groups)
        return f"attempt {n}/{settings.max_attempts}: {done} of {total} paraphrases accepted"

    repeat_until_done(
        attempt,
        lambda: [g for g in groups if len(answers.accepted[g.key]) < wanted],
        max_attempts=settings.max_attempts,
        progress=progress,
        log=models.log,
    )
    return answers


def has_determiner(text: str, slot: Slot, language: str) -> bool:
    """Whether one of the language's articles or determiners stands right before the slot."""
    before = text.split(slot.fragment, 1)[0].split()
    determiners = get_language(language).determiners
    return bool(before) and before[-1].casefold().strip(",.;:") in determiners


def _poll(
    models: Models, step: WorkStep, prompts: Mapping[K, str], votes: int, label: str
) -> dict[K, list[str]]:
    """Each prompt asked ``votes`` times: the answers per key ("" for a failed job)."""
    asked = [
        (key, question_job(prompts[key], vote, label)) for key in prompts for vote in range(votes)
    ]
    said: dict[K, list[str]] = {key: [] for key in prompts}
    for chunk in batches(asked, QUESTIONS_PER_BATCH):
        outcome = models.run(step, "llm", "question", [job for _, job in chunk])
        for (key, _), record in zip(chunk, outcome.records(), strict=True):
            said[key].append(str(record.result) if record.ok else "")
    return said


def vote_cases(
    models: Models,
    step: WorkStep,
    kept: Sequence[tuple[Group, Candidate]],
    language: str,
    votes: int,
) -> dict[tuple[str, str], dict[str, dict[str, str | None]]]:
    """(group key, paraphrase text) -> fragment -> {case, votes[, article, article_votes]} for
    the slots of the kept lines whose word declines (de, ru), each asked ``votes`` times."""
    prompts: dict[tuple[str, str, Slot], str] = {}
    for group, candidate in kept:
        text = candidate_text(candidate)
        slots = [p for p in candidate.parts if isinstance(p, Slot)]
        for slot in slots_needing_case(group.template, slots, language):
            prompts[(group.key, text, slot)] = case_prompt(text, slot, group.template, language)
    if not prompts:
        return {}
    models.log(f"asking the case of {len(prompts)} variables")
    articles = bool(get_language(language).article_words)  # de: the article is voted too
    result: dict[tuple[str, str], dict[str, dict[str, str | None]]] = {}
    for (key, text, slot), answers in _poll(models, step, prompts, votes, "case").items():
        case_vote = majority([parse_case(a, language) for a in answers])
        rule: dict[str, str | None] = {"case": case_vote.winner, "votes": case_vote.reason}
        if articles and not slot.count and not has_determiner(text, slot, language):
            article_vote = majority([parse_article(a) for a in answers])
            rule["article"] = article_vote.winner
            rule["article_votes"] = article_vote.reason
        result.setdefault((key, text), {})[slot.fragment] = rule
    return result


def translate_options(
    models: Models, step: WorkStep, groups: Sequence[Group], language: str, votes: int
) -> dict[tuple[str, str], dict[str, str]]:
    """(template, variable) -> option value -> word, for the option words the groups' templates
    lack in ``language``, by majority over ``votes`` answers; no majority: the value is said."""
    wanted: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for group in groups:
        for name in group.variable_names:
            variable = group.template.variables[name]
            if values := missing_words(variable, language):
                wanted[(group.template.name, name)] = (variable.description, values)
    prompts = {
        (ident, value): translation_prompt(value, description, language)
        for ident, (description, values) in sorted(wanted.items())
        for value in values
    }
    if not prompts:
        return {}
    models.log(f"translating {len(prompts)} option words")
    result: dict[tuple[str, str], dict[str, str]] = {}
    for (ident, value), answers in _poll(models, step, prompts, votes, "word").items():
        vote = majority([parse_translation(a) for a in answers])
        if vote.winner:
            result.setdefault(ident, {})[value] = vote.winner
        else:
            models.log(f"no translation of {value!r} ({vote.reason}): the value is said")
    return result


def choose(
    specs: Sequence[TemplateSpec],
    records: Sequence[AvatarRecord],
    voice: Voice,
    settings: ParaphraseSettings,
) -> tuple[list[Group], dict[tuple[str, str], Usage], list[GroupOutcome]]:
    """The groups of ``specs`` to paraphrase in the voice's language, most needed first (by the
    usage of Avatar's ``records``); the usage; the outcomes of the templates without lines in
    the language and of the groups skipped."""
    code = voice.language
    usage = usage_by_group(
        records,
        {r.filename: {"seen": r.seen} for r in records},
        character=voice.avatar_name,
        language=code,
        user=voice.user,
    )
    chosen, skipped = choose_groups(
        [g for s in specs for g in s.groups(code)],
        usage,
        upper_count=settings.paraphrases_upper_count,
        explicit=settings.templates,
    )
    outcomes = [
        GroupOutcome(
            template=s.name,
            variables_tag="",
            outcome="not_in_language",
            reason=f"no lines in {code}",
        )
        for s in specs
        if code not in s.lines
    ]
    outcomes += [_outcome(g, usage, "skipped", why) for g, why in skipped]
    return chosen, usage, outcomes


def _outcome(
    group: Group, usage: Mapping[tuple[str, str], Usage], outcome: str, reason: str, **more: Any
) -> GroupOutcome:
    found = usage.get((group.template.name, group.tag)) or Usage()
    return GroupOutcome(
        template=group.template.name,
        variables_tag=group.tag,
        outcome=outcome,
        reason=reason,
        existing=found.existing,
        seen=found.seen,
        **more,
    )


def paraphrase_templates(
    models: Models,
    work: WorkCache,
    specs: Sequence[TemplateSpec],
    records: Sequence[AvatarRecord],
    voice: Voice,
    settings: ParaphraseSettings,
) -> ParaphraseResult:
    """Paraphrase the groups of ``specs`` that need it (see :func:`choose`); case and option
    words voted on; what became of every group.

    Raises TooManyFailures when more LLM jobs failed than ``max_failure_ratio`` allows (the
    answers that came are in the work cache: the next run asks only the failed ones again).
    """
    chosen, usage, outcomes = choose(specs, records, voice, settings)
    skipped = sum(o.outcome == "skipped" for o in outcomes)
    models.log(
        f"{len(chosen)} template groups to paraphrase for {voice.avatar_name} in {voice.language}, "
        f"{skipped} skipped (more than {settings.paraphrases_upper_count} paraphrases)"
    )
    llm = models.model("llm", "question")
    answers = ask_paraphrases(models, work.step("answers", {"llm": llm}), chosen, voice, settings)
    if answers.jobs and (
        answers.failed == answers.jobs or answers.failed / answers.jobs > settings.max_failure_ratio
    ):
        raise TooManyFailures(
            f"{answers.failed} of {answers.jobs} LLM jobs failed; first errors: "
            + " | ".join(answers.examples.get(R.LLM_ERROR, [])[:3])
        )
    kept = {g.key: answers.accepted[g.key][: settings.paraphrases_per_answer] for g in chosen}
    step = work.step("cases", {"llm": llm})
    kept_lines = [(g, c) for g in chosen for c in kept[g.key]]
    grammar = vote_cases(models, step, kept_lines, voice.language, settings.case_votes)
    words: dict[tuple[str, str], dict[str, str]] = {}
    if settings.translate_options:
        step, with_lines = work.step("words", {"llm": llm}), [g for g in chosen if kept[g.key]]
        words = translate_options(models, step, with_lines, voice.language, settings.case_votes)
    lines = []
    for group, candidate in kept_lines:
        text = candidate_text(candidate)
        line = ParaphraseLine(
            template=group.template.name,
            variables_tag=group.tag,
            language=voice.language,
            character=voice.avatar_name,
            user=voice.user,
            text=text,
            grammar=grammar.get((group.key, text), {}),
            template_fingerprint=group.template.fingerprint,
            words={
                n: w for n in group.variable_names if (w := words.get((group.template.name, n)))
            },
        )
        line.record_id = line.paraphrase().record_id
        lines.append(line)
    totals: Counter[str] = Counter()
    for group in chosen:
        reasons, n = answers.reasons[group.key], len(kept[group.key])
        totals.update(reasons)
        main = Counter({k: v for k, v in reasons.items() if k != R.ACCEPTED}).most_common(1)
        why = f"{n} accepted" if n else (main[0][0] if main else "no answer")
        outcome = "accepted" if n else "rejected"
        outcomes.append(_outcome(group, usage, outcome, why, accepted=n, reasons=dict(reasons)))
    return ParaphraseResult(
        llm=llm,
        lines=lines,
        outcomes=outcomes,
        examples={k: v[:5] for k, v in sorted(answers.examples.items())},
        reasons=totals,
        groups_paraphrased=len(chosen),
        groups_skipped=skipped,
        llm_jobs=answers.jobs,
        llm_failed=answers.failed,
    )
