"""Accepted paraphrases as the records kaia-avatar's ParaphraseService loads.

Avatar keeps a pickled list of ``avatar.daemon.ParaphraseRecord`` per file; each record holds a
grammatron ``Template`` named like the assistant's template, with one line in one language.
Record ids are content hashes, so the same paraphrase always gets the same id: that is what
makes uploading idempotent.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .grammar import grammar_rule
from .templates import Part, Slot, TemplateSpec, parse_line, slot_dub

RECORD_PREFIX = "chara-"


@dataclass
class Paraphrase:
    """One accepted line for a template group, with the grammar chosen for its slots."""

    template: str
    variables_tag: str
    language: str
    character: str
    user: str | None
    text: str  # template syntax, e.g. "Your {index} timer runs {count+unit}!"
    grammar: dict[str, dict[str, str | None]] = field(default_factory=dict)  # fragment -> rule
    template_fingerprint: str = ""
    words: dict[str, dict[str, str]] = field(default_factory=dict)  # translated option words

    @property
    def record_id(self) -> str:
        identity = [self.character, self.language, self.user, self.template, self.variables_tag]
        identity += [self.text, sorted((k, sorted(v.items())) for k, v in self.grammar.items())]
        if self.words:  # (absent from older ids: the same paraphrase keeps its id)
            identity.append(sorted((k, sorted(v.items())) for k, v in self.words.items()))
        digest = hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()
        return f"{RECORD_PREFIX}{digest[:24]}"


def _ruled_slot(
    spec: TemplateSpec, slot: Slot, language: str, rule: dict | None, words: dict
) -> Any:
    dub = slot_dub(spec, slot, language, words)
    built = grammar_rule(language, (rule or {}).get("case"), (rule or {}).get("article"))
    if built is not None:
        dub = copy.deepcopy(dub)
        dub.grammar.set_grammar(language, built)
    return dub


def paraphrase_template(spec: TemplateSpec, paraphrase: Paraphrase) -> Any:
    """The grammatron Template of one paraphrase: the assistant's name, one line, the
    template's context, and the voted case on each slot."""
    from grammatron import ConstantDub, SequenceDub, Template

    language = paraphrase.language
    parts: tuple[Part, ...] = parse_line(paraphrase.text)
    elements = []
    for part in parts:
        if isinstance(part, Slot):
            rule = paraphrase.grammar.get(part.fragment)
            elements.append(_ruled_slot(spec, part, language, rule, paraphrase.words))
        else:
            elements.append(ConstantDub(part.text))
    template = Template(**{f"{language}_0": SequenceDub(tuple(elements))}).with_name(spec.name)
    if spec.context or spec.must_express:
        template = template.context(spec.context or None, reply_details=spec.must_express or None)
    return template


def build_records(spec_by_name: dict[str, TemplateSpec], paraphrases: Iterable[Paraphrase]):
    """``ParaphraseRecord`` objects for the paraphrases (kaia-avatar's own class)."""
    from avatar.daemon import ParaphraseRecord

    return [
        ParaphraseRecord(
            filename=p.record_id,
            template=paraphrase_template(spec_by_name[p.template], p),
            original_template_name=p.template,
            used_variables_tag=p.variables_tag,
            language=p.language,
            character=p.character,
            user=p.user,
        )
        for p in paraphrases
    ]


def check_records(records: list[Any], source: str) -> list[Any]:
    """Every element must be kaia-avatar's ParaphraseRecord; raises ValueError naming the file."""
    from avatar.daemon import ParaphraseRecord

    for i, record in enumerate(records):
        if not isinstance(record, ParaphraseRecord):
            raise ValueError(
                f"{source}: element {i} is a {type(record).__name__}, not a ParaphraseRecord; "
                "this is not a paraphrase list (nothing was uploaded)"
            )
    return records
