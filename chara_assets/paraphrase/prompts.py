"""What the LLM is asked: paraphrases of a group of lines, and the case of a variable."""

from __future__ import annotations

from dataclasses import dataclass

from chara_resources.languages import get_language

from .grammar import case_names
from .templates import Group, IntVariable, OptionsVariable, Slot, TemplateSpec, examples


@dataclass(frozen=True)
class Persona:
    """Who speaks to whom: the character and, if known, the user and their relationship."""

    character: str
    character_description: str
    user: str = ""
    user_description: str = ""
    relationship: str = ""


def system_prompt(persona: Persona) -> str:
    return (
        f"You are a writer giving the voice assistant {persona.character} its lines. "
        f"{persona.character}: {persona.character_description}"
    )


def _variable_line(spec: TemplateSpec, slot: Slot, language: str) -> str:
    parts = []
    for name in slot.variables:
        variable = spec.variables[name]
        if isinstance(variable, IntVariable):
            kind = f"a number from {variable.min} to {variable.max}"
        elif isinstance(variable, OptionsVariable):
            words = ", ".join(o.word(language) for o in variable.options[:6])
            kind = f"one of: {words}"
        else:
            kind = "e.g. " + ", ".join(variable.examples[:3])
        parts.append(f"{name} is {variable.description} ({kind})")
    if slot.count:
        noun = f"the word '{slot.word}'" if slot.word else f"the word in {slot.name}"
        parts.append(f"{slot.fragment} says the number with {noun} in the right form")
    return f"- {slot.fragment}: " + "; ".join(parts)


def paraphrase_prompt(group: Group, persona: Persona, count: int, seed: int = 0) -> str:
    """Ask for ``count`` paraphrases of the group's lines as a bullet list."""
    spec = group.template
    language = get_language(group.language).name
    lines = [f"Write {count} different ways for {persona.character} to say this in {language}."]
    if persona.user:
        lines.append(
            f"{persona.character} is talking to {persona.user}. {persona.user_description}"
        )
        if persona.relationship:
            lines.append(persona.relationship)
    if spec.context:
        lines.append(f"Situation: {spec.context}")
    replies = spec.replies_to_in(group.language)
    if replies:
        lines.append("It is a reply to: " + " / ".join(f'"{r}"' for r in replies[:3]))
    if spec.must_express:
        lines.append(f"The reply must express: {spec.must_express}")
    lines.append("The lines now:")
    lines += [f"- {line.text}" for line in group.lines]
    slots = {s.fragment: s for line in group.lines for s in line.slots}
    if slots:
        lines.append(
            "Keep every placeholder in braces exactly once and unchanged "
            "(never translate or rename it):"
        )
        lines += [_variable_line(spec, s, group.language) for s in slots.values()]
        said = list(dict.fromkeys(examples(group, 3, seed)))
        lines.append("For example, the lines may be said as: " + " / ".join(said))
    else:
        lines.append("Do not add any placeholders in braces.")
    lines.append(f"Answer with a bullet list of {count} lines and nothing else.")
    return "\n".join(lines)


def case_prompt(line_text: str, slot: Slot, spec: TemplateSpec, language: str) -> str:
    """Ask which grammatical case the slot's word takes in the line."""
    cases = ", ".join(case_names(language))
    name = slot.name or slot.count
    variable = spec.variables[name]
    word = slot.word
    if not word and isinstance(variable, OptionsVariable):
        word = variable.options[0].word(language)
    what = f"a word such as '{word}'" if word else f"{variable.description}"
    text = (
        f'In the {get_language(language).name} sentence "{line_text}", the placeholder '
        f"{slot.fragment} stands for {what}. Which grammatical case must it take? "
        f"Answer with one word: {cases}."
    )
    if not slot.count:
        text += get_language(language).article_question
    return text
