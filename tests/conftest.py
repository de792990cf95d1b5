"""Shared fixtures: a throwaway storage root, a copy of the demo characters, real audio, real
servers; and the test tiers (README, *Tests*).

Tiers: a test is ``slow`` when it lives in ``tests/contract``, ``tests/reliability`` or
``tests/browser`` (which also get ``reliability`` / ``browser``), when it uses a fixture of
``SLOW_FIXTURES`` (they start a real server), when its file is in ``SLOW_FILES``, or when its own
``@pytest.mark.slow`` says so. ``pytest -m "not slow"`` is the fast tier: engines and pure logic.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pytest
import soundfile as sf

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.partitions import CHARACTER_DIMENSION
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import CharaStorage, FolderIOManager

_SESSION_HOME = tempfile.mkdtemp(prefix="chara-tests-")
_TESTS = Path(__file__).resolve().parent

# Every test in these folders carries these marks.
FOLDER_MARKS = {
    "contract": ("slow",),
    "reliability": ("slow", "reliability"),
    "browser": ("slow", "browser"),
}
# Fixtures (of this file) that start a real server or load real models: their tests are slow.
SLOW_FIXTURES = frozenset({"server", "full_server", "_avatar_process", "avatar_server"})
# Files whose every test loads real models, trains or runs the real command in a process.
SLOW_FILES = {
    "test_model_llm.py": "SmolLM2 with llama-cpp",
    "test_model_recognition.py": "Whisper, pocketsphinx, Vosk",
    "test_model_speaker.py": "Resemblyzer",
    "test_model_speech.py": "Piper, espeak-ng and festival voices",
    "test_training.py": "Piper training on CPU on an embedded BrainBox",
    "test_training_warmstart.py": "torch and Piper's VITS model",
    "test_cli.py": "the chara command in its own process",
}


def pytest_configure(config: pytest.Config) -> None:
    # Tests never write into a real storage root, whatever CHARA_HOME the shell has.
    os.environ["CHARA_HOME"] = _SESSION_HOME
    config.pluginmanager.register(_FastTierGuard(), "chara-fast-tier-guard")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under a ``-m`` expression that no test of a marked folder can match (``not slow``), the
    folder is not even imported: its conftest and modules import kaia's servers, seconds of the
    fast tier. Any other expression (or none) collects it as usual."""
    folder_marks = FOLDER_MARKS.get(collection_path.name)
    expression = config.option.markexpr
    if folder_marks is None or collection_path.parent != _TESTS or not expression:
        return None
    try:
        from _pytest.mark.expression import Expression  # pytest's own -m parser

        matches = Expression.compile(expression).evaluate
    except Exception:  # another pytest: just collect
        return None
    declared = [line.split(":")[0].strip() for line in config.getini("markers")]
    others = [name for name in declared if name not in folder_marks]
    for chosen in itertools.product((False, True), repeat=len(others)):
        marks = set(folder_marks) | {n for n, on in zip(others, chosen, strict=True) if on}
        if matches(_matcher(marks)):
            return None  # some test there could match
    return True


def _matcher(marks: set[str]):
    return lambda name, /, **_kwargs: name in marks


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks by folder and by fixture (before ``-m`` deselects: the mark plugin runs later)."""
    for item in items:
        parts = item.path.resolve().relative_to(_TESTS).parts
        for mark in FOLDER_MARKS.get(parts[0], ()) if len(parts) > 1 else ():
            item.add_marker(mark)
        if parts[-1] in SLOW_FILES or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker("slow")


class _FastTierGuard:
    """A test that asks for a slow fixture at run time (``request.getfixturevalue``) without
    being marked slow fails before the server starts: the fast tier never starts one. A plugin
    rather than hooks of this file, whose hooks do not see session-scoped fixtures."""

    def __init__(self) -> None:
        self.running: pytest.Item | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        self.running = item
        try:
            return (yield)
        finally:
            self.running = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef) -> None:
        test, name = self.running, fixturedef.argname
        if name in SLOW_FIXTURES and test is not None and not test.get_closest_marker("slow"):
            pytest.fail(
                f"{test.nodeid} uses the fixture {name!r}, which starts a real server: mark the "
                "test (or the parameter) @pytest.mark.slow",
                pytrace=False,
            )


@pytest.fixture
def chara_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CHARA_HOME", str(home))
    return home


@pytest.fixture
def config_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the project's demo characters and users, free to modify."""
    characters = tmp_path / "characters"
    users = tmp_path / "users"
    shutil.copytree(PROJECT_ROOT / "characters", characters)
    shutil.copytree(PROJECT_ROOT / "users", users)
    return characters, users


