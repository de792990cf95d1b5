"""The template sensor on an ephemeral instance: new, changed, removed and broken templates."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import dagster as dg
import pytest

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.definitions import defs
from chara_assets.paraphrase.resource import TemplateFolder
from chara_assets.paraphrase.sensors import TEMPLATES_TAG
from chara_resources.settings import PROJECT_ROOT

SENSOR = defs.get_repository_def().get_sensor_def("template_files")

NEW_TEMPLATE = """\
templates:
  - name: alarm_set
    context: The user set an alarm.
    variables:
      hour: {type: int, min: 0, max: 23, description: the hour of the alarm}
    lines:
      en: ["The alarm is set for {hour} o'clock."]
      ru: ["Будильник поставлен на {hour} часов."]
"""


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def folders(tmp_path: Path, config_dirs) -> tuple[Path, Path, Path]:
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    return templates, *config_dirs


def _tick(instance, folders, cursor, log: logging.Handler | None = None) -> dg.SensorResult:
    templates, characters, users = folders
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "templates": TemplateFolder(templates_dir=str(templates)),
            "characters": CharacterCatalog(characters_dir=str(characters), users_dir=str(users)),
        },
    )
    if log is not None:
        context.log.addHandler(log)
    return SENSOR(context)


def _runs(result: dg.SensorResult) -> dict[str, list[str]]:
    found = {}
    for request in result.run_requests or []:
        names = request.run_config["ops"]["paraphrase_sets"]["config"]["templates"]
        assert request.tags[TEMPLATES_TAG] == ",".join(names)
        found[str(request.partition_key)] = names
    return found


ALL = ["goodbye", "greeting", "timer_done", "timer_none", "timer_set", "weather_now"]


def test_new_template_file_runs_just_that_template_for_the_right_partitions(
    instance, folders
) -> None:
    first = _tick(instance, folders, None)
    # kiki speaks en, de; boris en, ru: every shipped template has all three languages.
    assert _runs(first) == {"boris|en": ALL, "boris|ru": ALL, "kiki|de": ALL, "kiki|en": ALL}
    assert _runs(_tick(instance, folders, first.cursor)) == {}

    (folders[0] / "alarms.yaml").write_text(NEW_TEMPLATE)  # en and ru only
    second = _tick(instance, folders, first.cursor)
    assert _runs(second) == {
        "boris|en": ["alarm_set"],
        "boris|ru": ["alarm_set"],
        "kiki|en": ["alarm_set"],
    }
    job = defs.resolve_job_def("paraphrase_job")
    for request in second.run_requests:
        assert request.job_name in (None, "paraphrase_job")
        validated = dg.validate_run_config(job, request.run_config)  # the job accepts it
        assert validated["ops"]["paraphrase_sets"]["config"]["templates"] == ["alarm_set"]
    assert _runs(_tick(instance, folders, second.cursor)) == {}


def test_a_changed_template_is_requested_again_and_only_it(instance, folders) -> None:
    first = _tick(instance, folders, None)
    path = folders[0] / "greetings.yaml"
    path.write_text(path.read_text().replace("See you later!", "See you soon!"))
    second = _tick(instance, folders, first.cursor)
    assert _runs(second) == {p: ["goodbye"] for p in ("boris|en", "boris|ru", "kiki|de", "kiki|en")}
    # A different version has a different run key, so the daemon does not drop the run.
    keys = {r.run_key for r in first.run_requests} | {r.run_key for r in second.run_requests}
    assert len(keys) == len(first.run_requests) + len(second.run_requests)


def test_removed_and_broken_templates_are_reported_never_requested(instance, folders) -> None:
    log = _Records()
    first = _tick(instance, folders, None)
    (folders[0] / "weather.yaml").unlink()
    timers = folders[0] / "timers.yaml"
    good = timers.read_text()
    timers.write_text(good.replace("{index} timer is done", "{index timer is done"))
    second = _tick(instance, folders, first.cursor, log)
    assert _runs(second) == {}
    warnings = log.messages(logging.WARNING)
    assert any("template 'weather_now' was removed" in m for m in warnings)
    assert any("timers.yaml, line" in m and "unbalanced brace" in m for m in warnings)
    # The broken file's templates are neither removed nor requested; fixed, and unchanged,
    # they need nothing either.
    assert not any("timer_set" in m and "removed" in m for m in warnings)
    log.records.clear()
    third = _tick(instance, folders, second.cursor, log)
    assert log.messages(logging.WARNING) == []  # each problem is reported once
    timers.write_text(good)
    assert _runs(_tick(instance, folders, third.cursor)) == {}


def test_a_new_character_gets_every_template(instance, folders) -> None:
    first = _tick(instance, folders, None)
    characters = folders[1]
    text = (characters / "kiki.yaml").read_text().replace("[en, de]", "[de]")
    (characters / "zoe.yaml").write_text(text)
    assert _runs(_tick(instance, folders, first.cursor)) == {}  # not a partition yet
    instance.add_dynamic_partitions("character", ["zoe"])
    assert _runs(_tick(instance, folders, first.cursor)) == {"zoe|de": ALL}


def test_the_cursor_survives_a_failing_tick(instance, folders) -> None:
    first = _tick(instance, folders, None)
    (folders[0] / "alarms.yaml").write_text(NEW_TEMPLATE)
    characters = folders[1]
    moved = characters.with_name("characters-away")
    characters.rename(moved)  # the tick cannot read the characters: it fails
    with pytest.raises(Exception, match="characters folder not found"):
        _tick(instance, folders, first.cursor)
    moved.rename(characters)
    # The daemon keeps the last good cursor: the next tick still sees the new template.
    assert _runs(_tick(instance, folders, first.cursor)) == {
        "boris|en": ["alarm_set"],
        "boris|ru": ["alarm_set"],
        "kiki|en": ["alarm_set"],
    }


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions("character", ["kiki", "boris"])
        yield inst


@pytest.mark.slow  # uploads through grammatron (6 s to import)
def test_the_requested_run_paraphrases_just_the_new_template(
    instance, folders, resources, chara_home
) -> None:
    """The sensor's run request, materialised as the daemon would run it (answers recorded in
    the work cache, so no LLM is asked): only the new template is paraphrased and uploaded."""
    from chara_assets.paraphrase.assets import (
        _persona,
        avatar_paraphrase_stats,
        avatar_paraphrases,
        paraphrase_sets,
        read_avatar_records,
    )
    from chara_assets.paraphrase.engine import paraphrase_job
    from chara_assets.paraphrase.templates import load_templates
    from chara_resources.avatar import AvatarResource, LocalAvatarStore
    from chara_resources.brainbox import BrainBoxResource
    from chara_resources.storage import load_manifest
    from chara_resources.work_cache import WorkCache

    templates, characters, users = folders
    first = _tick(instance, folders, None)
    (templates / "alarms.yaml").write_text(NEW_TEMPLATE)
    second = _tick(instance, folders, first.cursor)
    [request] = [r for r in second.run_requests if str(r.partition_key) == "kiki|en"]

    catalog = CharacterCatalog(characters_dir=str(characters), users_dir=str(users))
    brainbox = BrainBoxResource(url="http://127.0.0.1:9", retry_for_s=1, role_profile="embedded")
    call = brainbox.call("llm", "question")
    step = WorkCache(chara_home / "work" / "paraphrase_sets" / "kiki" / "en").step(
        "answers", {"llm": f"{call.decider}:{call.parameter}"}
    )
    [group] = load_templates(templates).templates["alarm_set"].groups("en")
    persona, _ = _persona(catalog.character("kiki"), catalog, "")
    job = paraphrase_job(group, persona, 5, 0)
    answer = "\n".join(
        f"- {line}"
        for line in [
            "Rise and shine at {hour} o'clock!",
            "Your alarm rings at {hour}.",
            "Alarm on: {hour} o'clock sharp.",
            "I'll wake you at {hour}, promise!",
            "{hour} o'clock it is, alarm set.",
        ]
    )
    step.put(step.key(job.cache_inputs(), job.label), job.cache_inputs(), result=answer)

    result = dg.materialize(
        [avatar_paraphrase_stats, paraphrase_sets, avatar_paraphrases],
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        resources={
            **resources,
            "characters": catalog,
            "templates": TemplateFolder(templates_dir=str(templates)),
            "avatar": AvatarResource(local_folder=str(chara_home / "avatar")),
            "brainbox": brainbox,
        },
    )
    assert result.success
    sets = load_manifest(chara_home / "assets" / "paraphrase_sets" / "kiki" / "en")
    assert {o.template for o in sets.outcomes} == {"alarm_set"}
    assert len(sets.paraphrases) == 5
    _, records = read_avatar_records(LocalAvatarStore(chara_home / "avatar"))
    assert sorted(r.original_template_name for r in records) == ["alarm_set"] * 5
