"""From an LLM's answer back to template lines: bullets, refusals, and strict variable restore.

A paraphrase is accepted only if it holds exactly the placeholders of one of the group's lines,
each exactly once. Harmless wrapping is repaired first (``"{index}"``, ``{{index}}``,
``{ index }``, ``{Index}``); anything else that drops, adds, renames or repeats a variable is
rejected with its reason. No Dagster, no network: tested on recorded answers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from chara_resources.languages import get_language, letter_script

from .templates import Line, Part, Slot, Text, parse_line

ACCEPTED = "accepted"
DROPPED = "dropped_variable"
INVENTED = "invented_variable"
RENAMED = "renamed_variable"
DUPLICATED = "duplicated_variable"
UNBALANCED = "unbalanced_braces"
COPY = "copy_of_original"
DUPLICATE = "duplicate"
ECHO = "echo_of_prompt"
WRONG_LANGUAGE = "wrong_language"
MERGED = "merged_lines"
TOO_LONG = "too_long"
REFUSAL = "refusal"
UNPARSABLE = "unparsable_answer"
LLM_ERROR = "llm_error"

REASONS = (
    ACCEPTED,
    DROPPED,
    INVENTED,
    RENAMED,
    DUPLICATED,
    UNBALANCED,
    COPY,
    DUPLICATE,
    ECHO,
    WRONG_LANGUAGE,
    MERGED,
    TOO_LONG,
    REFUSAL,
    UNPARSABLE,
    LLM_ERROR,
)

# "- x", "* x", "+ x", "• x", "1. x", "1) x", "(1) x", "a) x", "- [ ] x", "> - x", "**1.** x"
_BULLET = re.compile(
    r"""^\s*(?:>\s*)*
    (?:
        [-*+•●▪‣◦–—·]\s*(?:\[[ xX]\]\s*)?
      | \*\*\d{1,3}[.)]\*\*
      | \d{1,3}\s*[.):]
      | \(\d{1,3}\)
      | [a-z]\)
    )\s+""",
    re.VERBOSE,
)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("„", "“"), ("«", "»"), ("‘", "’"), ("`", "`")]
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry, |i can(?:no|')t|i am (?:unable|not able)|"
    r"i'm (?:unable|not able)|as an ai|es tut mir leid|ich kann (?:das |dir |ihnen )?nicht|"
    r"leider kann ich|извините|к сожалению|я не могу|простите)",
    re.IGNORECASE,
)
_PLACEHOLDER_WRAP = re.compile(r"""(\*\*|["'“”„«»‘’`*])(\{[^{}]*\})(\*\*|["'“”„«»‘’`*])""")
_DOUBLE = re.compile(r"\{\{([^{}]*)\}\}")
_SPACED = re.compile(r"\{\s*([^{}]*?)\s*\}")
_SIGN = re.compile(r"\s*([+/])\s*")


@dataclass
class Candidate:
    """One line the LLM offered, and what became of it."""

    text: str
    reason: str
    detail: str = ""
    parts: tuple[Part, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason == ACCEPTED


@dataclass
class Restored:
    """Everything one answer gave: candidates in order, or the answer-level reason."""

    candidates: list[Candidate] = field(default_factory=list)
    answer_reason: str | None = None  # refusal / unparsable answer

    @property
    def accepted(self) -> list[Candidate]:
        return [c for c in self.candidates if c.ok]

    def reasons(self) -> Counter[str]:
        found = Counter(c.reason for c in self.candidates)
        if self.answer_reason:
            found[self.answer_reason] += 1
        return found


def strip_bullet(line: str) -> str | None:
    """The item text of a markdown bullet line, or None if the line is not a bullet."""
    match = _BULLET.match(line)
    if not match:
        return None
    return line[match.end() :].strip()


def strip_wrapping(text: str) -> str:
    """Remove quotes or bold markers that wrap the whole item."""
    text = text.strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        if text.startswith("**") and text.endswith("**") and len(text) > 4:
            text, changed = text[2:-2].strip(), True
            continue
        for left, right in _QUOTES:
            if text.startswith(left) and text.endswith(right) and len(text) > 2:
                inner = text[1:-1]
                if left not in inner and right not in inner:
                    text, changed = inner.strip(), True
                    break
    return text


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text))


def split_answer(answer: str) -> tuple[list[str], str | None]:
    """The items of an answer, or the reason it has none.

    Bulleted lines are the items; other lines (preambles, notes) are ignored. Without any
    bullet, plain lines are the items, except those that end with ':' (a preamble). A refusal
    or an empty answer gives no items and its reason.
    """
    lines = [line for line in answer.replace("\r", "\n").split("\n") if line.strip()]
    if not lines:
        return [], UNPARSABLE
    items = [item for line in lines if (item := strip_bullet(line)) is not None]
    if not items:
        if is_refusal(lines[0]):
            return [], REFUSAL
        items = [line.strip() for line in lines if not line.rstrip().endswith(":")]
        if len(items) > 1 and len(lines) > 12:
            return [], UNPARSABLE  # prose, not a list
    items = [strip_wrapping(item) for item in items]
    items = [item for item in items if item]
    return (items, None) if items else ([], UNPARSABLE)


def normalize_placeholders(text: str, names: Iterable[str]) -> str:
    """Repair harmless variants of placeholders: quotes or bold around them, doubled braces,
    inner spaces, a different letter case of a known variable name."""
    text = _DOUBLE.sub(r"{\1}", text)
    text = _SPACED.sub(lambda m: "{" + _SIGN.sub(r"\1", m.group(1)) + "}", text)
    for _ in range(2):  # "**'{x}'**"
        text = _PLACEHOLDER_WRAP.sub(r"\2", text)
    by_fold = {}
    for name in names:
        by_fold.setdefault(name.casefold(), set()).add(name)

    def fix_case(match: re.Match) -> str:
        pieces = re.split(r"([+/])", match.group(1))
        fixed = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0 and piece not in by_fold.get(piece.casefold(), {piece}):
                options = by_fold.get(piece.casefold(), set())
                piece = next(iter(options)) if len(options) == 1 else piece
            fixed.append(piece)
        return "{" + "".join(fixed) + "}"

    return re.sub(r"\{([^{}]*)\}", fix_case, text)


def _comparable(text: str) -> str:
    """Letters, digits and braces only, case-folded: for spotting copies."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum() or ch in "{}+/")


def restore_line(text: str, lines: Sequence[Line]) -> Candidate:
    """Check one offered line against the group's lines (all share one variable set)."""
    names = {v for line in lines for v in line.variables}
    fixed = normalize_placeholders(text, names)
    try:
        parts = parse_line(fixed)
    except ValueError as exc:
        problem = str(exc)
        reason = UNBALANCED if "unbalanced" in problem else INVENTED
        return Candidate(text, reason, problem)
    slots = [p for p in parts if isinstance(p, Slot)]
    offered = Counter(s.fragment for s in slots)
    repeated = sorted(f for f, n in offered.items() if n > 1)
    if repeated:
        return Candidate(text, DUPLICATED, f"{repeated[0]} appears {offered[repeated[0]]} times")
    best: tuple[int, list[str], list[str]] | None = None
    for line in lines:
        expected = {s.fragment for s in line.slots}
        missing = sorted(expected - set(offered))
        unknown = sorted(set(offered) - expected)
        if not missing and not unknown:
            return Candidate(text, ACCEPTED, parts=_merge_text(parts))
        score = len(missing) + len(unknown)
        if best is None or score < best[0]:
            best = (score, missing, unknown)
    assert best is not None
    _, missing, unknown = best
    if missing and unknown:
        return Candidate(text, RENAMED, f"{', '.join(unknown)} instead of {', '.join(missing)}")
    if unknown:
        return Candidate(text, INVENTED, f"{', '.join(unknown)} is not a variable of the template")
    return Candidate(text, DROPPED, f"{', '.join(missing)} is missing")


def _merge_text(parts: Sequence[Part]) -> tuple[Part, ...]:
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + part.text)
        else:
            merged.append(part)
    return tuple(merged)


