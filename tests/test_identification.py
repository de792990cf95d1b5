"""The identification chain on the real servers: kaia-avatar, the embedded BrainBox with real
Resemblyzer (voice) or a face stand-in (no face model can be installed here), and a person
labelling through the annotation service's Python API with the active-learning strategy."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
from gradio_client import Client

from chara_assets.annotation import AnnotationLog, Task, default_log_path, report_request
from chara_assets.identification.assets import (
    ASSETS,
    AvatarMediaConfig,
    avatar_media,
    embedding_sets,
    identification_report,
    identity_dataset,
)
from chara_assets.identification.planning import (
    identification_folder,
    next_sample,
    write_task_for,
)
from chara_resources.avatar import AvatarResource, HttpAvatarStore
from chara_resources.brainbox import BrainBoxResource, RoleBinding
from chara_resources.embedded.launcher import free_port
from chara_resources.storage import load_manifest

from .conftest import asset_runner, failure_message
from .identification_deciders import draw_faces
from .test_annotation import QUIET_ENV, start, stop

SENTENCES = [
    "The weather is nice today and I would like a cup of tea.",
    "Please remind me to call my sister tomorrow morning.",
    "What time does the train to the city leave?",
    "Turn off the lights in the kitchen, please.",
    "I have been reading a very long book about the sea.",
    "Could you play some quiet music while I cook dinner?",
    "The garden needs water after such a dry week.",
    "Tell me a story about a dragon who loved apples.",
    "My keys are somewhere in the living room again.",
    "How many days are left until the end of the month?",
    "Let us go for a walk before it gets dark outside.",
    "Add milk, bread and cheese to the shopping list.",
]
# Three people: two espeak-ng voices (male, female variant) and the packaged Piper voice.
ESPEAK_VOICES = {"adam": "en-us", "fiona": "en-us+f5"}
VOICE_SERVICE = "SpeakerIdentificationService"


def content_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    from chara_resources.embedded.speech import StandInVoices

    folder = tmp_path_factory.mktemp("voices")
    made: dict[str, list[Path]] = {"adam": [], "fiona": [], "joe": []}
    for i, text in enumerate(SENTENCES):
        for user, voice in ESPEAK_VOICES.items():
            path = folder / f"{user}-{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            made[user].append(path)
        path = folder / f"joe-{i}.wav"
        StandInVoices().speak(text, "en", path, engine="piper")
        made["joe"].append(path)
    return made


def metadata(result: dg.ExecuteInProcessResult, asset) -> dict:
    events = result.asset_materializations_for_node(asset.op.name)
    return {k: v.value for k, v in events[-1].metadata.items()}


def label_everything(task_path: Path, truth: dict[str, str], skip: int | None = None) -> int:
    """A person at the annotation service: answers what it shows until nothing is left."""
    from chara_assets.annotation.app import AnnotationService  # gradio: not at collection

    task = Task.load(task_path)
    service = AnnotationService(
        task, AnnotationLog(default_log_path(task_path)), task_path, next_sample
    )
    shown = 0
    while (current := service.state()["current"]) is not None:
        label = "skip" if shown == skip else truth[current["id"]]
        service.decide(label, current["id"])
        shown += 1
    return shown


def test_voice_end_to_end(
    recordings, avatar_server, full_server, instance, resources, chara_home: Path
) -> None:
    avatar = HttpAvatarStore(avatar_server.url)
    truth = {}
    for user, paths in recordings.items():
        for path in paths:
            avatar.upload("cache", f"recording-{uuid.uuid4().hex}.wav", path)
            truth[content_id(path)] = user
    avatar.upload("cache", "recording-broken.wav", b"this is a text file, not a recording")
    stray = f"{VOICE_SERVICE}/current/a/b/stray.wav"  # "user" a/b
    avatar.upload("resources", stray, recordings["adam"][0])
    resources = {
        **resources,
        "avatar": AvatarResource(url=avatar_server.url),
        "brainbox": BrainBoxResource(url=full_server.running_url(), role_profile="embedded"),
    }
    run = asset_runner(ASSETS, instance, resources)
    users = AvatarMediaConfig(users=["adam", "fiona", "joe", "x/y"])

    media = run(avatar_media, "voice", avatar_media=users)
    assert media.success
    meta = metadata(media, avatar_media)
    assert meta["collected"] == 37 and meta["new_downloads"] == 37 and meta["problems"] == 2
    assert "user name 'x/y' is not allowed" in meta["problem_list"]
    assert "user name 'a/b' is not allowed" in meta["problem_list"]

    embedded = run(embedding_sets, "voice")
    assert embedded.success
    folder = chara_home / "assets" / "embedding_sets" / "voice"
    embedding_set = load_manifest(folder)
    assert len(embedding_set.samples) == 36 and embedding_set.dim == 256
    broken = [p for p in embedding_set.problems if p.name == "recording-broken.wav"]
    assert len(broken) == 1 and "cannot read audio file" in broken[0].error

    # A person labels through the service; one sample is skipped.
    task_path = write_task_for(embedding_set, chara_home)
    assert label_everything(task_path, truth, skip=4) == 36

    uploaded = run(identity_dataset, "voice")
    assert uploaded.success, failure_message(uploaded)
    service_folder = avatar_server.folder / "resources" / VOICE_SERVICE
    current = sorted(
        p.relative_to(service_folder / "current").parts[0]
        for p in (service_folder / "current").rglob("*.wav")
    )
    assert len(current) == 35 and set(current) == {"adam", "fiona", "joe"}
    for path in (service_folder / "current").rglob("*.wav"):
        assert truth[content_id(path)] == path.parent.name  # each file in its speaker's folder
    assert "broken" not in " ".join(p.name for p in (service_folder / "current").rglob("*"))
    assert list(service_folder.glob("before_*/a/b/stray.wav"))  # replaced, never lost
    assert metadata(uploaded, identity_dataset)["left_out"] == {"skipped": 1}

    report = run(identification_report, "voice")
    assert report.success
    meta = metadata(report, identification_report)
    print(f"voice: leave-one-out accuracy {meta['accuracy']} over {meta['samples']} samples")
    assert meta["accuracy"] >= 0.9 and meta["samples"] == 35
    assert "data:image/png;base64," in meta["projection"]
    assert "| adam |" in meta["confusion"]

    # Second round: the labelled set comes back from Avatar; refine it and delete one sample.
    again = run(avatar_media, "voice", avatar_media=users)
    meta = metadata(again, avatar_media)
    assert meta["known_downloads"] == 37 and meta["new_downloads"] == 35  # only the new names
    second = run(embedding_sets, "voice")
    meta = metadata(second, embedding_sets)
    assert meta["reused"] == 36 and meta["computed"] == 1  # only the broken file is retried
    embedding_set = load_manifest(folder)
    assert sum(s.user is not None for s in embedding_set.samples) == 35
    task_path = write_task_for(embedding_set, chara_home, refine=True)
    task = Task.load(task_path)
    from chara_assets.annotation.app import AnnotationService

    service = AnnotationService(
        task, AnnotationLog(default_log_path(task_path)), task_path, next_sample
    )
    first = service.state()["current"]
    assert first is not None and task.sample(first["id"]).prior_label is not None
    service.decide("delete", first["id"])
    first_stash = sorted(service_folder.glob("before_*"))
    assert run(identity_dataset, "voice").success
    stashes = sorted(service_folder.glob("before_*"))
    assert len(stashes) == len(first_stash) + 1
    previous = next(p for p in stashes if p not in first_stash)
    assert len(list(previous.rglob("*.wav"))) == 35  # the first upload, kept
    assert len(list((service_folder / "current").rglob("*.wav"))) == 34

    # Avatar's own identificator loads the uploaded set and tells the three apart. (It would
    # embed each file through BrainBox; here it gets the vectors chara computed.)
    from avatar.app import AvatarApi
    from avatar.daemon.common.vector_identificator import BestOfStrategy, VectorIdentificator

    vectors = embedding_set.matrix()
    by_content = {s.id: [float(v) for v in vectors[s.row]] for s in embedding_set.samples}

    def to_vector(name: str) -> list[float]:
        return by_content[content_id(avatar_server.folder / "cache" / name)]

    identificator = VectorIdentificator(
        AvatarApi(avatar_server.url), service_folder / "current", BestOfStrategy(10), to_vector
    )
    identificator.initialize()
    assert len(identificator.df) == 34 and set(identificator.df.index) == {"adam", "fiona", "joe"}
    recorded = {content_id(p): p.name for p in (avatar_server.folder / "cache").glob("rec*")}
    for user, paths in recordings.items():
        assert identificator.analyze(recorded[content_id(paths[-1])]) == user


RED, BLUE = (220, 30, 30), (30, 60, 220)
DAGSTER = "http://127.0.0.1:3999"


def test_face_path_with_a_stand_in_embedder(
    avatar_server, instance, resources, chara_home: Path, tmp_path: Path
) -> None:
    from chara_resources.embedded.launcher import EmbeddedBrainBox

    box = EmbeddedBrainBox(
        tmp_path / "brainbox",
        [
            "chara_resources.embedded.deciders:NoFaceModel",
            "tests.identification_deciders:FakeFaceEmbedderForTests",
        ],
    )
    url = box.ensure_running()
    try:
        avatar = HttpAvatarStore(avatar_server.url)
        truth = {}
        for i in range(6):
            for user, colour in (("alice", RED), ("bob", BLUE)):
                path = draw_faces(tmp_path / f"{user}{i}.jpg", [colour], seed=i)
                avatar.upload("cache", f"webcam_{uuid.uuid4().hex}.jpg", path)
                truth[content_id(path)] = user
        avatar.upload("cache", "webcam_empty.jpg", draw_faces(tmp_path / "none.jpg", []))
        two = draw_faces(tmp_path / "two.jpg", [RED, BLUE])
        avatar.upload("cache", "webcam_two.jpg", two)
        base = {**resources, "avatar": AvatarResource(url=avatar_server.url)}
        users = AvatarMediaConfig(users=["alice", "bob"])

        # The embedded BrainBox has no face model: the error says so.
        no_model = {**base, "brainbox": BrainBoxResource(url=url, role_profile="embedded")}
        run = asset_runner(ASSETS, instance, no_model)
        by_default = run(avatar_media, "face")  # the users are the users/*.yaml files
        assert metadata(by_default, avatar_media)["users"] == "sam"
        assert run(avatar_media, "face", avatar_media=users).success
        failed = run(embedding_sets, "face")
        assert "no face model" in failure_message(failed)

        stand_in = BrainBoxResource(
            url=url,
            role_profile="embedded",
            roles={"face_embedder": RoleBinding(decider="FakeFaceEmbedderForTests")},
        )
        run = asset_runner(ASSETS, instance, {**base, "brainbox": stand_in})
        assert run(embedding_sets, "face").success
        embedding_set = load_manifest(chara_home / "assets" / "embedding_sets" / "face")
        assert len(embedding_set.samples) == 12
        problems = {p.name: p.error for p in embedding_set.problems}
        assert problems["webcam_empty.jpg"].startswith("0 faces found")
        assert problems["webcam_two.jpg"].startswith("2 faces found")
        assert "exactly one face" in problems["webcam_two.jpg"]

        # `chara identify face` starts the service with the strategy; a script answers.
        port = free_port()
        command = [sys.executable, "-m", "chara_assets.cli", "identify", "face"]
        command += ["--port", str(port), "--dagster", ""]
        url = f"http://127.0.0.1:{port}"
        service = start(command, f"{url}/config", QUIET_ENV, tmp_path / "service.out")
        try:
            client = Client(url, verbose=False)
            answered = 0
            # gradio_client hands the sample (a dict with a "path") over as a downloaded copy
            # of its file; the script knows the person by the picture, as a person would.
            while not (state := client.predict(api_name="/state"))["done"]:
                assert state["current"].endswith(".jpg")
                user = truth[content_id(Path(state["current"]))]
                client.predict(user, state["current_id"], api_name="/decide")
                answered += 1
            client.close()
        finally:
            stop(service)
        assert answered == 12
        task_path = identification_folder(chara_home, "face") / "task.json"
        assert Task.load(task_path).kind == "image"
        assert len(AnnotationLog(default_log_path(task_path)).decisions()) == 12
        assert run(identity_dataset, "face").success
        current = avatar_server.folder / "resources" / "UserWalkInService" / "current"
        names = sorted(p.relative_to(current).as_posix() for p in current.rglob("*.jpg"))
        assert len(names) == 12 and {n.split("/")[0] for n in names} == {"alice", "bob"}
        assert not any("empty" in n or "two" in n for n in names)
        report = run(identification_report, "face")
        assert metadata(report, identification_report)["accuracy"] == 1.0

        # FINISH reports the labels as the external asset's materialization of this modality.
        task = Task.load(write_task_for(embedding_set, chara_home, dagster_url=DAGSTER))
        report_url, body = report_request(task, AnnotationLog(tmp_path / "any.jsonl"))
        assert report_url == f"{DAGSTER}/report_asset_materialization/identity_annotations"
        assert body["partition"] == "face"
    finally:
        box.stop()
