"""The identification engine on the fast tier: Avatar's files in a local Avatar folder (the
real LocalAvatarStore), embedders as functions (tests/engine_models.py) that return vectors the
test constructs, the real work cache and the real annotation log."""

import json
from pathlib import Path

import numpy as np
import pytest

from chara_assets.annotation import AnnotationLog, Task, default_log_path
from chara_assets.identification.engine import (
    collect_media,
    embed_media,
    labelled_set,
)
from chara_assets.identification.media import IdentificationError
from chara_assets.identification.planning import (
    TaskSample,
    next_sample,
    read_decisions,
    set_quality,
    write_identification_task,
    write_task_for,
)
from chara_resources.avatar import LocalAvatarStore
from chara_resources.work_cache import WorkCache

from .engine_models import FunctionModels

VOICE_SERVICE = "SpeakerIdentificationService"


def _avatar(tmp_path: Path, cache: dict[str, dict], dataset: dict[str, dict]) -> LocalAvatarStore:
    """A local Avatar folder; each file's content is the JSON of what the embedder should
    return for it (its ``vector``, or ``fail``)."""
    folder = tmp_path / "avatar"
    files = {f"cache/{n}": c for n, c in cache.items()}
    files |= {f"resources/{VOICE_SERVICE}/current/{n}": c for n, c in dataset.items()}
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    return LocalAvatarStore(folder)


def _speaker_embedder() -> FunctionModels:
    models: FunctionModels

    def vector(arguments: dict) -> list[float]:
        content = json.loads(models.file(arguments["file"]).read_text())
        if "fail" in content:
            raise RuntimeError(content["fail"])
        return content["vector"]

    models = FunctionModels({"speaker_embedder.vector": vector}, names={})
    return models


def _collect(store: LocalAvatarStore, tmp_path: Path, users=("adam", "fiona"), run: str = "1"):
    downloads = WorkCache(tmp_path / "work" / "avatar_media").step("downloads")
    folder = tmp_path / f"media-{run}"
    media, collected, labelled = collect_media(
        store, "voice", list(users), downloads, folder, print
    )
    return media, collected, labelled, downloads


def test_embedding_set_holds_one_vector_per_content_with_its_names_and_label(
    tmp_path: Path,
) -> None:
    store = _avatar(
        tmp_path,
        cache={
            "recording-a.wav": {"vector": [1.0, 0.0, 0.0]},
            "recording-b.wav": {"vector": [0.0, 2.0, 0.0]},
            "recording-b2.wav": {"vector": [0.0, 2.0, 0.0]},  # the same content again
            "recording-bad.wav": {"fail": "cannot read audio file"},
            "recording-short.wav": {"vector": [1.0, 1.0]},  # another length
            "notes.txt": {"vector": [9.0, 9.0, 9.0]},  # not a recording: not ours
        },
        dataset={"fiona/f1.wav": {"vector": [0.0, 0.0, 3.0]}, "A/B.wav": {"vector": [1, 1, 1]}},
    )
    media, collected, labelled, downloads = _collect(store, tmp_path)
    assert (collected, labelled, downloads.computed) == (5, 1, 6)
    assert media.users == ["adam", "fiona"]
    assert [p.name for p in media.problems] == [f"{VOICE_SERVICE}/current/A/B.wav"]

    models = _speaker_embedder()
    models.names["speaker_embedder.vector"] = "Resemblyzer"
    folder = tmp_path / "embedded"
    embedded, outcome = embed_media(models, WorkCache(tmp_path / "work"), media, folder, print)
    # Five distinct contents were put once each and embedded once each.
    assert len(models.files) == 5 and all(n.startswith("ident-") for n in models.files)
    assert len(models.calls) == 5 and outcome.submitted == 5
    assert embedded.decider == "Resemblyzer" and embedded.dim == 3
    by_names = {tuple(s.names): s for s in embedded.samples}
    assert set(by_names) == {
        ("recording-a.wav",),
        ("recording-b.wav", "recording-b2.wav"),
        (f"{VOICE_SERVICE}/current/fiona/f1.wav",),
    }
    labelled = by_names[(f"{VOICE_SERVICE}/current/fiona/f1.wav",)]
    assert labelled.user == "fiona" and by_names[("recording-a.wav",)].user is None
    vectors = embedded.matrix()
    assert vectors.dtype == np.float32 and vectors.shape == (3, 3)
    assert vectors[labelled.row].tolist() == [0.0, 0.0, 3.0]
    content = json.loads(embedded.path(labelled.file).read_text())
    assert content == {"vector": [0.0, 0.0, 3.0]}  # the sample's own file, copied
    problems = {p.name: p.error for p in embedded.problems}
    assert "cannot read audio file" in problems["recording-bad.wav"]
    assert problems["recording-short.wav"] == "vector of length 2"  # the others have 3