def restore_answer(
    answer: str,
    lines: Sequence[Line],
    *,
    known: Iterable[str] = (),
    max_length: int | None = None,
    prompt: str = "",
    speaker: str = "",
    language: str = "",
) -> Restored:
    """Every line an LLM answer offers for a group, accepted or rejected with its reason.

    ``known``: lines already had (the originals, earlier paraphrases): copies are rejected.
    ``max_length``: longer lines are rejected (default: three times the longest original
    line plus 40 characters). ``prompt``: a line that only repeats a piece of the prompt
    (small models echo "Situation: ...") is rejected. ``speaker``: a leading "Kiki:" is
    removed. ``language``: a line in the wrong script is rejected (see :func:`wrong_script`).
    """
    items, reason = split_answer(answer)
    restored = Restored(answer_reason=reason)
    limit = max_length or 3 * max(len(line.text) for line in lines) + 40
    originals = {_comparable(line.text) for line in lines}
    seen = {_comparable(k) for k in known}
    # Whole lines of the prompt, also without their "Label:" (small models echo them).
    echoes = set()
    for prompt_line in prompt.splitlines():
        echoes.add(_comparable(prompt_line))
        echoes.add(_comparable(prompt_line.partition(":")[2]))
    echoes.discard("")
    label = (
        re.compile(r"^\s*" + re.escape(speaker) + r"\s*:\s*", re.IGNORECASE) if speaker else None
    )
    for item in items:
        if label is not None:
            item = label.sub("", item, count=1).strip() or item
        if is_refusal(item):
            restored.candidates.append(Candidate(item, REFUSAL))
            continue
        if len(item) > limit:
            restored.candidates.append(Candidate(item, TOO_LONG, f"{len(item)} > {limit}"))
            continue
        if len(_INLINE_NUMBER.findall(item)) >= 2:
            restored.candidates.append(Candidate(item, MERGED, "a numbered list in one line"))
            continue
        candidate = restore_line(item, lines)
        if candidate.ok and language and (problem := wrong_script(candidate.parts, language)):
            candidate = Candidate(item, WRONG_LANGUAGE, problem)
        if candidate.ok:
            text = _comparable(candidate_text(candidate))
            if text in originals:
                candidate = Candidate(item, COPY)
            elif text in echoes:
                candidate = Candidate(item, ECHO)
            elif prompt and _PROMPT_WORDING.search(item):
                candidate = Candidate(item, ECHO, "repeats the prompt's wording")
            elif text in seen:
                candidate = Candidate(item, DUPLICATE)
            else:
                seen.add(text)
        restored.candidates.append(candidate)
    return restored


