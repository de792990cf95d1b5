"""Fixtures of the reliability suite: a prepared voice chain, runs in killable processes, and
counts read from the BrainBox server's own job database."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.definitions import defs
from chara_assets.paraphrase.resource import TemplateFolder
from chara_assets.voice.corpus_assets import ReviewedCorpusConfig, TextCorpusConfig
from chara_resources.avatar import AvatarResource
from chara_resources.brainbox import BrainBoxResource
from chara_resources.embedded.launcher import EmbeddedBrainBox
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import CharaStorage, FolderIOManager

LINES = 6  # lines of the prepared voice chain: small, so that the suite stays quick


def jobs(box: EmbeddedBrainBox, where: str = "1 = 1") -> int:
    """Jobs the server holds, read from its own database (not through chara's client)."""
    with sqlite3.connect(box.folder / "data" / "brainbox.db") as db:
        return db.execute(f"select count(*) from brain_box_jobs where {where}").fetchone()[0]


def materialize(
    home: Path, config_dirs: tuple[Path, Path], brainbox_url: str, asset: str, partition: str,
    **extra,
) -> dg.ExecuteInProcessResult:  # fmt: skip
    """One asset partition of chara's definitions, in this process, on storage ``home``."""
    storage = CharaStorage(root=str(home))
    resources = {
        "storage": storage,
        "io_manager": FolderIOManager(storage=storage),
        "characters": CharacterCatalog(
            characters_dir=str(config_dirs[0]), users_dir=str(config_dirs[1])
        ),
        "brainbox": BrainBoxResource(url=brainbox_url, role_profile="embedded"),
        "avatar": AvatarResource(url="", local_folder=str(home / "avatar")),
        "templates": TemplateFolder(),
        **extra.pop("resources", {}),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("character", ["kiki", "boris"])
        return dg.materialize(
            list(defs.assets),
            selection=[asset],
            instance=instance,
            resources=resources,
            partition_key=partition,
            raise_on_error=False,
            **extra,
        )


@dataclass
class Run:
    """A run of ``tests.reliability.runner`` in its own process."""

    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout_s: float = 240) -> int:
        return self.process.wait(timeout=timeout_s)


def spawn(
    asset: str,
    partition: str,
    home: Path,
    config_dirs: tuple[Path, Path],
    log: Path,
    *,
    brainbox: str = "",
    avatar: str = "",
    templates: Path | None = None,
    config: dict | None = None,
    preexec_fn: Callable[[], None] | None = None,
    instance: Path | None = None,
) -> Run:
    command = [sys.executable, "-m", "tests.reliability.runner", asset, partition]
    command += ["--home", str(home), "--characters", str(config_dirs[0])]
    command += ["--users", str(config_dirs[1]), "--brainbox", brainbox, "--avatar", avatar]
    if templates is not None:
        command += ["--templates", str(templates)]
    if config:
        command += ["--config", json.dumps(config)]
    if instance is not None:
        command += ["--instance", str(instance)]
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn
    )
    out.close()
    return Run(process, log)


def wait_for(
    what: str,
    condition: Callable[[], bool],
    run: Run | None,
    timeout_s: float = 180,
    poll_s: float = 0.05,
) -> None:
    """Poll ``condition`` until true; fail if ``run`` ends first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if run is not None and run.process.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{run.output()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def work_items(home: Path, *parts: str) -> int:
    """Finished items of a work-cache step (records; files beside them are not counted)."""
    folder = home.joinpath("work", *parts)
    return len(list(folder.glob("*.json"))) if folder.exists() else 0


@pytest.fixture(scope="session")
def voice_home(tmp_path_factory: pytest.TempPathFactory, full_server) -> Path:
    """A storage root where kiki|en is ready for cloned_audio: pool, phonemes, a reviewed
    corpus of LINES lines, the voice sample, augmented lines and the registered voice.
    Tests copy it (``copy_home``), never change it."""
    home = tmp_path_factory.mktemp("voice-home")
    config_dirs = _config_copy(tmp_path_factory.mktemp("voice-config"))
    url = full_server.running_url()
    steps = [
        ("sentence_pool", "en", None),
        ("pool_phonemes", "en", None),
        ("text_corpus", "kiki|en", TextCorpusConfig(target=LINES)),
        ("reviewed_corpus", "kiki|en", ReviewedCorpusConfig(auto_accept=True)),
        ("voice_sample", "kiki|en", None),
        ("augmented_lines", "kiki|en", None),
        ("cloner_voice", "kiki|en", None),
    ]
    for asset, partition, config in steps:
        run_config = dg.RunConfig({asset: config}) if config else None
        result = materialize(home, config_dirs, url, asset, partition, run_config=run_config)
        assert result.success, asset
    return home


def _config_copy(folder: Path) -> tuple[Path, Path]:
    characters, users = folder / "characters", folder / "users"
    shutil.copytree(PROJECT_ROOT / "characters", characters)
    shutil.copytree(PROJECT_ROOT / "users", users)
    return characters, users


@pytest.fixture
def copy_home(tmp_path: Path) -> Callable[[Path], Path]:
    def copy(source: Path) -> Path:
        target = tmp_path / "home"
        shutil.copytree(source, target, symlinks=True)
        return target

    return copy


# trimmed_clips on LINES lines: one voicing per line, and no acceptance floor (the stand-in
# voice and the small recogniser reject some lines; these tests are about faults, not quality)
TRIM_CONFIG = {"max_attempts": 1, "min_acceptance": 0.0, "warn_acceptance": 0.0}


@pytest.fixture(scope="session")
def clips_home(tmp_path_factory, voice_home: Path, full_server) -> Path:
    """``voice_home`` plus cloned_audio of kiki|en."""
    home = tmp_path_factory.mktemp("clips-home") / "home"
    shutil.copytree(voice_home, home)
    config_dirs = _config_copy(tmp_path_factory.mktemp("clips-config"))
    result = materialize(home, config_dirs, full_server.running_url(), "cloned_audio", "kiki|en")
    assert result.success
    return home


class AvatarProcess:
    """The real kaia-avatar server in its own process, to be killed and started again on the
    same port and folder (the session's ``avatar_server`` fixture is shared: never killed)."""

    def __init__(self, folder: Path) -> None:
        from chara_resources.embedded.launcher import free_port

        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import httpx

        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.avatar_server", str(self.port), str(self.folder)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "the Avatar server exited at start"
            try:
                if httpx.get(f"{self.url}/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Avatar server did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        import os
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def own_avatar(tmp_path: Path):
    avatar = AvatarProcess(tmp_path / "avatar")
    avatar.start()
    yield avatar
    avatar.kill()
