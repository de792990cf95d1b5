"""Grammatical case of each variable in a German or Russian paraphrase, by majority vote.

A variable's word must take the case the sentence around it demands ("auf {count+unit}":
accusative). The LLM is asked several times per (line, variable); each answer is parsed to a
case (and, for German, the article the word takes: none, definite or indefinite), and the
majority wins. A tie or no parsable answer leaves the variable in its dictionary form.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from chara_resources.languages import LANGUAGES, PerLanguage, get_language

from .templates import Slot, TemplateSpec, TextVariable

# Case names an answer may use (English, the language's own, stems) -> our name; a language
# without them takes no case.
_CASE_WORDS = PerLanguage(lambda lang: lang.case_words)


def case_names(language: str) -> list[str]:
    return sorted(set(_CASE_WORDS[language].values()))


def parse_case(answer: str, language: str) -> str | None:
    """The one case an answer names, or None if it names none or several."""
    text = answer.casefold()
    found = {
        case
        for word, case in _CASE_WORDS[language].items()
        if re.search(r"(?<![^\W\d_])" + re.escape(word), text)
    }
    return found.pop() if len(found) == 1 else None


def parse_article(answer: str) -> str | None:
    """none / definite / indefinite, or None if the answer names none or several."""
    text = answer.casefold()
    found: set[str] = set()
    words = {w: k for lang in LANGUAGES.values() for w, k in lang.article_words.items()}
    for word, kind in sorted(words.items(), key=lambda kv: -len(kv[0])):
        if re.search(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])", text):
            found.add(kind)
            text = text.replace(word, " ")  # "indefinite" must not also count as "definite"
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class Vote:
    winner: str | None
    counts: dict[str, int]
    unparsable: int

    @property
    def reason(self) -> str:
        if self.winner:
            return f"{self.winner} ({self.counts[self.winner]} of {sum(self.counts.values())})"
        if not self.counts:
            return "no parsable answer"
        return "tie: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))


def majority(votes: Sequence[str | None]) -> Vote:
    """The most frequent parsed answer; a tie for first place gives no winner."""
    counts = Counter(v for v in votes if v is not None)
    unparsable = sum(1 for v in votes if v is None)
    ranked = counts.most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return Vote(None, dict(counts), unparsable)
    return Vote(ranked[0][0], dict(counts), unparsable)


def slots_needing_case(spec: TemplateSpec, slots: Sequence[Slot], language: str) -> list[Slot]:
    """Slots whose words change with case: all but free text (names stay as they are)."""
    if language not in _CASE_WORDS:
        return []
    return [s for s in slots if s.count or not isinstance(spec.variables.get(s.name), TextVariable)]


def grammar_rule(language: str, case: str | None, article: str | None = None):
    """The grammatron rule for a voted case (None: nothing to set)."""
    if case is None and article is None:
        return None
    grammar = get_language(language).grammar
    if grammar == "ru":
        from grammatron.grammars.ru import RuCase, RuGrammarRule

        return RuGrammarRule(case=RuCase[case.upper()]) if case else None
    if grammar != "de":
        raise ValueError(f"language {language!r}: no grammatron grammar for its cases")
    from grammatron.grammars.de import DeArticleType, DeCasus, DeGrammarRule

    casus = {
        "nominative": DeCasus.NOMINATIV,
        "genitive": DeCasus.GENITIV,
        "dative": DeCasus.DATIV,
        "accusative": DeCasus.AKKUSATIV,
    }.get(case or "")
    article_type = {
        "none": DeArticleType.STRONG,
        "definite": DeArticleType.WEAK,
        "indefinite": DeArticleType.MIXED,
    }.get(article or "")
    return DeGrammarRule(casus=casus, article_type=article_type)


_WORD_ANSWER = re.compile(r"[^\W\d_]+(?:[ '-][^\W\d_]+){0,2}")


def parse_translation(answer: str) -> str | None:
    """The word (at most three) an answer to "translate this word" gives, or None.

    Takes the first non-empty line, drops a bullet, quotes and a "Translation:" label, and
    accepts letters only (with inner spaces, hyphens, apostrophes).
    """
    for line in answer.splitlines():
        text = line.strip().lstrip("-*•>").strip()
        if not text:
            continue
        if ":" in text:
            text = text.rsplit(":", 1)[1].strip()
        text = text.strip("\"'“”„«»‘’`*.!,;()[] ")
        return text if _WORD_ANSWER.fullmatch(text) else None
    return None


def translation_prompt(value: str, description: str, language: str) -> str:
    name = get_language(language).name
    return (
        f'Translate the English word "{value}" ({description}) into {name}. Answer with the '
        f"{name} word only, in its dictionary form."
    )
