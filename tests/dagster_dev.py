"""``dagster dev`` (or ``chara dev``) on loopback in its own process group, driven through the
webserver's GraphQL API as the UI drives it; shared by ``tests/browser`` and
``tests/reliability``.

``start_dagster_dev`` starts it; ``wait_until_loaded`` waits for the code location;
``stop_dagster_dev`` stops its process group and every process it left behind (run workers,
code servers: found by their unique ``DAGSTER_HOME``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

LOAD_TIMEOUT_S = 240  # code location LOADED; a contended 2-core machine takes 20-60 s
STOP_GRACE_S = 15  # `dagster dev` has been seen to hang on SIGTERM here: SIGKILL after this
REPOSITORY = {"repositoryLocationName": "chara", "repositoryName": "__repository__"}


class GraphQLError(AssertionError):
    pass


@dataclass
class DagsterDev:
    """A running ``dagster dev``: its URL, its folders, and GraphQL to check what the UI did."""

    url: str
    home: Path  # CHARA_HOME: assets and work caches
    dagster_home: Path
    characters: Path  # CHARA_CHARACTERS: the copy the character catalog reads
    process: subprocess.Popen
    log: Path
    first_tick_partitions: list[str] = field(default_factory=list)

    def graphql(self, query: str, **variables: object) -> dict:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, what: str, check: Callable[[], object], timeout_s: float) -> object:
        """Poll ``check`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout_s
        delay = 0.25
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"dagster dev exited ({self.process.returncode}) while waiting for "
                    f"{what}; its log ends:\n{self.log_tail()}"
                )
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout_s:.0f} s waiting for {what}; "
                    f"dagster dev's log ends:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    # --- runs, as the UI launches and shows them ----------------------------------------------

    def launch_asset_run(self, assets: Sequence[str], partition: str) -> str:
        """Launch a run materialising ``assets`` for ``partition`` as the UI's *Materialize*
        does (``launchRun`` on the implicit asset job with the ``dagster/partition`` tag)."""
        data = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on InvalidSubsetError { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            params={
                "selector": {
                    **REPOSITORY,
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": [asset]} for asset in assets],
                },
                "mode": "default",
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
            },
        )["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun failed: {data}")
        return data["run"]["runId"]

    def run(self, run_id: str) -> dict:
        """``{status, events}`` of a run: its status and its engine and failure messages."""
        data = self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status
                 eventConnection(afterCursor: null) { events { __typename
                   ... on MessageEvent { message } } } } } }""",
            id=run_id,
        )["runOrError"]
        if data["__typename"] != "Run":
            raise GraphQLError(f"no run {run_id}: {data}")
        messages = [e.get("message", "") for e in data["eventConnection"]["events"]]
        return {"status": data["status"], "messages": messages}

    def wait_for_run(self, run_id: str, timeout_s: float, statuses=("SUCCESS",)) -> dict:
        """Wait until the run has ended; fail if it ended in a status not in ``statuses``."""
        ended = {"SUCCESS", "FAILURE", "CANCELED"}
        run = self.wait_for(
            f"run {run_id} to end",
            lambda: (r := self.run(run_id))["status"] in ended and r,
            timeout_s,
        )
        assert run["status"] in statuses, f"run {run_id} ended {run['status']}:\n" + "\n".join(
            run["messages"][-30:]
        )
        return run


def location_state(dev: DagsterDev) -> str | None:
    """``LOADED`` once the code location is usable; fails at once on a load error."""
    try:
        data = dev.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                 name loadStatus locationOrLoadError { __typename
                   ... on PythonError { message } } } } } }"""
        )
    except (httpx.HTTPError, ValueError):
        return None  # the webserver is not up yet
    entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
    entry = entries.get("chara")
    if entry is None or entry["loadStatus"] != "LOADED":
        return None
    error = entry["locationOrLoadError"]
    if error and error["__typename"] == "PythonError":
        pytest.fail(f"the code location failed to load: {error['message']}")
    return "LOADED"


def processes_with_env(name: str, value: str) -> list[int]:
    """Process ids whose environment has ``name=value`` (ours: a unique temporary folder)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after a grace period."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def migrate_instance(dagster: str, cwd: Path, env: Mapping[str, str]) -> None:
    """Create the instance's SQLite databases before ``dagster dev`` starts: two processes
    creating them at once leave two alembic heads, and the code location then never loads."""
    subprocess.run(
        [dagster, "instance", "migrate"],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        check=True,
        timeout=LOAD_TIMEOUT_S,
    )


def start_dagster_dev(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    url: str,
    home: Path,
    characters: Path,
) -> DagsterDev:
    """Start ``command`` (``dagster dev …`` or ``chara dev …``) in its own process group."""
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return DagsterDev(url, home, Path(env["DAGSTER_HOME"]), characters, process, log)


def wait_until_loaded(dev: DagsterDev, timeout_s: float = LOAD_TIMEOUT_S) -> None:
    dev.wait_for("the code location 'chara' to be LOADED", lambda: location_state(dev), timeout_s)
    dev.graphql("mutation { setNuxSeen }")  # no first-visit modal over the pages


def stop_dagster_dev(dev: DagsterDev) -> None:
    """Stop ``dagster dev`` and the run workers and code servers it left behind."""
    stop_group(dev.process)
    for pid in processes_with_env("DAGSTER_HOME", str(dev.dagster_home)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


SENSOR_QUERY = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { id status ticks(limit: 10) { status runIds error {
  message } } } } } }"""


def _first_sensor_tick(dev: DagsterDev, sensor: str) -> dict | None:
    selector = {**REPOSITORY, "sensorName": sensor}
    state = dev.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]
    for tick in state["ticks"]:
        if tick["status"] == "FAILURE":
            pytest.fail(f"the {sensor} sensor failed: {tick['error']}")
        if tick["status"] == "SUCCESS":
            return {"state_id": state["id"], "run_ids": tick["runIds"]}
    return None


def stop_sensor_after_first_tick(dev: DagsterDev, sensor: str = "character_files") -> list[str]:
    """Wait for the sensor's first successful tick, stop the sensor; the ids of the runs that
    tick requested."""
    tick = dev.wait_for(
        f"the {sensor} sensor's first tick",
        lambda: _first_sensor_tick(dev, sensor),
        LOAD_TIMEOUT_S,
    )
    stopped = dev.graphql(
        """mutation($id: String) { stopSensor(id: $id) { __typename
             ... on StopSensorMutationResult { instigationState { status } } } }""",
        id=tick["state_id"],
    )["stopSensor"]
    assert stopped["instigationState"]["status"] == "STOPPED", stopped
    return tick["run_ids"]


def run_partitions(dev: DagsterDev, run_ids: list[str]) -> list[str]:
    """The ``dagster/partition`` tags of these runs, sorted."""
    data = dev.graphql(
        """query($ids: [String!]) { runsOrError(filter: {runIds: $ids}) {
             ... on Runs { results { tags { key value } } } } }""",
        ids=run_ids,
    )
    return sorted(
        tag["value"]
        for run in data["runsOrError"]["results"]
        for tag in run["tags"]
        if tag["key"] == "dagster/partition"
    )
