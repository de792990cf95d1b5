"""The identification chain under faults, on the real kaia-avatar server and the embedded
BrainBox (real Resemblyzer): avatar_media and embedding_sets killed half-way, and Avatar gone
while identity_dataset replaces the labelled set."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import dagster as dg

from chara_assets.identification.assets import AvatarMediaConfig
from chara_assets.identification.planning import write_task_for
from chara_resources.avatar import AvatarResource
from chara_resources.storage import load_manifest

from ..test_identification import SENTENCES, content_id, label_everything
from .conftest import jobs, materialize, spawn, wait_for, work_items

VOICES = {"adam": "en-us", "fiona": "en-us+f5"}
SERVICE = "SpeakerIdentificationService"


def _record(cache: Path, count: int) -> dict[str, str]:
    """``count`` distinct recordings (two voices, sentences at a few speeds) in Avatar's
    cache, as its browser recorder names them; returns content id -> speaker."""
    cache.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(count):
        user = list(VOICES)[i % 2]
        text = SENTENCES[(i // 2) % len(SENTENCES)]
        speed = 150 + 15 * (i // (2 * len(SENTENCES)))
        path = cache / f"recording-{uuid.uuid4().hex}.wav"
        subprocess.run(
            ["espeak-ng", "-v", VOICES[user], "-s", str(speed), "-w", str(path), text], check=True
        )
        truth[content_id(path)] = user
    return truth


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in events[-1].metadata.items()}


def _kill(run) -> None:
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL


def test_killed_download_and_embedding_runs_lose_nothing(
    avatar_server, full_server, config_dirs, tmp_path: Path
) -> None:
    home, recordings = tmp_path / "home", 48
    _record(avatar_server.folder / "cache", recordings)
    url = full_server.running_url()
    users = {"users": ["adam", "fiona"]}
    avatar = {"avatar": AvatarResource(url=avatar_server.url, trusted=True)}

    downloads = ("avatar_media", "voice", "downloads")
    run = spawn(
        "avatar_media", "voice", home, config_dirs, tmp_path / "media.log",
        brainbox=url, avatar=avatar_server.url, config=users,
    )  # fmt: skip
    wait_for("three downloads", lambda: work_items(home, *downloads) >= 3, run, poll_s=0.005)
    _kill(run)
    stored = work_items(home, *downloads)
    assert 3 <= stored < recordings
    media = materialize(
        home, config_dirs, url, "avatar_media", "voice", resources=avatar,
        run_config=dg.RunConfig({"avatar_media": AvatarMediaConfig(**users)}),
    )  # fmt: skip
    assert media.success
    meta = _metadata(media, "avatar_media")
    assert meta["collected"] == recordings
    assert (meta["new_downloads"], meta["known_downloads"]) == (recordings - stored, stored)

    vector = "method = 'vector'"
    before = jobs(full_server, vector)
    run = spawn("embedding_sets", "voice", home, config_dirs, tmp_path / "embed.log", brainbox=url)
    done = f"{vector} and success = 1"
    wait_for("three voices embedded", lambda: jobs(full_server, done) - before >= 3, run)
    _kill(run)
    assert not (home / "assets" / "embedding_sets" / "voice").exists()
    embedded = materialize(home, config_dirs, url, "embedding_sets", "voice")
    assert embedded.success
    meta = _metadata(embedded, "embedding_sets")
    assert meta["computed"] == 0  # every job of the killed run was re-attached
    items = work_items(home, "embedding_sets", "voice", "embedded")
    assert items == recordings and jobs(full_server, vector) - before == recordings
    assert len(load_manifest(home / "assets" / "embedding_sets" / "voice").samples) == recordings


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _stashes(service: Path) -> list[Path]:
    return sorted(service.glob("before_*"))


def test_avatar_gone_during_upload_keeps_the_previous_dataset(
    own_avatar, full_server, config_dirs, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    truth = _record(own_avatar.folder / "cache", 16)
    url = full_server.running_url()

    def avatar_resource(retry_for_s: float = 2.0) -> dict:
        return {"avatar": AvatarResource(url=own_avatar.url, trusted=True, retry_for_s=retry_for_s)}

    def run(asset: str, **kwargs) -> dg.ExecuteInProcessResult:
        return materialize(
            home, config_dirs, url, asset, "voice", resources=avatar_resource(), **kwargs
        )

    users = dg.RunConfig({"avatar_media": AvatarMediaConfig(users=["adam", "fiona"])})
    assert run("avatar_media", run_config=users).success
    assert run("embedding_sets").success
    embedding_set = load_manifest(home / "assets" / "embedding_sets" / "voice")
    label_everything(write_task_for(embedding_set, home), truth)
    assert run("identity_dataset").success
    service = own_avatar.folder / "resources" / SERVICE
    uploaded = _files(service / "current")
    assert len(uploaded) == 16
    local = home / "assets" / "identity_dataset" / "voice"
    local_before = _files(local)

    # 1. Avatar is down when the upload starts: a clear error naming it, nothing changed.
    own_avatar.kill()
    failed = run("identity_dataset")
    assert not failed.success
    message = str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert f"Avatar at {own_avatar.url} is not reachable" in message, message
    assert _files(service / "current") == uploaded and not _stashes(service)
    assert _files(local) == local_before

    # 2. Avatar dies while the labelled set is being replaced: killed as soon as the old set is
    # complete in its stash, i.e. while current/ is being emptied and filled (should the
    # replacement win the race, try again).
    for _attempt in range(3):
        own_avatar.start()
        known = set(_stashes(service))

        def stashed(known: set[Path] = known) -> bool:
            return any(_files(s) == uploaded for s in _stashes(service) if s not in known)

        watcher = threading.Thread(target=_kill_when, args=(stashed, own_avatar))
        watcher.start()
        result = run("identity_dataset")
        watcher.join()
        if not result.success:
            break
    else:
        raise AssertionError("the replacement always finished before Avatar could be killed")
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert f"Avatar at {own_avatar.url}" in message, message
    assert _files(local) == local_before  # the local asset keeps its previous version
    # On Avatar the previous set is complete in a stash, and the error says where when the
    # current set could not be put back.
    (stash,) = [s for s in _stashes(service) if s not in known and _files(s) == uploaded]
    if _files(service / "current") != uploaded:
        assert f"it is complete in resources/{SERVICE}/{stash.name}" in message, message

    own_avatar.start()  # back again: a re-run finishes the replacement
    assert run("identity_dataset").success
    assert _files(service / "current") == uploaded
    assert any(_files(s) == uploaded for s in _stashes(service))
    manifest = load_manifest(local)
    assert len(manifest.entries) == 16 and manifest.avatar.rstrip("/") == own_avatar.url


def _kill_when(condition, avatar, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.002)
    avatar.kill()