def test_embedding_resumes_from_the_work_cache(tmp_path: Path) -> None:
    store = _avatar(
        tmp_path,
        cache={
            "recording-a.wav": {"vector": [1.0, 0.0]},
            "recording-b.wav": {"vector": [0.0, 1.0]},
            "recording-bad.wav": {"fail": "too little speech"},
        },
        dataset={},
    )
    media, *_ = _collect(store, tmp_path)
    work = WorkCache(tmp_path / "work")
    first, _ = embed_media(_speaker_embedder(), work, media, tmp_path / "e1", print)
    assert len(first.samples) == 2

    # A new run (a new process would see the same folders): only the failed file runs again.
    models = _speaker_embedder()
    again, again_outcome = embed_media(models, work, media, tmp_path / "e2", print)
    assert again_outcome.reused == 2 and again_outcome.submitted == 1
    [(_, arguments)] = models.calls
    assert json.loads(models.file(arguments["file"]).read_text()) == {"fail": "too little speech"}
    assert again.matrix().tolist() == first.matrix().tolist()
    # Downloads are kept by Avatar name: a second collection fetches nothing.
    second, *_, downloads = _collect(store, tmp_path, run="2")
    assert (downloads.computed, downloads.reused) == (0, 3)
    # Another model makes other vectors: everything is embedded again.
    other = _speaker_embedder()
    other.names["speaker_embedder.vector"] = "Other:model-2"
    redone, redone_outcome = embed_media(other, work, second, tmp_path / "e3", print)
    assert redone_outcome.reused == 0 and redone_outcome.submitted == 3
    assert redone.decider == "Other"


def test_face_samples_need_exactly_one_face_and_nothing_embedded_fails(tmp_path: Path) -> None:
    store = LocalAvatarStore(tmp_path / "avatar")
    faces = {"webcam_one.jpg": 1, "webcam_none.jpg": 0, "webcam_two.jpg": 2}
    for name in faces:
        store.upload("cache", name, name.encode())
    downloads = WorkCache(tmp_path / "work").step("downloads")
    media, *_ = collect_media(store, "face", ["alice"], downloads, tmp_path / "m", print)
    models: FunctionModels

    def analyze(arguments: dict) -> list[dict]:
        name = models.file(arguments["image"]).read_text()
        return [{"bbox": [0, 0, 1, 1], "embedding": [0.5, 0.5]}] * faces[name]

    models = FunctionModels({"face_embedder.analyze": analyze})
    embedded, _outcome = embed_media(
        models, WorkCache(tmp_path / "work"), media, tmp_path / "e", print
    )
    assert [s.names for s in embedded.samples] == [["webcam_one.jpg"]]
    problems = {p.name: p.error for p in embedded.problems}
    assert problems["webcam_none.jpg"].startswith("0 faces found")
    assert problems["webcam_two.jpg"].startswith("2 faces found")

    broken = FunctionModels({"face_embedder.analyze": lambda arguments: "no face model"})
    with pytest.raises(IdentificationError, match="no face sample could be embedded"):
        embed_media(broken, WorkCache(tmp_path / "w2"), media, tmp_path / "e2", print)


def _unit(*xs: float) -> list[float]:
    v = np.array(xs, dtype=float)
    return (v / np.linalg.norm(v)).tolist()


def _task(tmp_path: Path, vectors: dict[str, list[float]], priors: dict[str, str], users):
    samples = [
        TaskSample(i, tmp_path / f"{i}.wav", v, priors.get(i), [f"recording-{i}.wav"])
        for i, v in vectors.items()
    ]
    for s in samples:
        s.path.write_bytes(b"")
    path = write_identification_task(tmp_path, "voice", "audio", users, samples)
    return Task.load(path), AnnotationLog(default_log_path(path))


