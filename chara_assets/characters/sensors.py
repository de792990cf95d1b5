"""The sensor that turns character files into partitions and first runs."""

import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

from ..partitions import CHARACTER_DIMENSION, CharacterLanguage
from .catalog import Catalog
from .resource import CharacterCatalog


@dataclass
class SyncPlan:
    """What one scan of the characters folder asks for (pure data, tested directly)."""

    new_partitions: list[str] = field(default_factory=list)
    runs: list[CharacterLanguage] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    cursor: str = ""


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_character_sync(catalog: Catalog, existing: set[str], cursor: str | None) -> SyncPlan:
    """Compare the folder with the instance's partitions and what earlier ticks did.

    New characters become partitions; a run is requested once per (character, language) the
    character declares; broken and removed files are reported once per change. Nothing is
    ever deleted.
    """
    state = json.loads(cursor) if cursor else {}
    requested: set[str] = set(state.get("requested", []))
    reported: dict[str, str] = dict(state.get("reported", {}))
    plan = SyncPlan()

    plan.new_partitions = sorted(set(catalog.characters) - existing)
    for name, character in sorted(catalog.characters.items()):
        for language in character.languages:
            pair = CharacterLanguage(name, language)
            if str(pair.key) not in requested:
                requested.add(str(pair.key))
                plan.runs.append(pair)

    current: dict[str, str] = {}
    for error in catalog.errors:
        marker = f"error:{error.file.name}"
        current[marker] = _fingerprint(str(error))
        if reported.get(marker) != current[marker]:
            plan.messages.append(("error", f"skipping a broken configuration file: {error}"))
    removed = existing - set(catalog.characters) - catalog.invalid_names
    for name in sorted(removed):
        marker = f"removed:{name}"
        current[marker] = "1"
        if marker not in reported:
            plan.messages.append(
                (
                    "warning",
                    f"character {name!r} has no file any more; its partitions and stored data "
                    "are kept (delete them in the UI if you mean to)",
                )
            )
    plan.cursor = json.dumps({"requested": sorted(requested), "reported": current})
    return plan


def build_character_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(
        name="character_files",
        job=job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=(
            "Scans the characters folder: new characters become partitions and get a run of "
            f"'{job.name}' for each language they speak. Broken or removed files are logged; "
            "nothing is deleted."
        ),
    )
    def character_files(
        context: dg.SensorEvaluationContext, characters: CharacterCatalog
    ) -> dg.SensorResult:
        catalog = characters.load()
        existing = set(context.instance.get_dynamic_partitions(CHARACTER_DIMENSION))
        plan = plan_character_sync(catalog, existing, context.cursor)
        for level, text in plan.messages:
            getattr(context.log, level)(text)
        requests = []
        if plan.new_partitions:
            requests.append(
                dg.AddDynamicPartitionsRequest(CHARACTER_DIMENSION, plan.new_partitions)
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=str(pair.key), partition_key=pair.key) for pair in plan.runs
            ],
            dynamic_partitions_requests=requests,
            cursor=plan.cursor,
        )

    return character_files