@pytest.fixture
def resources(chara_home: Path, config_dirs: tuple[Path, Path]) -> dict[str, object]:
    storage = CharaStorage(root=str(chara_home))
    return {
        "storage": storage,
        "io_manager": FolderIOManager(storage=storage),
        "characters": CharacterCatalog(
            characters_dir=str(config_dirs[0]), users_dir=str(config_dirs[1])
        ),
    }


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions(CHARACTER_DIMENSION, ["kiki", "boris"])
        yield inst


def asset_runner(assets, instance, resources):
    """``run(asset, partition, **config)``: materialize one of ``assets`` (the others are read
    from storage), without raising on failure."""

    def run(asset, partition: str, **config) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            assets,
            selection=[asset],
            instance=instance,
            resources=resources,
            partition_key=partition,
            run_config=dg.RunConfig(config),
            raise_on_error=False,
        )

    return run


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error messages, causes included."""
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def speak(text: str, path: Path, voice: str = "en-us") -> Path:
    """Real speech from espeak-ng."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return path


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(path, data, rate)
    return path


FAULT_TEST_DECIDERS = [
    "tests.fault_deciders:EspeakPhonemizer",
    "chara_resources.embedded.deciders:NoFaceModel",
    "tests.fault_deciders:SleepyEcho",
]


@pytest.fixture
def server(tmp_path: Path):
    """A real BrainBox with the cheap deciders and the fault-test one; stopped by process id."""
    from chara_resources.embedded.launcher import EmbeddedBrainBox

    box = EmbeddedBrainBox(tmp_path / "brainbox", FAULT_TEST_DECIDERS)
    box.ensure_running()
    yield box
    box.stop()
    assert box.state() is None


@pytest.fixture(scope="session")
def full_server(tmp_path_factory: pytest.TempPathFactory):
    """The embedded BrainBox with every default decider (real models) and the fault-test one,
    shared by the session so that models load once."""
    from chara_resources.embedded.deciders import DEFAULT_DECIDERS
    from chara_resources.embedded.launcher import EmbeddedBrainBox

    box = EmbeddedBrainBox(
        tmp_path_factory.mktemp("full-brainbox"),
        [*DEFAULT_DECIDERS, "tests.fault_deciders:SleepyEcho"],
    )
    box.ensure_running()
    yield box
    box.stop()


@dataclass
class AvatarServer:
    url: str
    folder: Path  # its cache/ and resources/ folders
    process: subprocess.Popen


@pytest.fixture(scope="session")
def _avatar_process(tmp_path_factory: pytest.TempPathFactory):
    """The real kaia-avatar server on a free loopback port; stopped by its process id."""
    from chara_resources.embedded.launcher import free_port

    port, folder = free_port(), tmp_path_factory.mktemp("avatar")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.avatar_server", str(port), str(folder)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "the Avatar server exited at start"
        try:
            if httpx.get(f"{url}/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the Avatar server did not start"
        time.sleep(0.1)
    yield AvatarServer(url, folder, process)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def avatar_server(_avatar_process: AvatarServer) -> AvatarServer:
    """The session's Avatar server with empty cache and resources (it starts in ~5 s)."""
    for section in ("cache", "resources"):
        shutil.rmtree(_avatar_process.folder / section, ignore_errors=True)
        (_avatar_process.folder / section).mkdir()
    return _avatar_process


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A skipped test is a failure: ./scripts/setup installs everything every test needs, so a
    skip means a missing install step. CHARA_ALLOW_SKIPS=1 allows skips on a partial setup."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not os.environ.get("CHARA_ALLOW_SKIPS")
        and not hasattr(report, "wasxfail")
    ):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped ({reason}), but ./scripts/setup installs everything the tests need; "
            "set CHARA_ALLOW_SKIPS=1 to allow skips on a partial setup"
        )
