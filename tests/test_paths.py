"""Names that become paths, and folders replaced atomically."""

import pytest

from chara_resources.paths import (
    UnsafeNameError,
    check_relative_file,
    check_slug,
    commit_folder,
    recover_folder,
    safe_join,
    staging_name,
)


@pytest.mark.parametrize("name", ["alice", "a", "0", "bob-2", "x_y"])
def test_slugs_accepted(name: str) -> None:
    assert check_slug(name, "character name") == name


@pytest.mark.parametrize(
    "name", ["../x", "a|b", "a,b", "a[0]", "A", "", "-a", "_a", "a/b", "a b", ".", "ä", 3]
)
def test_slugs_rejected_with_the_input_named(name: object) -> None:
    with pytest.raises(UnsafeNameError, match="character name") as error:
        check_slug(name, "character name")
    assert repr(name) in str(error.value)


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "/abs", "a/../b", ".hidden", "a/.git", "a\\b", ""]
)
def test_relative_files_rejected(name: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_relative_file(name, "file name")


def test_relative_file_accepted() -> None:
    assert str(check_relative_file("clips/0001.wav", "file")) == "clips/0001.wav"


def test_safe_join_refuses_symlink_escape(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeNameError, match="escapes"):
        safe_join(root, "link", "x")
    assert safe_join(root, "a", "b") == root / "a" / "b"


def _folder(path, text: str):
    path.mkdir()
    (path / "manifest.json").write_text(text)
    return path


def test_commit_replaces_whole_folder(tmp_path) -> None:
    final = _folder(tmp_path / "en", "old")
    (final / "stale.wav").write_text("x")
    staging = _folder(staging_name(final), "new")
    commit_folder(staging, final)
    assert (final / "manifest.json").read_text() == "new"
    assert not (final / "stale.wav").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["en"]


def test_crash_between_renames_is_recovered(tmp_path) -> None:
    # The state a crash after "move old aside" and before "move new in" leaves behind.
    final = tmp_path / "en"
    _folder(tmp_path / ".en.previous", "old")
    _folder(staging_name(final), "new, never committed")
    recover_folder(final)
    assert (final / "manifest.json").read_text() == "old"
    assert not (tmp_path / ".en.previous").exists()
