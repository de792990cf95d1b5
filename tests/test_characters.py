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


def test_a_name_that_is_not_text(folder: Path) -> None:
    error = _error(folder, "alice.yaml", "name: 123\n" + VALID)
    assert error.problems == [
        ("name", "must be text, found int 123; write 'alice' or leave it out")
    ]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("text: Hello there.", 'text: " "', "voice_sample.0.text"),
        ("display_name: Alice", 'display_name: "  "', "display_name"),
        ("description: A calm librarian.", 'description: "\\t"', "description"),
    ],
)
def test_text_of_only_spaces_is_empty(folder: Path, old: str, new: str, field: str) -> None:
    error = _error(folder, "alice.yaml", VALID.replace(old, new))
    assert error.problems == [(field, "must not be empty or only spaces")]


def test_a_character_in_two_files_is_an_error_everywhere(folder: Path) -> None:
    from chara_assets.characters.resource import CharacterCatalog

    _write(folder, "alice.yaml", VALID)
    _write(folder, "alice.yml", VALID.replace("Alice", "Other Alice"))
    catalog = load_catalog(folder)
    assert catalog.characters == {} and catalog.invalid_names == {"alice"}
    assert sorted(Path(e.file).name for e in catalog.errors) == ["alice.yaml", "alice.yml"]
    assert "alice.yml defines 'alice' too; keep one of the two files" in str(catalog.errors[0])
    with pytest.raises(ConfigError, match="keep one of the two files"):
        CharacterCatalog(characters_dir=str(folder)).character("alice")  # what assets read


@pytest.mark.parametrize("file", ["/etc/passwd", "../../../../etc/passwd", "../outside.wav"])
def test_a_voice_file_outside_the_project_is_refused(folder: Path, file: str) -> None:
    characters = folder / "characters"
    characters.mkdir()
    (folder / "outside.wav").write_bytes(b"RIFF")
    error = _error(characters, "alice.yaml", VALID.replace("alice.wav", file))
    ((field, message),) = error.problems
    assert field == "voice_sample.0.file"
    assert f"{file!r} is outside the characters folder" in message
    assert "CHARA_VOICE_FOLDERS" in message


def test_a_link_out_of_the_characters_folder_is_refused(folder: Path) -> None:
    characters = folder / "characters"
    characters.mkdir()
    (characters / "alice.wav").symlink_to("/etc/hostname")
    error = _error(characters, "alice.yaml", VALID)
    assert "is outside the characters folder" in error.problems[0][1]


def test_an_allowed_folder_may_hold_voice_files(folder: Path) -> None:
    characters, recordings = folder / "characters", folder / "recordings"
    characters.mkdir()
    recordings.mkdir()
    (recordings / "alice.wav").write_bytes(b"RIFF")
    path = _write(
        characters, "alice.yaml", VALID.replace("alice.wav", str(recordings / "alice.wav"))
    )
    character = load_character(path, voice_folders=[recordings])
    assert character.voice_sample[0].file == recordings / "alice.wav"


def test_a_relationship_to_a_broken_character_is_reported(folder: Path, tmp_path: Path) -> None:
    _write(folder, "alice.yaml", VALID)
    _write(folder, "bob.yaml", VALID.replace("[en]", "[xx]"))
    users = tmp_path / "users"
    users.mkdir()
    _write(users, "sam.yaml", "display_name: Sam\nrelationships: {alice: friends, bob: pals}\n")
    catalog = load_catalog(folder, users)
    assert "sam" in catalog.users  # paraphrasing for alice still knows sam
    messages = [str(e) for e in catalog.errors]
    assert any(
        "sam.yaml: relationships.bob: the character file of 'bob' is broken" in m for m in messages
    )


def _noise(path: Path, seconds: float) -> Path:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    sf.write(path, rng.uniform(-0.9, 0.9, int(16000 * seconds)), 16000)
    return path


def _audio_cases():
    import numpy as np
    import soundfile as sf

    from .conftest import speak, write_tone

    def zero_bytes(path):
        path.write_bytes(b"")

    def text(path):
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")

    def empty_wav(path):
        sf.write(path, np.zeros(0), 16000)

    def silent(path):
        sf.write(path, np.zeros(16000 * 3), 16000)

    def noise_under_a_header(path):
        _noise(path, 3.0)

    def ten_minutes(path):
        write_tone(path, 600.0, rate=8000)

    def too_short(path):
        speak("Hi", path)
        data, rate = sf.read(path)
        sf.write(path, data[: int(rate * 0.3)], rate)

    return [
        (zero_bytes, "cannot read audio"),
        (text, "cannot read audio"),
        (empty_wav, "the audio file is empty"),
        (silent, "no sound louder than -45 dBFS in the recording (silent)"),
        (noise_under_a_header, "noise, not speech: spectral flatness"),
        (ten_minutes, "600 s long, longer than 60 s"),
        (too_short, "0.30 s long, shorter than 1 s"),
    ]


@pytest.mark.parametrize(
    ("make", "problem"), _audio_cases(), ids=lambda c: getattr(c, "__name__", "")
)
def test_voice_files_are_decoded_and_checked(folder: Path, make, problem: str) -> None:
    path = _write(folder, "alice.yaml", VALID)
    load_character(path)  # only where the file is: cheap, for the sensor's scan every 30 s
    make(folder / "alice.wav")
    with pytest.raises(ConfigError) as error:
        load_character(path, check_audio=True)
    ((field, message),) = error.value.problems
    assert field == "voice_sample.0.file"
    assert message.startswith(f"{folder / 'alice.wav'}: ") and problem in message


def test_real_speech_passes_the_voice_file_check(folder: Path) -> None:
    from .conftest import speak

    speak("Hello there, I am Alice and I look after the books.", folder / "alice.wav")
    path = _write(folder, "alice.yaml", VALID)
    assert load_character(path, check_audio=True).name == "alice"


def test_the_demo_voices_pass_the_voice_file_check() -> None:
    catalog = load_catalog(PROJECT_ROOT / "characters", PROJECT_ROOT / "users", check_audio=True)
    assert catalog.errors == [] and sorted(catalog.characters) == ["boris", "kiki"]


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
    # one problem, named once: the blank display name (not a second one for the Avatar name)
    assert error.problems == [("display_name", "must not be empty or only spaces")]
