"""The storage root and the Dagster instance chara sets up."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from chara_resources.settings import chara_home, ensure_dagster_home


def test_dagster_home_defaults_under_the_storage_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHARA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = ensure_dagster_home()
    assert home == chara_home() / "dagster" == tmp_path / "home" / "dagster"
    instance = dg.DagsterInstance.get()
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert instance.telemetry_enabled is False
    # The daemon frees the pool slots a killed run still holds (docs/reliability.md).
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
    assert instance.run_monitoring_poll_interval_seconds == 15
    instance.add_dynamic_partitions("character", ["kiki"])
    # A second start finds the same instance and partitions, and keeps an edited dagster.yaml.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n# mine\n")
    assert ensure_dagster_home() == home
    assert (home / "dagster.yaml").read_text().endswith("# mine\n")
    assert dg.DagsterInstance.get().get_dynamic_partitions("character") == ["kiki"]


def test_an_explicit_dagster_home_is_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    assert ensure_dagster_home() == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "dagster.yaml").exists()
