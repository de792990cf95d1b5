"""The paraphrase engine on FunctionModels: an llm.question function that answers from the
prompt, the real restore, votes and work cache (fast tier: no server, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chara_assets.paraphrase import restore as R
from chara_assets.paraphrase.engine import (
    AvatarRecord,
    ParaphraseLine,
    ParaphraseSettings,
    TooManyFailures,
    Voice,
    lines_to_upload,
    paraphrase_templates,
    served_records,
)
from chara_assets.paraphrase.prompts import Persona
from chara_assets.paraphrase.templates import parse_templates
from chara_resources.work_cache import WorkCache

from .engine_models import FunctionModels

TEMPLATES = """\
templates:
  - name: timer_set
    context: The user asked for a timer.
    variables:
      index: {type: int, min: 1, max: 5, ordinal: true, description: which timer}
      count: {type: int, min: 1, max: 59, description: how many units}
      unit:
        type: options
        description: the unit of time
        options: [{value: minute, en: minute, de: Minute, ru: минута}, hour]
    lines:
      en: ["The {index} timer runs {count+unit}."]
      ru: ["Таймер {index} на {count+unit}."]
  - name: goodbye
    lines:
      en: ["Goodbye!"]
  - name: reminder
    variables:
      unit: {type: options, options: [{value: hour, de: Stunde}], description: the unit}
    lines:
      de: ["Noch eine {unit}."]