def test_planning_shows_the_sample_between_two_people_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors, priors = {}, {}
    for user, axis in (("adam", 0), ("fiona", 1)):
        for i in range(6):  # six known samples each: no one to explore, nothing to balance
            v = np.zeros(3)
            v[axis], v[2] = 1.0, rng.normal(scale=0.05)
            vectors[f"{user}{i}"], priors[f"{user}{i}"] = _unit(*v), user
    vectors |= {
        "clearly-adam": _unit(1.0, 0.05, 0.0),
        "border": _unit(0.7, 0.72, 0.05),
        "clearly-fiona": _unit(0.05, 1.0, 0.0),
    }
    task, log = _task(tmp_path, vectors, priors, ["adam", "fiona"])
    assert next_sample(task, log).id == "border"
    log.append("border", "fiona")
    assert next_sample(task, log).id in ("clearly-adam", "clearly-fiona")


def test_planning_looks_for_a_missing_person_far_from_the_known_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors, priors = {}, {}
    for user, axis in (("adam", 0), ("fiona", 1)):
        for i in range(8):
            v = np.zeros(3)
            v[axis], v[2] = 1.0, rng.normal(scale=0.05)
            vectors[f"{user}{i}"] = _unit(*v)
            if i < 5:
                priors[f"{user}{i}"] = user  # five known: full; three unknown
    vectors["stranger"] = _unit(0.0, 0.05, 1.0)  # nobody known is near it
    task, log = _task(tmp_path, vectors, priors, ["adam", "fiona", "joe"])
    assert next_sample(task, log).id == "stranger"  # joe has no sample yet


def test_labelled_set_follows_the_decisions(tmp_path: Path) -> None:
    cache = {f"recording-{i}.wav": {"vector": _unit(1.0, 0.05 * i)} for i in range(3)}
    cache |= {f"recording-{i}.wav": {"vector": _unit(0.05 * i, 1.0)} for i in range(3, 6)}
    dataset = {"fiona/recording-3.wav": {"vector": _unit(0.0, 1.0)}}
    store = _avatar(tmp_path, cache=cache, dataset=dataset)
    media, *_ = _collect(store, tmp_path)
    embedded, _outcome = embed_media(
        _speaker_embedder(), WorkCache(tmp_path / "w"), media, tmp_path / "e", print
    )
    home = tmp_path / "home"
    with pytest.raises(IdentificationError, match="chara identify voice"):
        read_decisions(home, "voice")
    log = AnnotationLog(default_log_path(write_task_for(embedded, home)))
    ids = {s.names[0]: s.id for s in embedded.samples}
    for i in range(6):
        label = "adam" if i < 3 else "fiona"
        log.append(ids[f"recording-{i}.wav"], "skip" if i == 5 else label)
    result, uploads = labelled_set(embedded, read_decisions(home, "voice"), tmp_path / "d")
    assert result.left_out == {"skipped": 1} and len(result.entries) == 6
    # Two samples named recording-3.wav (Avatar's cache, its labelled set): bare names stay
    # unique in the whole set, as Avatar's identificator needs.
    names = sorted(uploads)
    assert len({n.split("/")[1] for n in names}) == len(names) == 6
    assert {n.split("/")[0] for n in names} == {"adam", "fiona"}
    by_id = {s.id: s for s in embedded.samples}
    for entry in result.entries:
        upload = uploads[entry.avatar_file].read_bytes()
        assert upload == embedded.path(by_id[entry.id].file).read_bytes()
        assert entry.avatar_file.startswith(f"{entry.user}/")
    assert sorted(e.user for e in result.entries) == ["adam"] * 3 + ["fiona"] * 3
    assert result.matrix().shape == (6, 2)

    nobody = {s.id: "skip" for s in embedded.samples if s.user is None}
    only_new = embedded.model_copy(
        update={"samples": [s for s in embedded.samples if s.user is None]}
    ).bind(embedded.folder)
    with pytest.raises(IdentificationError, match="no voice sample has a label"):
        labelled_set(only_new, nobody, tmp_path / "d2")


def test_a_set_is_good_enough_with_a_majority_of_own_samples_among_ten() -> None:
    def household(n: int) -> tuple[np.ndarray, list[str]]:
        rows = [_unit(1.0, 0.05 * i) for i in range(n)] + [_unit(0.05 * i, 1.0) for i in range(n)]
        return np.array(rows), ["adam"] * n + ["fiona"] * n

    # Four each: a sample's ten neighbours are its three own and the other four: always wrong.
    small = set_quality(*household(4))
    assert small.accuracy == 0.0 and small.confusion["adam"] == {"adam": 0, "fiona": 4, "?": 0}
    good = set_quality(*household(7))
    assert good.accuracy == 1.0 and good.per_user == {"adam": 7, "fiona": 7}
    assert good.confusion["fiona"] == {"adam": 0, "fiona": 7, "?": 0}
