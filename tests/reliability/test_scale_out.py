"""Two BrainBox servers behind one resource: runs spread over them by partition key, a run tag
sends a run to a named one, and the example instance configurations load as Dagster reads
them (docs/scale-out.md)."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from chara_resources.brainbox import ROUTE_TAG, BrainBoxResource, parse_servers
from chara_resources.embedded.launcher import EmbeddedBrainBox
from chara_resources.settings import PROJECT_ROOT

from .conftest import materialize

CLONER = ["chara_resources.embedded.deciders:StandInVoice"]


def _registered(box: EmbeddedBrainBox) -> dict[str, int]:
    """Cloner registrations per voice id, read from the server's own database."""
    counts: dict[str, int] = {}
    with sqlite3.connect(box.folder / "data" / "brainbox.db") as db:
        for (arguments,) in db.execute(
            "select arguments from brain_box_jobs where method = 'train'"
        ):
            voice = pickle.loads(arguments)["voice"]  # our own test server's database
            counts[voice] = counts.get(voice, 0) + 1
    return counts


def _partitions(counts: dict[str, int]) -> set[str]:
    """'chara-kiki-en-<sha>' -> 'kiki|en'"""
    return {"|".join(voice.split("-")[1:3]) for voice in counts}


@pytest.fixture
def two_servers(tmp_path: Path):
    boxes = {name: EmbeddedBrainBox(tmp_path / name, CLONER) for name in ("gpu1", "gpu2")}
    urls = {name: box.ensure_running() for name, box in boxes.items()}
    yield boxes, ",".join(f"{name}={url}" for name, url in urls.items())
    for box in boxes.values():
        box.stop()


def test_work_spreads_over_two_brainboxes(two_servers, config_dirs, tmp_path: Path) -> None:
    boxes, url = two_servers
    home = tmp_path / "home"
    pair = {"brainbox": BrainBoxResource(url=url, role_profile="embedded")}
    partitions = ("kiki|en", "kiki|de", "boris|ru")
    for partition in partitions:
        assert materialize(home, config_dirs, "", "voice_sample", partition).success
        result = materialize(home, config_dirs, "", "cloner_voice", partition, resources=pair)
        assert result.success
    # Each partition went to one server, as its key hashes (kiki|en: gpu2; the others: gpu1).
    gpu1, gpu2 = _registered(boxes["gpu1"]), _registered(boxes["gpu2"])
    assert _partitions(gpu1) == {"kiki|de", "boris|ru"} and _partitions(gpu2) == {"kiki|en"}
    assert all(n == 1 for n in [*gpu1.values(), *gpu2.values()])

    # A run tag sends a run to a named server (here: kiki|de again, from nothing, on gpu2).
    for part in ("assets", "work"):
        shutil.rmtree(home / part / "cloner_voice" / "kiki" / "de")
    tagged = materialize(
        home, config_dirs, "", "cloner_voice", "kiki|de", resources=pair, tags={ROUTE_TAG: "gpu2"}
    )
    assert tagged.success
    assert _partitions(_registered(boxes["gpu2"])) == {"kiki|en", "kiki|de"}
    assert _registered(boxes["gpu1"]) == gpu1  # nothing more on gpu1

    unknown = materialize(
        home, config_dirs, "", "cloner_voice", "boris|ru", resources=pair, tags={ROUTE_TAG: "gpu3"}
    )
    assert not unknown.success
    message = str(unknown.get_step_failure_events()[0].step_failure_data.error)
    assert "run tag chara/brainbox='gpu3' names no configured BrainBox" in message
    assert "configured: gpu1, gpu2" in message


def test_server_lists_are_checked() -> None:
    assert parse_servers("http://h:8090") == {"default": "http://h:8090"}
    assert parse_servers("http://h:8090/?a=b") == {"default": "http://h:8090/?a=b"}
    assert parse_servers("a=http://x:1, b=http://y:2") == {"a": "http://x:1", "b": "http://y:2"}
    with pytest.raises(ValueError, match="name each one"):
        parse_servers("http://x:1,http://y:2")
    with pytest.raises(ValueError, match="BrainBox server name 'GPU 1'"):
        parse_servers("GPU 1=http://x:1,b=http://y:2")


@pytest.mark.parametrize(
    ("name", "pool_limit", "tag_limits"),
    [("dagster.yaml", 1, []), ("dagster-two-brainboxes.yaml", 2, [ROUTE_TAG])],
)
def test_example_instance_configurations_load(
    tmp_path: Path, name: str, pool_limit: int, tag_limits: list[str]
) -> None:
    shutil.copy(PROJECT_ROOT / "examples" / name, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == pool_limit
        queue = config.run_queue_config
        assert queue.max_concurrent_runs >= 2
        assert [limit["key"] for limit in queue.tag_concurrency_limits or []] == tag_limits
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        # A killed run's pool slots are freed by the daemon (docs/reliability.md).
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
