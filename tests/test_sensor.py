"""The character sensor on an ephemeral instance: partitions, runs, broken and removed files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import dagster as dg
import pytest

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.definitions import defs

SENSOR = defs.get_repository_def().get_sensor_def("character_files")


def _tick(
    instance, characters: Path, users: Path, cursor: str | None, log: logging.Handler | None = None
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "characters": CharacterCatalog(characters_dir=str(characters), users_dir=str(users))
        },
    )
    if log is not None:
        context.log.addHandler(log)
    result = SENSOR(context)
    # What the daemon does with the result: add the requested partitions.
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _runs(result: dg.SensorResult) -> list[str]:
    return sorted(str(r.partition_key) for r in result.run_requests or [])


def _add(characters: Path, name: str, languages: str) -> None:
    text = (characters / "kiki.yaml").read_text().replace("[en, de]", languages)
    (characters / f"{name}.yaml").write_text(text)
    shutil.copytree(characters / "voices" / "kiki", characters / "voices" / name)
    (characters / f"{name}.yaml").write_text(text.replace("voices/kiki/", f"voices/{name}/"))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def sensor_log() -> _Records:
    """What the sensor logs (its logger is not in the logging tree that caplog sees)."""
    return _Records()


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def test_new_character_gets_a_partition_and_runs_for_its_languages_only(
    instance, config_dirs
) -> None:
    characters, users = config_dirs
    first = _tick(instance, characters, users, None)
    assert _runs(first) == ["boris|en", "boris|ru", "kiki|de", "kiki|en"]
    assert sorted(instance.get_dynamic_partitions("character")) == ["boris", "kiki"]
    assert all(r.run_key == str(r.partition_key) for r in first.run_requests)

    quiet = _tick(instance, characters, users, first.cursor)
    assert _runs(quiet) == [] and not quiet.dynamic_partitions_requests

    _add(characters, "zoe", "[ru]")
    third = _tick(instance, characters, users, quiet.cursor)
    assert [list(r.partition_keys) for r in third.dynamic_partitions_requests] == [["zoe"]]
    assert _runs(third) == ["zoe|ru"]


def test_broken_file_is_reported_and_others_still_added(instance, config_dirs, sensor_log) -> None:
    characters, users = config_dirs
    (characters / "broken.yaml").write_text("display_name: [unclosed\n")
    _add(characters, "zoe", "[de, fr]")  # unknown language: broken too
    result = _tick(instance, characters, users, None, sensor_log)
    assert _runs(result) == ["boris|en", "boris|ru", "kiki|de", "kiki|en"]
    errors = sensor_log.messages(logging.ERROR)
    assert any("broken.yaml" in m and "invalid YAML" in m for m in errors)
    assert any("zoe.yaml: languages.1: unknown language 'fr'" in m for m in errors)

    sensor_log.records.clear()
    again = _tick(instance, characters, users, result.cursor, sensor_log)
    assert sensor_log.messages(logging.ERROR) == []  # each problem is reported once

    # Fixed: the character is picked up on the next tick.
    (characters / "zoe.yaml").write_text(
        (characters / "zoe.yaml").read_text().replace("[de, fr]", "[de]")
    )
    fixed = _tick(instance, characters, users, again.cursor)
    assert _runs(fixed) == ["zoe|de"]


def test_removed_file_deletes_nothing_and_is_reported(instance, config_dirs, sensor_log) -> None:
    characters, users = config_dirs
    first = _tick(instance, characters, users, None)
    (characters / "boris.yaml").unlink()
    second = _tick(instance, characters, users, first.cursor, sensor_log)
    assert sorted(instance.get_dynamic_partitions("character")) == ["boris", "kiki"]
    assert not any(
        isinstance(r, dg.DeleteDynamicPartitionsRequest)
        for r in second.dynamic_partitions_requests or []
    )
    assert _runs(second) == []
    warnings = sensor_log.messages(logging.WARNING)
    assert any("'boris' has no file any more" in m for m in warnings)
