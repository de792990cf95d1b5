"""BrainBoxResource inside real Dagster materializations: results, restarts, cancellation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chara_resources.embedded.launcher import free_port
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import load_manifest

from .sample_assets import EchoConfig, echo_brainbox, echo_items, run
from .test_brainbox import _jobs_in_database


def test_asset_runs_a_batch_and_reuses_it(server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    brainbox = echo_brainbox(server.running_url())
    first = run(echo_items, home, EchoConfig(items=4), brainbox=brainbox)
    assert first.success
    stored = load_manifest(home / "assets" / "echo_items" / "kiki" / "en")
    assert stored.values == [f"ITEM {i}" for i in range(4)]
    second = run(echo_items, home, EchoConfig(items=4), brainbox=brainbox)
    metadata = second.asset_materializations_for_node("echo_items")[0].metadata
    assert (metadata["submitted"].value, metadata["reused"].value) == (0, 4)
    assert _jobs_in_database(server) == 4


def test_unreachable_brainbox_fails_the_asset_clearly(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(
        echo_items,
        tmp_path / "home",
        EchoConfig(items=2),
        brainbox=echo_brainbox(url, retry_for_s=1.0),
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert f"BrainBox at {url} is not reachable" in error.message + str(error.cause)


def test_cancelled_run_cancels_its_batch_on_the_server(server, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sample_assets", "echo", "--home", str(tmp_path / "home")]
        + ["--log", str(tmp_path / "log"), "--items", "20", "--delay", "0.3"]
        + ["--brainbox", server.running_url()],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while _jobs_in_database(server, "success = 1") < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)  # how Dagster interrupts a run's step
    process.wait(timeout=30)
    time.sleep(0.2)
    cancelled = _jobs_in_database(server, "error = 'Cancelled'")
    done = _jobs_in_database(server, "success = 1 and error is null")
    assert cancelled >= 15 and done + cancelled >= 19
    time.sleep(1.5)  # nothing left is being worked on: at most the job already running ends
    assert _jobs_in_database(server, "success = 1 and error is null") <= done + 1
