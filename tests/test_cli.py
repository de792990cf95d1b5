"""The ``chara`` command's answers to bad input (the commands' real work is tested per asset;
``scripts/setup`` runs ``chara demo`` end to end in CI)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chara_resources.settings import PROJECT_ROOT


def _chara(tmp_path: Path, config_dirs, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    characters, users = config_dirs
    env = {
        **os.environ,
        "CHARA_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "CHARA_CHARACTERS": str(characters),
        "CHARA_USERS": str(users),
        **env_vars,
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


def test_check_passes_the_demo_configuration(tmp_path: Path, config_dirs) -> None:
    result = _chara(tmp_path, config_dirs, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 characters, 1 users, 6 templates; 0 with problems"


def test_check_is_the_gate_for_voice_files_and_templates(tmp_path: Path, config_dirs) -> None:
    """What the issue found ``chara check`` passing: voice files that are not audio or lie
    outside the project, broken templates, duplicate files, blank fields."""
    import shutil

    from .conftest import write_tone

    characters, users = config_dirs
    kiki = characters / "kiki.yaml"
    (characters / "voices" / "kiki" / "en.wav").write_bytes(b"")
    kiki.write_text(kiki.read_text().replace("voices/kiki/de.wav", "/etc/passwd"))
    write_tone(characters / "voices" / "boris" / "en.wav", 600.0, rate=8000)
    shutil.copy(characters / "boris.yaml", characters / "boris.yml")
    (users / "sam.yaml").write_text('display_name: " "\n')
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    (templates / "broken.yaml").write_text(
        "templates:\n  - name: t\n    lines: {en: ['Hello {name']}\n"
    )
    result = _chara(tmp_path, config_dirs, "check", CHARA_TEMPLATES=str(templates))
    assert result.returncode == 1
    errors = result.stderr
    assert f"{kiki}: voice_sample.0.file: " in errors and "cannot read audio" in errors
    assert f"{kiki}: voice_sample.1.file: '/etc/passwd' is outside the characters folder" in errors
    assert "boris.yaml: boris.yml defines 'boris' too; keep one of the two files" in errors
    assert "sam.yaml: display_name: must not be empty or only spaces" in errors
    assert f"{templates / 'broken.yaml'}, line 3: " in errors and "unbalanced brace" in errors
    assert "Traceback" not in errors
    assert result.stdout.strip() == "0 characters, 0 users, 6 templates; 5 with problems"


def test_review_refuses_a_name_that_is_a_path(tmp_path: Path, config_dirs) -> None:
    result = _chara(tmp_path, config_dirs, "review", "../../etc", "en")
    assert result.returncode == 2 and "character name" in result.stderr
    assert "Traceback" not in result.stderr
