"""Restore, voting and prioritisation on recorded and adversarial LLM answers (no LLM here)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chara_assets.paraphrase import restore as R
from chara_assets.paraphrase.grammar import majority, parse_article, parse_case
from chara_assets.paraphrase.restore import candidate_text, restore_answer, split_answer
from chara_assets.paraphrase.selection import Usage, choose_groups, usage_by_group
from chara_assets.paraphrase.templates import parse_templates

TEMPLATES = """\
templates:
  - name: timer_set
    variables:
      index: {type: int, min: 1, max: 5, ordinal: true, description: which timer}
      count: {type: int, min: 1, max: 59, description: how many units}
      unit: {type: options, options: [minute, hour], description: the unit}
    lines:
      en:
        - "The {index} timer runs {count+unit}."
        - "Done."
  - name: goodbye
    lines:
      en: ["Goodbye!"]
"""
SPECS = {s.name: s for s in parse_templates(TEMPLATES, "t.yaml")}
TIMER = SPECS["timer_set"].groups("en")[1]  # count,index,unit
BYE = SPECS["goodbye"].groups("en")[0]


def _reasons(answer: str, group=TIMER) -> list[tuple[str, str]]:
    restored = restore_answer(answer, group.lines)
    return [(c.text, c.reason) for c in restored.candidates]


def test_bullets_of_every_kind_are_stripped() -> None:
    answer = "\n".join(
        [
            "Here are five paraphrases:",
            "- Your {index} timer is ticking: {count+unit}!",
            "* The {index} timer? {count+unit}, off it goes.",
            "+ Off goes the {index} timer for {count+unit}.",
            "• Set! The {index} timer runs for {count+unit}.",
            "1. Alright, {count+unit} on the {index} timer.",
            "2) {count+unit} on your {index} timer, done.",
            "(3) Counting {count+unit} on timer {index}.",
            "a) Timer {index}: {count+unit}.",
            "- [ ] Timer {index} started, {count+unit}.",
            "> - Quoted: timer {index}, {count+unit}.",
            "**4.** Bold number: timer {index}, {count+unit}.",
            "   -    Indented: timer {index} for {count+unit}.",
            "I hope these help!",
        ]
    )
    items, reason = split_answer(answer)
    assert reason is None
    assert items[0] == "Your {index} timer is ticking: {count+unit}!"
    assert len(items) == 12
    assert all(c.ok for c in restore_answer(answer, TIMER.lines).candidates)


def test_quotes_around_items_and_placeholders_are_repaired() -> None:
    answer = (
        '- "Your {index} timer runs {count+unit}."\n'
        "- «Timer \"{index}\" is on for '{count+unit}'.»\n"
        "- The **{index}** timer: {{count+unit}} to go.\n"
        "- The { Index } timer, { count + unit }.\n"
    )
    restored = restore_answer(answer, TIMER.lines)
    assert [c.reason for c in restored.candidates] == [R.ACCEPTED] * 4
    assert [candidate_text(c) for c in restored.candidates] == [
        "Your {index} timer runs {count+unit}.",
        "Timer {index} is on for {count+unit}.",
        "The {index} timer: {count+unit} to go.",
        "The {index} timer, {count+unit}.",
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("- The {number} timer runs {count+unit}.", R.RENAMED),  # renamed
        ("- Der {index} Timer läuft {anzahl+einheit}.", R.RENAMED),  # translated
        ("- The timer runs {count+unit}.", R.DROPPED),
        ("- The {index} timer runs {count+unit}, {count+unit}!", R.DUPLICATED),
        ("- The {index} timer runs {count+unit} for {user}.", R.INVENTED),
        ("- The {index} timer runs {count+unit} {", R.UNBALANCED),
        ("- The {index} timer runs {five minutes}.", R.INVENTED),
        ("- The {index} timer runs {count+unit}.", R.COPY),  # the original itself
        ("- " + "very " * 60 + "long {index} {count+unit}", R.TOO_LONG),
        ("- I'm sorry, I can't help with that.", R.REFUSAL),
    ],
)
def test_adversarial_lines_are_rejected_with_their_reason(line: str, reason: str) -> None:
    assert _reasons(line) == [(line[2:], reason)]


def test_a_repeated_paraphrase_is_kept_once() -> None:
    answer = "- Timer {index}: {count+unit}.\n- timer {index} -- {count+unit}!\n"
    assert [r for _, r in _reasons(answer)] == [R.ACCEPTED, R.DUPLICATE]
    # ... and one that an earlier answer gave is a duplicate too.
    again = restore_answer(
        "- Timer {index}: {count+unit}.", TIMER.lines, known=["Timer {index}: {count+unit}."]
    )
    assert again.candidates[0].reason == R.DUPLICATE


def test_a_group_without_variables_accepts_no_placeholder() -> None:
    answer = "- See you soon!\n- Bye, {name}!\n- Goodbye!"
    assert [r for _, r in _reasons(answer, BYE)] == [R.ACCEPTED, R.INVENTED, R.COPY]


def test_refusals_and_unparsable_answers() -> None:
    assert split_answer("I'm sorry, but I cannot rewrite these lines.") == ([], R.REFUSAL)
    assert split_answer("Es tut mir leid, das kann ich nicht.") == ([], R.REFUSAL)
    assert split_answer("Извините, я не могу это сделать.") == ([], R.REFUSAL)
    assert split_answer("   \n\n") == ([], R.UNPARSABLE)
    assert split_answer("Sure! Here they are:\n") == ([], R.UNPARSABLE)
    restored = restore_answer("As an AI, I prefer not to.", TIMER.lines)
    assert restored.candidates == [] and restored.reasons() == {R.REFUSAL: 1}


# Answers SmolLM2-135M gave to our prompt on this machine (recorded by hand): garbage that
# must come out as reasoned rejections, never as a paraphrase.
RECORDED_SMOLLM2 = [
    "{1, 2, 3}\nA: A.\nB.\nC.",
    "The user is leaving. A software engineer, Slim's upbeat assistant,\n"
    "Kiki: Kiiiiiiiiiif you're coming to visit slickiie here are some fun things to do.\n"
    "-Situation: The user is leaving.",
]


def test_recorded_small_model_answers_give_no_paraphrase_of_a_timer() -> None:
    for answer in RECORDED_SMOLLM2:
        restored = restore_answer(answer, TIMER.lines)
        assert restored.accepted == []
        assert sum(restored.reasons().values()) >= 1


# --- case votes -------------------------------------------------------------------------------


def test_case_answers_are_parsed_in_any_language_and_ambiguity_is_none() -> None:
    assert parse_case("Accusative.", "ru") == "accusative"
    assert parse_case("Винительный падеж", "ru") == "accusative"
    assert parse_case("Творительный", "ru") == "instrumental"
    assert parse_case("It is the accusative, specifically nominative.", "ru") is None
    assert parse_case("no idea", "ru") is None
    assert parse_case("Dativ, mit bestimmtem Artikel", "de") == "dative"
    assert parse_article("indefinite article (ein)") == "indefinite"
    assert parse_article("The definite article.") == "definite"
    assert parse_article("No article.") == "none"
    assert parse_article("definite or indefinite") is None


def test_majority_vote_and_ties() -> None:
    vote = majority(["accusative", "genitive", "accusative", None])
    assert vote.winner == "accusative" and vote.unparsable == 1
    assert vote.reason == "accusative (2 of 3)"
    assert majority(["accusative", "genitive"]).winner is None
    assert majority([None, None]).reason == "no parsable answer"


@pytest.mark.slow
def test_voted_case_changes_what_the_assistant_says() -> None:
    from grammatron import DubParameters

    from chara_assets.paraphrase.records import Paraphrase, paraphrase_template

    [spec] = parse_templates(
        "templates:\n  - name: t\n    variables:\n"
        "      unit: {type: options, description: d, options: [{value: m, ru: минута}]}\n"
        "    lines:\n      ru: ['Доволен {unit}.']\n",
        "t.yaml",
    )
    base = Paraphrase("t", "unit", "ru", "boris", None, "Я доволен {unit}.")
    voted = Paraphrase(**{**vars(base), "grammar": {"{unit}": {"case": "instrumental"}}})
    params = DubParameters(language="ru")
    assert paraphrase_template(spec, base).dub.to_str({"unit": "m"}, params) == "Я доволен минута."
    assert paraphrase_template(spec, voted).dub.to_str({"unit": "m"}, params) == (
        "Я доволен минутой."
    )
    assert base.record_id != voted.record_id


# --- what to paraphrase -----------------------------------------------------------------------


class _Record:
    def __init__(self, name, tag, filename, character="kiki", language="en", user=None):
        self.original_template_name, self.used_variables_tag = name, tag
        self.filename, self.character, self.language, self.user = (
            filename,
            character,
            language,
            user,
        )


def test_usage_counts_only_this_character_language_and_user() -> None:
    records = [
        _Record("timer_set", "count,index,unit", "r1"),
        _Record("timer_set", "count,index,unit", "r2", user="sam"),
        _Record("timer_set", "count,index,unit", "r3", user="alex"),  # another user's
        _Record("timer_set", "count,index,unit", "r4", character="boris"),
        _Record("timer_set", "count,index,unit", "r5", language="de"),
    ]
    feedback = {"r1": {"seen": 4}, "r2": {"seen": 1}, "r3": {"seen": 9}, "r9": {"seen": 2}}
    usage = usage_by_group(records, feedback, character="kiki", language="en", user="sam")
    assert usage == {("timer_set", "count,index,unit"): Usage(existing=2, seen=5)}


def test_upper_count_and_priority_order() -> None:
    groups = [BYE, *SPECS["timer_set"].groups("en")]  # goodbye '', timer '', timer count,...
    usage = {
        ("goodbye", ""): Usage(existing=5, seen=1),  # priority 4
        ("timer_set", ""): Usage(existing=1, seen=30),  # priority 0, heavily used
        ("timer_set", "count,index,unit"): Usage(existing=0, seen=0),  # new: priority 0
    }
    chosen, skipped = choose_groups(groups, usage, upper_count=1)
    assert [(g.template.name, g.tag) for g in chosen] == [
        ("timer_set", ""),  # seen most among priority 0
        ("timer_set", "count,index,unit"),
    ]
    assert [(g.template.name, why) for g, why in skipped] == [
        ("goodbye", "has 5 paraphrases (more than 1)")
    ]
    only_new, _ = choose_groups(groups, usage, upper_count=0)
    assert [(g.template.name, g.tag) for g in only_new] == [("timer_set", "count,index,unit")]
    forced, skipped = choose_groups(groups, usage, upper_count=0, explicit=["goodbye"])
    assert "goodbye" in [g.template.name for g in forced] and len(skipped) == 1


def test_echoes_of_the_prompt_and_speaker_labels() -> None:
    # Lines SmolLM2-135M gave for a greeting (recorded): it repeats the prompt.
    prompt = (
        "Situation: The user has just come in, or said hello.\n"
        "The reply must express: a friendly hello\n"
        "The lines now:\n- Hello!"
    )
    answer = (
        "- Situation: The user has just come in, or said hello.\n"
        "- The reply must express a friendly hello.\n"
        "- Kiki: Hey there, sunshine!\n"
        "- Well hello, hello!\n"
        # Recorded in CI for 'goodbye': the prompt's labels inside a longer line.
        '- Kiki is speaking to Sam, "Situation: The user is leaving.\n'
        '- The response must express a farewell."\n'
    )
    group = parse_templates(
        "templates:\n  - name: greeting\n    lines: {en: ['Hello!']}\n", "t.yaml"
    )[0].groups("en")[0]
    restored = restore_answer(answer, group.lines, prompt=prompt, speaker="Kiki")
    assert [(candidate_text(c) or c.text, c.reason) for c in restored.candidates] == [
        ("Situation: The user has just come in, or said hello.", R.ECHO),
        ("The reply must express a friendly hello.", R.ECHO),
        ("Hey there, sunshine!", R.ACCEPTED),
        ("Well hello, hello!", R.ACCEPTED),
        ('Kiki is speaking to Sam, "Situation: The user is leaving.', R.ECHO),
        ('The response must express a farewell."', R.ECHO),
    ]
    # Without the prompt (nothing to compare with), such lines are judged like any other.
    plain = restore_answer('- The response must express a farewell."', group.lines)
    assert [c.reason for c in plain.candidates] == [R.ACCEPTED]


@pytest.mark.slow
def test_translated_option_words_are_said() -> None:
    from grammatron import DubParameters

    from chara_assets.paraphrase.grammar import parse_translation
    from chara_assets.paraphrase.records import Paraphrase, paraphrase_template
    from chara_assets.paraphrase.templates import missing_words

    assert parse_translation('- "Stunde".') == "Stunde"
    assert parse_translation("Translation: час") == "час"
    assert parse_translation("The word is hour, which means 60 minutes.") is None
    [spec] = parse_templates(
        "templates:\n  - name: t\n    variables:\n"
        "      n: {type: int, min: 1, max: 9, description: how many}\n"
        "      unit: {type: options, description: d, options: [hour, {value: day, ru: день}]}\n"
        "    lines:\n      ru: ['Жду {n+unit}.']\n",
        "t.yaml",
    )
    assert missing_words(spec.variables["unit"], "ru") == ["hour"]
    assert missing_words(spec.variables["unit"], "en") == []
    plain = Paraphrase("t", "n,unit", "ru", "boris", None, "Ну, жду {n+unit}.")
    translated = Paraphrase(**{**vars(plain), "words": {"unit": {"hour": "час"}}})
    params = DubParameters(language="ru")
    values = {"n": 5, "unit": "hour"}
    assert paraphrase_template(spec, plain).dub.to_str(values, params) == "Ну, жду пять hour."
    assert paraphrase_template(spec, translated).dub.to_str(values, params) == "Ну, жду пять часов."
    assert plain.record_id != translated.record_id


def test_wrong_script_and_merged_lists_are_rejected() -> None:
    # What SmolLM2-135M gave for Russian greetings (recorded).
    [spec] = parse_templates(
        "templates:\n  - name: greeting\n    variables:\n"
        "      name: {type: text, examples: [Sam], description: the user's name}\n"
        "    lines: {ru: ['Привет, {name}!']}\n",
        "t.yaml",
    )
    lines = spec.groups("ru")[0].lines
    answer = (
        '- "Hello, {name}!" - This is a friendly greeting.\n'
        "- Привет, {name}! 2. Вы защититься в точке 3. 4. Отрадиология 5.\n"
        "- Здравствуй, {name}, рад тебя видеть!\n"
    )
    restored = restore_answer(answer, lines, language="ru")
    assert [c.reason for c in restored.candidates] == [R.WRONG_LANGUAGE, R.MERGED, R.ACCEPTED]
    english = restore_answer("- Hey {name}, привет!", lines, language="en")
    assert english.candidates[0].reason == R.WRONG_LANGUAGE


@pytest.mark.slow
def test_german_case_and_article_go_into_the_template() -> None:
    from grammatron import DubParameters

    from chara_assets.paraphrase.engine import has_determiner
    from chara_assets.paraphrase.records import Paraphrase, paraphrase_template
    from chara_assets.paraphrase.templates import Slot

    [spec] = parse_templates(
        "templates:\n  - name: t\n    variables:\n"
        "      unit: {type: options, description: d, options: [{value: h, de: Stunde}]}\n"
        "    lines:\n      de: ['Eine {unit}.']\n",
        "t.yaml",
    )
    rule = {"{unit}": {"case": "dative", "article": "definite"}}
    line = Paraphrase("t", "unit", "de", "kiki", None, "Noch mit {unit}!", grammar=rule)
    said = paraphrase_template(spec, line).dub.to_str({"unit": "h"}, DubParameters(language="de"))
    assert said == "Noch mit der Stunde!"
    # An article the LLM already wrote is kept, so no second one is voted in.
    assert has_determiner("Noch mit der {unit}!", Slot("unit"), "de")
    assert not has_determiner("Noch mit {unit}!", Slot("unit"), "de")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_no_answer_makes_restore_fail(answer: str) -> None:
    restored = restore_answer(answer, TIMER.lines, prompt="Situation: x", speaker="Kiki",
                              language="ru")  # fmt: skip
    for candidate in restored.candidates:
        assert candidate.reason in R.REASONS
        if candidate.ok:
            assert sorted(s.fragment for s in candidate.parts if hasattr(s, "fragment")) in (
                sorted(s.fragment for s in line.slots) for line in TIMER.lines
            )