"""
SPECS = parse_templates(TEMPLATES, "t.yaml")
TIMER = "- The {index} timer runs {count+unit}."  # how the prompts list the lines
BYE = "- Goodbye!"
TICKING = "Your {index} timer is ticking: {count+unit}!"
KIKI = Voice(Persona("Kiki", "a cheerful robot"), "Kiki", "en")
BORIS = Voice(Persona("Boris", "a grumpy bear"), "Boris", "ru")


class Llm:
    """llm.question: the first key found in the prompt picks its answers, given in turn (the
    last one repeats); an exception in the list is a failed job. Every prompt is kept."""

    def __init__(self, answers: dict[str, list[str | BaseException]]) -> None:
        self.answers = {key: list(queue) for key, queue in answers.items()}
        self.asked: list[str] = []

    def __call__(self, arguments: dict) -> str:
        prompt = arguments["prompt"]
        self.asked.append(prompt)
        key = next((k for k in self.answers if k in prompt), None)
        assert key is not None, f"no answer for {prompt[:300]!r}"
        queue = self.answers[key]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def asked_for(self, key: str) -> int:
        return sum(key in prompt for prompt in self.asked)


def _run(tmp_path: Path, llm: Llm, voice: Voice = KIKI, specs=("timer_set", "goodbye"),
         records=(), **settings):  # fmt: skip
    """paraphrase_templates on the templates named in ``specs``."""
    models = FunctionModels({"llm.question": llm}, names={"llm.question": "Fake:llm"})
    specs = [s for s in SPECS if s.name in specs]
    made = paraphrase_templates(
        models,
        WorkCache(tmp_path / "work"),
        specs,
        list(records),
        voice,
        ParaphraseSettings(**settings),
    )
    return made, models


def _outcome(made, template: str):
    [found] = [o for o in made.outcomes if o.template == template]
    return found


def test_restore_accepts_and_rejects_every_line_with_its_reason(tmp_path: Path) -> None:
    lines = {
        "Your {index} timer is ticking: {count+unit}!": R.ACCEPTED,
        "The {number} timer runs {count+unit}.": R.RENAMED,
        "The timer runs {count+unit}.": R.DROPPED,
        "The {index} timer runs {count+unit}, {count+unit}!": R.DUPLICATED,
        "The {index} timer runs {count+unit} for {user}.": R.INVENTED,
        "The {index} timer runs {count+unit} {": R.UNBALANCED,
        "The {index} timer runs {count+unit}.": R.COPY,
        "your {index} timer is ticking -- {count+unit}": R.DUPLICATE,
        "Таймер {index} идёт {count+unit}.": R.WRONG_LANGUAGE,
        "Situation: your {index} timer, {count+unit}.": R.ECHO,
        "Timer {index} 1. set 2. runs {count+unit}": R.MERGED,
        "very " * 60 + "long {index} {count+unit}": R.TOO_LONG,
        "I'm sorry, I can't help with that.": R.REFUSAL,
    }
    llm = Llm({TIMER: ["\n".join(f"- {line}" for line in lines)], BYE: ["   \n"]})
    made, _ = _run(tmp_path, llm, max_attempts=1, paraphrases_per_answer=1)

    timer = _outcome(made, "timer_set")
    assert (timer.outcome, timer.reason, timer.accepted) == ("accepted", "1 accepted", 1)
    assert timer.reasons == {reason: 1 for reason in lines.values()}
    for line, reason in lines.items():
        if reason != R.ACCEPTED:
            assert made.examples[reason] == [line[:200]], reason
    bye = _outcome(made, "goodbye")
    assert (bye.outcome, bye.reason, bye.reasons) == ("rejected", R.UNPARSABLE, {R.UNPARSABLE: 1})
    assert [p.text for p in made.lines] == ["Your {index} timer is ticking: {count+unit}!"]
    assert made.reasons[R.UNPARSABLE] == 1 and sum(made.reasons.values()) == len(lines) + 1
    assert (made.llm, made.llm_jobs, made.llm_failed) == ("Fake:llm", 2, 0)


def test_only_groups_still_short_are_asked_again(tmp_path: Path) -> None:
    llm = Llm(
        {
            TIMER: [f"- {TICKING}", "- Timer {index}: {count+unit}, go!"],
            BYE: ["- See you soon!\n- Take care!"],
        }
    )  # fmt: skip
    made, models = _run(tmp_path, llm, max_attempts=3, paraphrases_per_answer=2)
    assert (llm.asked_for(TIMER), llm.asked_for(BYE)) == (2, 1)
    assert models.lines[-2:] == [
        "attempt 1/3: 3 of 4 paraphrases accepted",
        "attempt 2/3: 4 of 4 paraphrases accepted",
    ]
    assert [(o.template, o.outcome, o.accepted) for o in made.outcomes] == [
        ("goodbye", "accepted", 2),
        ("timer_set", "accepted", 2),
    ]
    timer = [p.text for p in made.lines if p.template == "timer_set"]
    assert timer == [TICKING, "Timer {index}: {count+unit}, go!"]
    assert all(p.record_id == p.paraphrase().record_id for p in made.lines)
    assert {p.character for p in made.lines} == {"Kiki"}


def test_asking_stops_at_max_attempts(tmp_path: Path) -> None:
    llm = Llm({TIMER: ["I'm sorry, but I cannot rewrite these lines."], BYE: ["- Bye now!"]})
    made, models = _run(tmp_path, llm, max_attempts=3, paraphrases_per_answer=1)
    assert (llm.asked_for(TIMER), llm.asked_for(BYE)) == (3, 1)
    timer = _outcome(made, "timer_set")
    assert (timer.outcome, timer.reason, timer.reasons) == ("rejected", R.REFUSAL, {R.REFUSAL: 3})
    assert models.lines[-1] == "attempt 3/3: 1 of 2 paraphrases accepted"
    assert made.llm_jobs == 4


def test_case_votes_take_the_majority_and_a_tie_leaves_the_case_open(tmp_path: Path) -> None:
    llm = Llm(
        {
            "placeholder {index}": ["Винительный падеж.", "accusative", "Родительный"],
            "placeholder {count+unit}": ["genitive", "accusative", "no idea"],
            'word "hour"': ["час", "- час", "часы"],
            "- Таймер {index} на {count+unit}.": ["- Ладно, таймер {index} на {count+unit}."],
        }
    )
    made, models = _run(tmp_path, llm, BORIS, specs=("timer_set",), paraphrases_per_answer=1)
    [line] = made.lines
    assert line.text == "Ладно, таймер {index} на {count+unit}."
    assert line.grammar == {
        "{index}": {"case": "accusative", "votes": "accusative (2 of 3)"},
        "{count+unit}": {"case": None, "votes": "tie: accusative 1, genitive 1"},
    }
    assert line.words == {"unit": {"hour": "час"}}  # "minute" has its Russian word
    assert llm.asked_for("placeholder {index}") == 3 and llm.asked_for('word "hour"') == 3
    assert "asking the case of 2 variables" in models.lines
    assert "translating 1 option words" in models.lines


def test_german_article_is_voted_unless_the_line_has_one(tmp_path: Path) -> None:
    voice = Voice(Persona("Kiki", "a cheerful robot"), "Kiki", "de")
    llm = Llm(
        {
            "placeholder {unit}": ["Dativ, definite article"],
            "- Noch eine {unit}.": ["- Noch mit {unit}!\n- Noch mit der {unit}!"],
        }
    )
    made, _ = _run(tmp_path, llm, voice, specs=("reminder", "goodbye"), paraphrases_per_answer=2)
    assert {p.text: p.grammar["{unit}"] for p in made.lines} == {
        "Noch mit {unit}!": {
            "case": "dative",
            "votes": "dative (3 of 3)",
            "article": "definite",
            "article_votes": "definite (3 of 3)",
        },
        "Noch mit der {unit}!": {"case": "dative", "votes": "dative (3 of 3)"},
    }
    assert [(o.template, o.outcome) for o in made.outcomes] == [
        ("goodbye", "not_in_language"),
        ("reminder", "accepted"),
    ]
    assert all(p.words == {} for p in made.lines)  # Stunde is given


def test_a_word_without_a_majority_is_not_translated_and_translation_can_be_off(
    tmp_path: Path,
) -> None:
    answers = {
        "Which grammatical case": ["accusative"],
        'word "hour"': ["час", "часы", "The word is hour, which means 60 minutes."],
        "- Таймер {index} на {count+unit}.": ["- Ладно, таймер {index} на {count+unit}."],
    }
    llm = Llm(answers)
    made, models = _run(tmp_path / "a", llm, BORIS, specs=("timer_set",))
    assert made.lines[0].words == {}
    assert "no translation of 'hour' (tie: час 1, часы 1): the value is said" in models.lines

    llm = Llm(answers)
    made, _ = _run(tmp_path / "b", llm, BORIS, specs=("timer_set",), translate_options=False)
    assert llm.asked_for('word "hour"') == 0 and made.lines[0].words == {}


def test_llm_failures_are_counted_and_too_many_stop_the_run(tmp_path: Path) -> None:
    answers = {TIMER: [RuntimeError("model not loaded")], BYE: ["- See you soon!"]}
    made, _ = _run(tmp_path / "half", Llm(answers), max_attempts=1, paraphrases_per_answer=1)
    timer = _outcome(made, "timer_set")
    assert (timer.outcome, timer.reason) == ("rejected", R.LLM_ERROR)
    assert timer.reasons == {R.LLM_ERROR: 1}
    assert made.examples[R.LLM_ERROR] == ["RuntimeError: model not loaded"]
    assert (made.llm_jobs, made.llm_failed) == (2, 1)  # half failed: not more than 0.5

    message = r"^1 of 2 LLM jobs failed; first errors: RuntimeError: model not loaded$"
    with pytest.raises(TooManyFailures, match=message):
        _run(tmp_path / "strict", Llm(answers), max_attempts=1, max_failure_ratio=0.4)
    every = {TIMER: [RuntimeError("no GPU")], BYE: [RuntimeError("no GPU")]}
    with pytest.raises(TooManyFailures, match="2 of 2 LLM jobs failed"):
        _run(tmp_path / "all", Llm(every), max_attempts=1, max_failure_ratio=1.0)


class Crash(BaseException):
    """The process dies mid-batch (as a kill would stop it): nothing after it runs."""


def test_a_rerun_after_a_crash_asks_only_what_was_not_answered(tmp_path: Path) -> None:
    first = Llm({BYE: ["- See you soon!"], TIMER: [Crash()]})
    with pytest.raises(Crash):
        _run(tmp_path, first, paraphrases_per_answer=1)
    assert (first.asked_for(BYE), first.asked_for(TIMER)) == (1, 1)

    second = Llm({BYE: [AssertionError("asked twice")], TIMER: ["- Timer {index}: {count+unit}!"]})
    made, _ = _run(tmp_path, second, paraphrases_per_answer=1)
    assert (second.asked_for(BYE), second.asked_for(TIMER)) == (0, 1)
    assert [(p.template, p.text) for p in made.lines] == [
        ("goodbye", "See you soon!"),
        ("timer_set", "Timer {index}: {count+unit}!"),
    ]
    third = Llm({"": [AssertionError("asked again")]})
    again, _ = _run(tmp_path, third, paraphrases_per_answer=1)
    assert third.asked == [] and again.lines == made.lines and again.outcomes == made.outcomes


def test_usage_decides_which_groups_are_paraphrased(tmp_path: Path) -> None:
    said = [
        AvatarRecord(filename=f"r{i}", original_template_name="goodbye", used_variables_tag="",
                     language="en", character="Kiki", user=None, seen=3)
        for i in (1, 2)
    ]  # fmt: skip
    llm = Llm({TIMER: ["- Timer {index}: {count+unit}!"]})
    made, models = _run(tmp_path / "a", llm, records=said, paraphrases_upper_count=1)
    assert [(o.template, o.outcome, o.reason, o.existing, o.seen) for o in made.outcomes] == [
        ("goodbye", "skipped", "has 2 paraphrases (more than 1)", 2, 6),
        ("timer_set", "accepted", "1 accepted", 0, 0),
    ]
    assert (made.groups_paraphrased, made.groups_skipped) == (1, 1)
    assert llm.asked_for(BYE) == 0
    assert models.lines[0] == (
        "1 template groups to paraphrase for Kiki in en, 1 skipped (more than 1 paraphrases)"
    )

    # Named templates are paraphrased whatever they have; Avatar names decide whose they are.
    llm = Llm({BYE: ["- Bye now!"]})
    made, _ = _run(tmp_path / "b", llm, specs=("goodbye",), records=said, templates=["goodbye"])
    assert [(o.outcome, o.existing) for o in made.outcomes] == [("accepted", 2)]
    other = Voice(KIKI.persona, "Kiki2", "en")
    made, _ = _run(tmp_path / "c", llm, other, specs=("goodbye",), records=said)
    assert [(o.outcome, o.existing) for o in made.outcomes] == [("accepted", 0)]


def test_bad_settings_name_the_setting() -> None:
    bad = [("case_votes", 0), ("max_failure_ratio", 1.5), ("paraphrases_per_answer", 0)]
    for name, value in bad:
        with pytest.raises(ValidationError, match=name):
            ParaphraseSettings(**{name: value})


class _Record:  # what chara reads of kaia-avatar's ParaphraseRecord
    def __init__(self, filename: str, character: str, language: str = "en") -> None:
        self.filename, self.character, self.language = filename, character, language
        self.original_template_name, self.used_variables_tag, self.user = "goodbye", "", None


def test_served_records_and_what_is_uploaded() -> None:
    records = [_Record("a", "Kiki"), _Record("b", "kiki"), _Record("c", "Kiki", "de")]
    mine, unserved = served_records(
        records, {"a": {"seen": 4}, "b": {"seen": 9}}, avatar_name="Kiki", file_name="kiki",
        language="en",
    )  # fmt: skip
    assert [(r.filename, r.seen) for r in mine] == [("a", 4)] and unserved == 1

    [bye] = [s for s in SPECS if s.name == "goodbye"]

    def line(text: str, fingerprint: str = bye.fingerprint) -> ParaphraseLine:  # fmt: skip
        made = ParaphraseLine(template="goodbye", variables_tag="", language="en", character="Kiki",
                              user=None, text=text, template_fingerprint=fingerprint)  # fmt: skip
        made.record_id = made.paraphrase().record_id
        return made

    there, new, old = line("Bye!"), line("See you!"), line("Ciao!", "changed")
    renamed = {"goodbye": bye}
    fresh, stale = lines_to_upload([there, new, old], renamed, {there.record_id}, "Kiki")
    assert list(fresh) == [new.record_id] and stale == [old.record_id]
    # Under another Avatar name the same lines are new records, named for it.
    fresh, _ = lines_to_upload([there], renamed, {there.record_id}, "KIKI")
    assert [p.character for p in fresh.values()] == ["KIKI"]