# The prompt's own labels inside an offered line: SmolLM2 wrote 'Kiki is speaking to Sam,
# "Situation: The user is leaving.' and 'The response must express a farewell."' (prompts are
# in English whatever the language of the lines).
_PROMPT_WORDING = re.compile(
    r"situation\s*:|must express|it is a reply to|placeholder|bullet list", re.IGNORECASE
)
_INLINE_NUMBER = re.compile(r"(?:^|\s)\d{1,2}[.)](?:\s|$)")


def wrong_script(parts: Sequence[Part], language: str) -> str | None:
    """Why the line's own words (placeholders aside) cannot be in ``language``, or None.

    At least the language's ``min_script_share`` of the letters must be in its script (Russian:
    80 % Cyrillic; German and English: all Latin). (Telling German from English needs more
    than the script; that is left to the LLM.)
    """
    letters = [ch for p in parts if isinstance(p, Text) for ch in p.text if ch.isalpha()]
    if not letters:
        return None
    lang = get_language(language)
    foreign = Counter(s for s in map(letter_script, letters) if s != lang.script)
    own = len(letters) - foreign.total()
    if own >= lang.min_script_share * len(letters):
        return None
    if lang.min_script_share < 1:
        return f"only {own} of {len(letters)} letters are {lang.script.title()}"
    return ", ".join(f"{n} {script.title()} letters" for script, n in sorted(foreign.items()))


def candidate_text(candidate: Candidate) -> str:
    """The accepted line in template syntax (placeholders repaired)."""
    return parts_text(candidate.parts)


def parts_text(parts: Sequence[Part]) -> str:
    return "".join(
        p.fragment if isinstance(p, Slot) else p.text.replace("{", "{{").replace("}", "}}")
        for p in parts
    )
