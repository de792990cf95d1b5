"""Character and user files: the demo set loads; every kind of bad input is named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from chara_assets.characters.catalog import ConfigError, load_catalog, load_character
from chara_resources.settings import PROJECT_ROOT

VALID = """\
display_name: Alice
gender: female
description: A calm librarian.
languages: [en]
voice_sample:
  - file: alice.wav
    text: Hello there.
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "alice.wav").write_bytes(b"RIFF")  # existence is all the loader checks
    return tmp_path


def test_demo_configuration_is_valid() -> None:
    catalog = load_catalog(PROJECT_ROOT / "characters", PROJECT_ROOT / "users")
    assert catalog.errors == []
    assert sorted(catalog.characters) == ["boris", "kiki"]
    assert catalog.characters["kiki"].languages == ["en", "de"]
    assert catalog.users["sam"].relationships.keys() == {"kiki", "boris"}
    for character in catalog.characters.values():
        assert all(clip.file.is_file() for clip in character.voice_sample)


def test_valid_file_loads_with_name_from_file(folder: Path) -> None:
    character = load_character(_write(folder, "alice.yaml", VALID))
    assert character.name == "alice"
    assert character.voice_sample[0].file == folder / "alice.wav"
    assert character.clips_for("en") == ([character.voice_sample[0]], True)


def _error(folder: Path, name: str, text: str) -> ConfigError:
    path = _write(folder, name, text)
    with pytest.raises(ConfigError) as error:
        load_character(path)
    assert str(path) in str(error.value)
    return error.value


def test_malformed_yaml_names_the_line(folder: Path) -> None:
    error = _error(folder, "alice.yaml", VALID + "languages: [en\n")
    assert "line 9" in str(error) and "invalid YAML" in str(error)


def test_not_a_mapping(folder: Path) -> None:
    assert "expected a mapping" in str(_error(folder, "alice.yaml", "- a\n- b\n"))
    assert "empty file" in str(_error(folder, "alice.yaml", ""))


def test_unknown_language_names_the_field(folder: Path) -> None:
    error = _error(folder, "alice.yaml", VALID.replace("[en]", "[en, fr]"))
    assert error.problems == [("languages.1", "unknown language 'fr'; known languages: de, en, ru")]


@pytest.mark.parametrize("name", ["../x", "a|b", "Alice"])
def test_unsafe_name_field(folder: Path, name: str) -> None:
    error = _error(folder, "alice.yaml", f"name: {name!r}\n" + VALID)
    assert error.problems[0][0] == "name"


@pytest.mark.parametrize("file_name", ["a|b.yaml", "A b.yaml", "x,y.yaml"])
def test_unsafe_file_name(folder: Path, file_name: str) -> None:
    error = _error(folder, file_name, VALID)
    assert "rename the file" in str(error) and "not allowed" in str(error)


def test_missing_voice_file(folder: Path) -> None:
    error = _error(folder, "alice.yaml", VALID.replace("alice.wav", "nowhere/gone.wav"))
    assert error.problems[0][0] == "voice_sample.0.file"
    assert "gone.wav" in error.problems[0][1]


def test_several_problems_reported_together(folder: Path) -> None:
    text = VALID.replace("gender: female", "gender: robot").replace("[en]", "[]")
    error = _error(folder, "alice.yaml", text + "voice: x\n")
    fields = [field for field, _ in error.problems]
    assert fields == ["gender", "languages", "voice"]
    assert "unknown field" in str(error)


def test_duplicate_language(folder: Path) -> None:
    error = _error(folder, "alice.yaml", VALID.replace("[en]", "[en, en]"))
    assert error.problems == [("languages", "languages listed twice: en")]


def test_broken_file_does_not_hide_the_others(folder: Path, tmp_path: Path) -> None:
    _write(folder, "alice.yaml", VALID)
    _write(folder, "bob.yaml", "display_name: [")
    users = tmp_path / "users"
    users.mkdir()
    _write(users, "sam.yaml", "display_name: Sam\nrelationships: {alice: friends, zed: x}\n")
    catalog = load_catalog(folder, users)
    assert list(catalog.characters) == ["alice"]
    assert catalog.invalid_names == {"bob"}
    messages = [str(e) for e in catalog.errors]
    assert any("bob.yaml" in m for m in messages)
    assert any("sam.yaml: relationships.zed: no such character" in m for m in messages)


def test_avatar_name_defaults_to_the_display_name(folder: Path) -> None:
    assert load_character(_write(folder, "alice.yaml", VALID)).avatar_name == "Alice"
    given = load_character(_write(folder, "alice.yaml", "avatar_name: Ally\n" + VALID))
    assert given.avatar_name == "Ally" and given.name == "alice"
    demo = load_catalog(PROJECT_ROOT / "characters").characters
    assert {c.name: c.avatar_name for c in demo.values()} == {"boris": "Boris", "kiki": "Kiki"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("''", "is blank"),
        ("'   '", "is blank"),
        ("' Alice'", "starts or ends with a space; Avatar matches the name exactly"),
        ('"Al\\nice"', "holds a line break"),
    ],
)
def test_a_bad_avatar_name_names_the_field(folder: Path, value: str, problem: str) -> None:
    error = _error(folder, "alice.yaml", f"avatar_name: {value}\n" + VALID)
    [(field, message)] = error.problems
    assert field == "avatar_name" and problem in message


def test_a_blank_display_name_cannot_be_the_default_avatar_name(folder: Path) -> None:
    error = _error(folder, "alice.yaml", VALID.replace("display_name: Alice", "display_name: ' '"))
    [(_, message)] = error.problems
    assert message.startswith("display_name, the default avatar_name, is blank")
