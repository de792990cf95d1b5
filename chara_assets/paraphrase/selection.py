"""What to paraphrase: existing paraphrases and their use on Avatar decide (DESIGN §6)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .templates import Group


@dataclass
class Usage:
    """Paraphrases Avatar has for one (template, variable set), and how often they were said."""

    existing: int = 0
    seen: int = 0

    @property
    def priority(self) -> int:
        """max(0, existing - seen): low for heavily used, thinly covered templates (first)."""
        return max(0, self.existing - self.seen)


def usage_by_group(
    records: Iterable[Any],
    feedback: Mapping[str, Mapping[str, Any]],
    *,
    character: str,
    language: str,
    user: str | None,
) -> dict[tuple[str, str], Usage]:
    """(template name, variables tag) -> Usage, over the records of this character, language
    and user (records for any user count too: the service falls back to them)."""
    usage: dict[tuple[str, str], Usage] = {}
    for record in records:
        if record.character != character or record.language != language:
            continue
        if record.user is not None and record.user != user:
            continue
        key = (record.original_template_name, record.used_variables_tag)
        entry = usage.setdefault(key, Usage())
        entry.existing += 1
        seen = (feedback.get(record.filename) or {}).get("seen", 0)
        entry.seen += seen if isinstance(seen, int) and seen > 0 else 0
    return usage


def choose_groups(
    groups: Iterable[Group],
    usage: Mapping[tuple[str, str], Usage],
    *,
    upper_count: int,
    explicit: Iterable[str] = (),
) -> tuple[list[Group], list[tuple[Group, str]]]:
    """The groups to paraphrase, most needed first, and the skipped ones with their reason.

    A group is taken when it has at most ``upper_count`` paraphrases (0: only new ones);
    templates named in ``explicit`` (changed files) are taken whatever they have. Order:
    ``max(0, existing - seen)`` ascending, then the most seen, then by name.
    """
    named = set(explicit)
    chosen: list[Group] = []
    skipped: list[tuple[Group, str]] = []
    for group in groups:
        found = usage.get((group.template.name, group.tag), Usage())
        if group.template.name in named or found.existing <= upper_count:
            chosen.append(group)
        else:
            skipped.append((group, f"has {found.existing} paraphrases (more than {upper_count})"))

    def order(group: Group) -> tuple:
        found = usage.get((group.template.name, group.tag), Usage())
        return (found.priority, -found.seen, group.template.name, group.tag)

    return sorted(chosen, key=order), skipped


def batches(items: list, size: int) -> list[list]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]
