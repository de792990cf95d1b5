"""The Dagster UI in a real browser: ``dagster dev`` on loopback and headless Debian Chromium.

``dagster_dev`` runs the project's workspace the way ``chara dev`` does, with its own storage
root, Dagster instance and copy of the demo characters, in its own process group (package
scope: it stops after the last browser test instead of idling through the rest of the suite);
``page`` is a fresh Chromium page on it. Screenshots and the server's log go to
``$CHARA_TEST_ARTIFACTS/browser`` (default ``test-artifacts/browser``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from chara_resources.settings import DAGSTER_YAML, PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as the machine probe runs it: no sandbox (root), no GPU, and none of the background
# connections that a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOAD_TIMEOUT_S = 240  # code location LOADED; a contended 2-core machine takes 20-60 s
RUN_TIMEOUT_S = 240  # one run or backfill launched from the UI
STOP_GRACE_S = 15  # `dagster dev` has been seen to hang on SIGTERM here: SIGKILL after this
REPOSITORY = {"repositoryLocationName": "chara", "repositoryName": "__repository__"}


def artifacts_dir() -> Path:
    root = os.environ.get("CHARA_TEST_ARTIFACTS")
    folder = (Path(root) if root else PROJECT_ROOT / "test-artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def _location_state(dev: DagsterDev) -> str | None:
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


SENSOR_QUERY = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { id status ticks(limit: 10) { status runIds error {
  message } } } } } }"""


def _first_sensor_tick(dev: DagsterDev) -> dict | None:
    selector = {**REPOSITORY, "sensorName": "character_files"}
    state = dev.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]
    for tick in state["ticks"]:
        if tick["status"] == "FAILURE":
            pytest.fail(f"the character_files sensor failed: {tick['error']}")
        if tick["status"] == "SUCCESS":
            return {"state_id": state["id"], "run_ids": tick["runIds"]}
    return None


def _run_partitions(dev: DagsterDev, run_ids: list[str]) -> list[str]:
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


def _processes_with_env(name: str, value: str) -> list[int]:
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


def _stop_group(process: subprocess.Popen) -> None:
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


@pytest.fixture(scope="package")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    """``dagster dev`` on the project's workspace, its code location LOADED.

    While it starts, ``dagster asset materialize`` builds the English sentence pool and its
    phonemes (the embedded BrainBox starts for it and is stopped after), so that
    ``text_corpus`` can be materialised from the UI. Once up, the character sensor's first tick
    (the demo characters) is awaited and the sensor is then stopped: a new character's
    partition and runs then come only from what the tests do in the UI.
    """
    from chara_resources.embedded.launcher import EmbeddedBrainBox, free_port

    root = tmp_path_factory.mktemp("ui")
    home, dagster_home = root / "home", root / "dagster"
    characters, users = root / "characters", root / "users"
    shutil.copytree(PROJECT_ROOT / "characters", characters)
    shutil.copytree(PROJECT_ROOT / "users", users)
    home.mkdir()
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {
        **os.environ,
        "CHARA_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "CHARA_CHARACTERS": str(characters),
        "CHARA_USERS": str(users),
        "CHARA_BRAINBOX_URL": "",  # the embedded BrainBox, started on demand
        "CHARA_AVATAR_URL": "",
    }
    bin_dir = os.path.dirname(sys.executable)
    dagster = shutil.which("dagster", path=bin_dir) or "dagster"
    log = artifacts_dir() / "dagster-dev.log"

    # The instance's SQLite databases are created first: two processes creating them at once
    # leave two alembic heads, and the code location then never loads.
    subprocess.run(
        [dagster, "instance", "migrate"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        check=True,
        timeout=LOAD_TIMEOUT_S,
    )
    # The English pool and its phonemes, built while `dagster dev` starts (SQLite takes writers
    # from several processes; dagster dev's own processes do the same).
    language_log = artifacts_dir() / "language-en.log"
    with open(language_log, "wb") as log_file:
        language = subprocess.Popen(
            [
                dagster,
                "asset",
                "materialize",
                "-m",
                "chara_assets.definitions",
                "--select",
                "sentence_pool,pool_phonemes",
                "--partition",
                "en",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    port = free_port()
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(f"http://127.0.0.1:{port}", home, dagster_home, characters, process, log)
    try:
        dev.wait_for(
            "the code location 'chara' to be LOADED", lambda: _location_state(dev), LOAD_TIMEOUT_S
        )
        dev.graphql("mutation { setNuxSeen }")  # no first-visit modal over the pages
        tick = dev.wait_for(
            "the character sensor's first tick", lambda: _first_sensor_tick(dev), LOAD_TIMEOUT_S
        )
        stopped = dev.graphql(
            """mutation($id: String) { stopSensor(id: $id) { __typename
                 ... on StopSensorMutationResult { instigationState { status } } } }""",
            id=tick["state_id"],
        )["stopSensor"]
        assert stopped["instigationState"]["status"] == "STOPPED", stopped
        dev.first_tick_partitions = _run_partitions(dev, tick["run_ids"])
        try:
            language.wait(timeout=LOAD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"materialising the English pool took over {LOAD_TIMEOUT_S} s")
        assert language.returncode == 0, (
            f"materialising the English pool failed:\n{language_log.read_text()[-3000:]}"
        )
        EmbeddedBrainBox(home / "brainbox").stop()  # started by pool_phonemes; not needed now
        yield dev
    finally:
        _stop_group(language)
        _stop_group(process)
        # Run workers and code servers it left behind: found by our unique DAGSTER_HOME.
        for pid in _processes_with_env("DAGSTER_HOME", str(dagster_home)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        EmbeddedBrainBox(home / "brainbox").stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (./scripts/setup does)")
    for old in artifacts_dir().glob("*.png"):  # the folder shows this run's screenshots only
        old.unlink()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    """A fresh page (own context: no cookies or storage from other tests); a screenshot is
    saved when the test fails."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    new_page = context.new_page()
    yield new_page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        new_page.screenshot(path=artifacts_dir() / f"FAILED-{request.node.name}.png")
    context.close()
