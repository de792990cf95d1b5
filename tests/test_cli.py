"""The ``chara`` command's answers to bad input (the commands' real work is tested per asset;
``scripts/setup`` runs ``chara demo`` end to end in CI)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chara_resources.settings import PROJECT_ROOT


def _chara(tmp_path: Path, config_dirs, *args: str) -> subprocess.CompletedProcess:
    characters, users = config_dirs
    env = {
        **os.environ,
        "CHARA_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "CHARA_CHARACTERS": str(characters),
        "CHARA_USERS": str(users),
    }
    return subprocess.run(
        [sys.executable, "-m", "chara_assets.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--character", "nobody"], "no valid character file for 'nobody'"),
        (["--character", "boris", "--language", "de"], "boris does not speak 'de'"),
        (["--lines", "0"], "--lines and --epochs must be at least 1"),
    ],
)
def test_demo_refuses_bad_input_before_any_work(
    tmp_path: Path, config_dirs, args: list[str], message: str
) -> None:
    result = _chara(tmp_path, config_dirs, "demo", *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "home" / "assets").exists()


def test_check_names_the_broken_file(tmp_path: Path, config_dirs) -> None:
    characters, _ = config_dirs
    (characters / "zoe.yaml").write_text("display_name: Zoe\nlanguages: [fr]\n")
    result = _chara(tmp_path, config_dirs, "check")
    assert result.returncode == 1
    assert "zoe.yaml" in result.stderr and "unknown language 'fr'" in result.stderr
    assert "2 characters" in result.stdout


def test_review_refuses_a_name_that_is_a_path(tmp_path: Path, config_dirs) -> None:
    result = _chara(tmp_path, config_dirs, "review", "../../etc", "en")
    assert result.returncode == 2 and "character name" in result.stderr
    assert "Traceback" not in result.stderr
