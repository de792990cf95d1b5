"""The sensor that paraphrases new and changed templates, and only those."""

import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

from ..characters.catalog import Catalog
from ..characters.resource import CharacterCatalog
from ..partitions import CHARACTER_DIMENSION, CharacterLanguage
from .resource import TemplateFolder
from .templates import TemplateLibrary

TEMPLATES_TAG = "chara/templates"


@dataclass
class TemplatePlan:
    """What one scan of the templates folder asks for (pure data, tested directly)."""

    runs: dict[CharacterLanguage, list[str]] = field(default_factory=dict)  # -> template names
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    cursor: str = ""


def plan_template_sync(
    library: TemplateLibrary, catalog: Catalog, partitions: set[str], cursor: str | None
) -> TemplatePlan:
    """Compare the templates with what earlier ticks requested.

    A template is requested once per version (its fingerprint) for every character|language
    pair that should have it: the character exists as a partition, speaks the language, and the
    template has lines in it. A changed template is requested again; a new character gets every
    template. Templates of a broken file keep their state until the file is fixed; removed
    templates are reported once and never requested.
    """
    state = json.loads(cursor) if cursor else {}
    done: dict[str, dict] = dict(state.get("done", {}))  # name -> {fingerprint, partitions}
    files: dict[str, list[str]] = dict(state.get("files", {}))  # file name -> template names
    reported: dict[str, str] = dict(state.get("reported", {}))
    plan = TemplatePlan()

    current_files: dict[str, list[str]] = {}
    for name, spec in sorted(library.templates.items()):
        current_files.setdefault(spec.file.rsplit("/", 1)[-1], []).append(name)
        entry = done.get(name)
        if entry is None or entry["fingerprint"] != spec.fingerprint:
            entry = {"fingerprint": spec.fingerprint, "partitions": []}
        have = set(entry["partitions"])
        for character_name, character in sorted(catalog.characters.items()):
            if character_name not in partitions:
                continue  # the character sensor adds it; the next tick requests its runs
            for language in character.languages:
                pair = CharacterLanguage(character_name, language)
                if language in spec.lines and str(pair.key) not in have:
                    plan.runs.setdefault(pair, []).append(name)
                    have.add(str(pair.key))
        entry["partitions"] = sorted(have)
        done[name] = entry

    kept_by_broken = {n for f in library.broken_files for n in files.get(f, [])}
    current: dict[str, str] = {}
    for error in library.errors:
        marker = f"error:{error.file}"
        current[marker] = hashlib.sha256(str(error).encode()).hexdigest()[:16]
        if reported.get(marker) != current[marker]:
            plan.messages.append(("error", f"skipping a broken template file: {error}"))
    for name in sorted(set(done) - set(library.templates) - kept_by_broken):
        del done[name]
        plan.messages.append(
            (
                "warning",
                f"template {name!r} was removed; nothing is uploaded for it, and its "
                "paraphrases already on Avatar stay there",
            )
        )
    for broken in library.broken_files:
        if broken in files:
            current_files[broken] = files[broken]
    plan.cursor = json.dumps(
        {"done": done, "files": current_files, "reported": current}, sort_keys=True
    )
    return plan


def run_request(pair: CharacterLanguage, names: list[str], library: TemplateLibrary):
    versions = ",".join(f"{n}@{library.templates[n].fingerprint}" for n in sorted(names))
    digest = hashlib.sha256(versions.encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"{pair.key}:{digest}",
        partition_key=pair.key,
        run_config={"ops": {"paraphrase_sets": {"config": {"templates": sorted(names)}}}},
        tags={TEMPLATES_TAG: ",".join(sorted(names))[:1000]},
    )


def build_template_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(
        name="template_files",
        job=job,
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=60,
        description=(
            f"Scans the templates folder: a new or changed template gets a run of '{job.name}' "
            "for just that template, for every character|language that should have it. "
            "Removed templates and broken files are logged; nothing is uploaded for them."
        ),
    )
    def template_files(
        context: dg.SensorEvaluationContext,
        templates: TemplateFolder,
        characters: CharacterCatalog,
    ) -> dg.SensorResult:
        library = templates.load()
        catalog = characters.load()
        partitions = set(context.instance.get_dynamic_partitions(CHARACTER_DIMENSION))
        plan = plan_template_sync(library, catalog, partitions, context.cursor)
        for level, text in plan.messages:
            getattr(context.log, level)(text)
        return dg.SensorResult(
            run_requests=[
                run_request(pair, names, library)
                for pair, names in sorted(plan.runs.items(), key=lambda item: str(item[0].key))
            ],
            cursor=plan.cursor,
        )

    return template_files
