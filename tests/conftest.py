"""Shared fixtures: a throwaway storage root, a copy of the demo characters, real audio."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import soundfile as sf

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.partitions import CHARACTER_DIMENSION
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import ChraStorage, FolderIOManager


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
    storage = ChraStorage(root=str(chara_home))
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
