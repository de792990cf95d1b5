"""The Dagster UI in a real browser: ``dagster dev`` on loopback and headless Debian Chromium.

``dagster_dev`` runs the project's workspace the way ``chara dev`` does, with its own storage
root, Dagster instance and copy of the demo characters, in its own process group (package
scope: it stops after the last browser test instead of idling through the rest of the suite);
``page`` is a fresh Chromium page on it. Screenshots and the server's log go to
``$CHARA_TEST_ARTIFACTS/browser`` (default ``test-artifacts/browser``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chara_resources.settings import DAGSTER_YAML, PROJECT_ROOT
from tests.dagster_dev import (
    LOAD_TIMEOUT_S,
    DagsterDev,
    migrate_instance,
    run_partitions,
    start_dagster_dev,
    stop_dagster_dev,
    stop_group,
    stop_sensor_after_first_tick,
    wait_until_loaded,
)

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
RUN_TIMEOUT_S = 240  # one run or backfill launched from the UI


def artifacts_dir() -> Path:
    root = os.environ.get("CHARA_TEST_ARTIFACTS")
    folder = (Path(root) if root else PROJECT_ROOT / "test-artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    migrate_instance(dagster, PROJECT_ROOT, env)
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
    dev = start_dagster_dev(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        log=artifacts_dir() / "dagster-dev.log",
        url=f"http://127.0.0.1:{port}",
        home=home,
        characters=characters,
    )
    try:
        wait_until_loaded(dev)
        dev.first_tick_partitions = run_partitions(dev, stop_sensor_after_first_tick(dev))
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
        stop_group(language)
        stop_dagster_dev(dev)
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
