"""AvatarResource against the real kaia-avatar server and the local stand-in folder."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from chara_assets.paraphrase.assets import read_avatar_records
from chara_resources.avatar import (
    AvatarError,
    AvatarResource,
    AvatarUnavailable,
    HttpAvatarStore,
    LocalAvatarStore,
    load_paraphrase_pickle,
    paraphrase_files,
    read_paraphrase_feedback,
    replace_dataset,
    upload_paraphrase_file,
)
from chara_resources.embedded.launcher import free_port
from chara_resources.paths import UnsafeNameError


@pytest.fixture(params=[pytest.param("http", marks=pytest.mark.slow), "local"])
def store(request, tmp_path: Path):
    """Both backends; ``folder`` is where the files end up on disk."""
    if request.param == "http":
        server = request.getfixturevalue("avatar_server")
        http = HttpAvatarStore(server.url, retry_for_s=2.0)
        yield http, server.folder
        http.close()
    else:
        yield LocalAvatarStore(tmp_path / "local"), tmp_path / "local"


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_store_round_trip(store, tmp_path: Path) -> None:
    avatar, folder = store
    avatar.upload("cache", "recording-1.wav", _file(tmp_path, "a.wav", b"RIFF1"))
    avatar.upload("resources", "SpeakerIdentificationService/current/sam/1.wav", b"RIFF2")
    assert avatar.list("cache") == ["recording-1.wav"]
    assert avatar.list("resources", "SpeakerIdentificationService/current", recursive=True) == [
        "sam/1.wav"
    ]
    assert avatar.list("resources", "Nothing/here") == []
    assert avatar.is_file("cache", "recording-1.wav")
    assert not avatar.is_file("cache", "recording-2.wav")
    assert avatar.download("cache", "recording-1.wav", tmp_path / "back.wav").read_bytes() == (
        b"RIFF1"
    )
    assert (folder / "resources/SpeakerIdentificationService/current/sam/1.wav").read_bytes() == (
        b"RIFF2"
    )
    avatar.delete("cache", "recording-1.wav")
    assert avatar.list("cache") == []


@pytest.mark.parametrize("name", ["../escape.wav", "/etc/hostname", "a/../../b"])
def test_names_that_escape_are_refused_before_any_request(store, name: str) -> None:
    avatar, _ = store
    with pytest.raises(UnsafeNameError):
        avatar.read_bytes("cache", name)


def _records(*texts: str) -> list:
    from avatar.daemon import ParaphraseRecord
    from grammatron import Template

    return [
        ParaphraseRecord(f"chara-{text}", Template(text), "greeting", "", "en", "kiki")
        for text in texts
    ]


def test_paraphrase_upload_is_what_the_live_service_loads(avatar_server) -> None:
    from avatar.daemon import ParaphraseService
    from avatar.daemon.common import State
    from avatar.daemon.common.known_messages.console_messages import InitializationEvent
    from avatar.daemon.common.known_messages.text_messages import InternalTextCommand
    from grammatron import Template

    avatar = AvatarResource(url=avatar_server.url).store()
    first = upload_paraphrase_file(avatar, pickle.dumps(_records("Hi there!")))
    second = upload_paraphrase_file(avatar, pickle.dumps(_records("Good to see you!")))
    assert (first, second) == (
        "ParaphraseService/paraphrase-0001.pkl",
        "ParaphraseService/paraphrase-0002.pkl",
    )
    assert paraphrase_files(avatar) == ["paraphrase-0001.pkl", "paraphrase-0002.pkl"]
    _, records = read_avatar_records(avatar)
    assert [r.filename for r in records] == ["chara-Hi there!", "chara-Good to see you!"]
    assert read_paraphrase_feedback(avatar) == {}

    # The real service, reading the server's resources folder, answers with our lines.
    service = ParaphraseService(State())
    service.set_resources_folder(avatar_server.folder / "resources" / "ParaphraseService")
    service.on_initialize(InitializationEvent())
    utterance = Template("Hello!").with_name("greeting")()
    command = InternalTextCommand(utterance, user=None, language="en", character="kiki")
    said = {service.paraphrase(command).get_text(False) for _ in range(4)}
    assert said == {"Hi there!", "Good to see you!"}
    assert set(read_paraphrase_feedback(avatar)) == {"chara-Hi there!", "chara-Good to see you!"}


def test_paraphrase_files_cannot_run_code() -> None:
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(AvatarError, match=r"refusing to load posix\.system"):
        load_paraphrase_pickle(pickle.dumps([Evil()]), "paraphrase-0009.pkl")


def test_dataset_replacement_stashes_the_old_one(store, tmp_path: Path) -> None:
    avatar, _ = store
    service = "SpeakerIdentificationService"
    avatar.upload("resources", f"{service}/current/alice/a.wav", b"alice")
    stash = replace_dataset(avatar, service, {"bob/b.wav": _file(tmp_path, "b.wav", b"bob")})
    assert stash.startswith(f"{service}/before_")
    assert avatar.list("resources", f"{service}/current", recursive=True) == ["bob/b.wav"]
    assert avatar.list("resources", stash, recursive=True) == ["alice/a.wav"]
    assert avatar.read_bytes("resources", f"{stash}/alice/a.wav") == b"alice"


def test_failed_upload_leaves_the_old_dataset_and_a_retry_succeeds(
    avatar_server, tmp_path: Path
) -> None:
    avatar = HttpAvatarStore(avatar_server.url, retry_for_s=2.0)
    service = "SpeakerIdentificationService"
    avatar.upload("resources", f"{service}/current/alice/a.wav", b"alice")
    # A folder where a new file must go: the real server fails the upload with HTTP 500.
    blocker = avatar_server.folder / "resources" / service / "current" / "bob" / "b.wav"
    blocker.mkdir(parents=True)
    new = {"bob/a.wav": _file(tmp_path, "1.wav", b"b1"), "bob/b.wav": _file(tmp_path, "2", b"b2")}
    with pytest.raises(AvatarError, match=r"uploading resources/.*bob/b\.wav failed"):
        replace_dataset(avatar, service, new)
    assert avatar.list("resources", f"{service}/current", recursive=True) == ["alice/a.wav"]
    assert avatar.read_bytes("resources", f"{service}/current/alice/a.wav") == b"alice"

    shutil.rmtree(blocker)
    replace_dataset(avatar, service, new)
    current = avatar.list("resources", f"{service}/current", recursive=True)
    assert current == ["bob/a.wav", "bob/b.wav"]
    stashes = {n.split("/")[0] for n in avatar.list("resources", service, recursive=True)}
    assert "current" in stashes and any(s.startswith("before_") for s in stashes)


def test_failed_paraphrase_upload_leaves_no_file(avatar_server) -> None:
    avatar = HttpAvatarStore(avatar_server.url, retry_for_s=2.0)
    (avatar_server.folder / "resources" / "ParaphraseService" / "paraphrase-0001.pkl").mkdir(
        parents=True
    )
    with pytest.raises(AvatarError):
        upload_paraphrase_file(avatar, pickle.dumps(_records("Hi!")))
    assert not any(
        p.is_file() for p in (avatar_server.folder / "resources" / "ParaphraseService").rglob("*")
    )


def test_unreachable_avatar_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AvatarUnavailable, match=f"Avatar at {url} is not reachable"):
        HttpAvatarStore(url, retry_for_s=0.5).list("cache")


def test_without_url_the_local_folder_stands_in(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHARA_HOME", str(tmp_path))
    store = AvatarResource().store()
    assert isinstance(store, LocalAvatarStore) and store.folder == tmp_path / "avatar"
