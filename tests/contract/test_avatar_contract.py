"""Contract: what chara uploads is what the assistant's own Avatar serves.

kaia-avatar 5.2.0's real ``AvatarServer`` and ``AvatarDaemon`` run as local processes with the
services chara feeds (``ParaphraseService``, ``SpeakerIdentificationService`` and the face
service ``UserWalkInService``), bound as kaia's own app binds them; chara's chains upload
through Dagster, the daemon loads the files and answers real requests on Avatar's message bus.
The services' models come from kaia's own BrainBox with its production controllers
(``avatar_brainbox``, tests/contract/conftest.py): the Resemblyzer container for real, and
InsightFace's model call alone stood in (no face model can be installed here; see
``tests/contract/standins/insight_face.py``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chara_assets.identification.assets import ASSETS as IDENTIFICATION
from chara_assets.identification.assets import (
    AvatarMediaConfig,
    avatar_media,
    embedding_sets,
    identity_dataset,
)
from chara_assets.identification.planning import write_task_for
from chara_assets.paraphrase.assets import (
    ParaphraseSetsConfig,
    _persona,
    avatar_paraphrase_stats,
    avatar_paraphrases,
    paraphrase_sets,
)
from chara_assets.paraphrase.engine import paraphrase_job
from chara_assets.paraphrase.records import Paraphrase, build_records
from chara_assets.paraphrase.resource import TemplateFolder
from chara_assets.paraphrase.templates import load_templates, to_grammatron
from chara_resources.avatar import AvatarResource, HttpAvatarStore, upload_paraphrase_file
from chara_resources.brainbox import BrainBoxResource
from chara_resources.settings import PROJECT_ROOT
from chara_resources.storage import load_manifest
from chara_resources.work_cache import WorkCache
from tests.conftest import asset_runner, failure_message
from tests.contract.avatar_fixtures import (
    ContractAvatar,
    contract_avatar,
)
from tests.identification_deciders import draw_faces
from tests.test_identification import label_everything

PARAPHRASE = [avatar_paraphrase_stats, paraphrase_sets, avatar_paraphrases]


@pytest.fixture(scope="module")
def avatar_brainbox(contract_brainbox) -> Iterator[tuple[str, Path]]:
    """The BrainBox Avatar's services call: its URL and its cache folder (Avatar's cache).

    kaia's own server with its production controllers (tests/contract/conftest.py): the
    Resemblyzer container for real, InsightFace's model call alone stood in."""
    from .standins.installs import install_insightface

    install_insightface(contract_brainbox)
    yield contract_brainbox.url, contract_brainbox.folder / "cache"


@pytest.fixture
def live_avatar(tmp_path: Path, avatar_brainbox) -> Iterator[ContractAvatar]:
    url, cache = avatar_brainbox
    with contract_avatar(
        tmp_path / "avatar", brainbox_url=url, brainbox_cache=cache, character="Kiki"
    ) as avatar:
        yield avatar


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", folder)
    return folder


# -- paraphrases ---------------------------------------------------------------------------

TIMER = {"index": 2, "count": 3, "unit": "minute"}
OURS = "Tick tock, Kiki here: your {index} timer runs {count+unit}!"


def _record_answer(home: Path, resources, templates_dir: Path, answer: str, user: str = "") -> None:
    """The LLM's answer to the timer_set question, as a finished run left it in the work cache
    (this BrainBox has no LLM; nothing is asked again)."""
    brainbox = BrainBoxResource(url="http://127.0.0.1:9", retry_for_s=1, role_profile="embedded")
    call = brainbox.call("llm", "question")
    work = WorkCache(home / "work" / "paraphrase_sets" / "kiki" / "en")
    step = work.step("answers", {"llm": f"{call.decider}:{call.parameter}"})
    spec = load_templates(templates_dir).templates["timer_set"]
    catalog = resources["characters"]
    persona, _ = _persona(catalog.character("kiki"), catalog, user)
    for group in spec.groups("en"):
        job = paraphrase_job(group, persona, 1, 0)
        step.put(step.key(job.cache_inputs(), job.label), job.cache_inputs(), result=answer)


def _paraphrase_run(resources, instance, avatar: ContractAvatar, templates_dir: Path):
    res = {
        **resources,
        "avatar": AvatarResource(url=avatar.url, trusted=True),
        "templates": TemplateFolder(templates_dir=str(templates_dir)),
        "brainbox": BrainBoxResource(
            url="http://127.0.0.1:9", retry_for_s=1, role_profile="embedded"
        ),
    }
    return asset_runner(PARAPHRASE, instance, res)


def _timer_utterance(templates_dir: Path):
    spec = load_templates(templates_dir).templates["timer_set"]
    return to_grammatron(spec)(TIMER)


def test_the_assistant_says_charas_paraphrase_for_the_character_as_kaia_names_it(
    live_avatar: ContractAvatar, resources, instance, chara_home: Path, templates_dir: Path
) -> None:
    _record_answer(chara_home, resources, templates_dir, f"- {OURS}")
    run = _paraphrase_run(resources, instance, live_avatar, templates_dir)
    assert run(avatar_paraphrase_stats, "kiki|en").success
    config = ParaphraseSetsConfig(templates=["timer_set"], max_attempts=1, paraphrases_per_answer=1)
    made = run(paraphrase_sets, "kiki|en", paraphrase_sets=config)
    assert made.success, failure_message(made)
    assert run(avatar_paraphrases, "kiki|en").success

    live_avatar.start_daemon()
    utterance = _timer_utterance(templates_dir)
    said = live_avatar.say(utterance, language="en", character="Kiki")
    assert said == "Tick tock, Kiki here: your second timer runs three minutes!"
    sets = load_manifest(chara_home / "assets" / "paraphrase_sets" / "kiki" / "en")
    assert {p.character for p in sets.paraphrases} == {"Kiki"}
    # Another character of the assistant keeps the assistant's own line.
    assert live_avatar.say(utterance, language="en", character="Boris") == (
        "The second timer is set for three minutes."
    )

    # Avatar's feedback file counts the use, and chara's statistics read it back.
    assert run(avatar_paraphrase_stats, "kiki|en").success
    stats = load_manifest(chara_home / "assets" / "avatar_paraphrase_stats" / "kiki" / "en")
    assert stats.avatar_name == "Kiki"
    assert [(r.original_template_name, r.used_variables_tag, r.seen) for r in stats.records] == [
        ("timer_set", "count,index,unit", 1)
    ]


def test_records_under_the_file_name_are_never_served_and_not_counted(
    live_avatar: ContractAvatar, resources, instance, chara_home: Path, templates_dir: Path
) -> None:
    """What chara wrote before characters had Avatar names: records for ``kiki``."""
    spec = load_templates(templates_dir).templates["timer_set"]
    old = Paraphrase("timer_set", "count,index,unit", "en", "kiki", None, OURS,
                     template_fingerprint=spec.fingerprint)  # fmt: skip
    store = HttpAvatarStore(live_avatar.url, retry_for_s=2)
    upload_paraphrase_file(store, pickle.dumps(build_records({"timer_set": spec}, [old])))
    store.close()

    live_avatar.start_daemon()
    said = live_avatar.say(_timer_utterance(templates_dir), language="en", character="Kiki")
    assert said == "The second timer is set for three minutes."  # the assistant's own line

    run = _paraphrase_run(resources, instance, live_avatar, templates_dir)
    stats = run(avatar_paraphrase_stats, "kiki|en")
    assert stats.success
    metadata = stats.asset_materializations_for_node("avatar_paraphrase_stats")[0].metadata
    assert metadata["records"].value == 0 and metadata["records_under_file_name"].value == 1
    # So the group counts as new: paraphrase_sets makes it again, under the Avatar name.
    _record_answer(chara_home, resources, templates_dir, f"- {OURS}")
    config = ParaphraseSetsConfig(templates=["timer_set"], max_attempts=1, paraphrases_per_answer=1)
    assert run(paraphrase_sets, "kiki|en", paraphrase_sets=config).success
    upload = run(avatar_paraphrases, "kiki|en")
    assert upload.success
    assert (
        upload.asset_materializations_for_node("avatar_paraphrases")[0].metadata["uploaded"].value
        == 1
    )


def test_a_users_paraphrase_is_served_for_the_name_identification_answers(
    live_avatar: ContractAvatar, resources, instance, chara_home: Path, templates_dir: Path
) -> None:
    """A paraphrase for one user carries the user's file name, ``sam``: the name kaia's
    identification services answer with for chara's ``sam/`` folder (the speaker test below).
    kaia matches it exactly too."""
    _record_answer(chara_home, resources, templates_dir, f"- {OURS}", user="sam")
    run = _paraphrase_run(resources, instance, live_avatar, templates_dir)
    config = ParaphraseSetsConfig(
        templates=["timer_set"], max_attempts=1, paraphrases_per_answer=1, user="sam"
    )
    assert run(avatar_paraphrase_stats, "kiki|en").success
    assert run(paraphrase_sets, "kiki|en", paraphrase_sets=config).success
    assert run(avatar_paraphrases, "kiki|en").success

    live_avatar.start_daemon()
    utterance = _timer_utterance(templates_dir)
    ours = "Tick tock, Kiki here: your second timer runs three minutes!"
    assert live_avatar.say(utterance, language="en", character="Kiki", user="sam") == ours
    original = "The second timer is set for three minutes."
    for other in ("Sam", None):
        assert live_avatar.say(utterance, language="en", character="Kiki", user=other) == original


def test_services_load_new_files_only_when_they_initialize(
    live_avatar: ContractAvatar, resources, instance, chara_home: Path, templates_dir: Path
) -> None:
    from avatar.daemon import InitializationEvent

    live_avatar.start_daemon()
    utterance = _timer_utterance(templates_dir)
    original = "The second timer is set for three minutes."
    assert live_avatar.say(utterance, language="en", character="Kiki") == original

    _record_answer(chara_home, resources, templates_dir, f"- {OURS}")
    run = _paraphrase_run(resources, instance, live_avatar, templates_dir)
    config = ParaphraseSetsConfig(templates=["timer_set"], max_attempts=1, paraphrases_per_answer=1)
    for asset, extra in ((avatar_paraphrase_stats, {}), (paraphrase_sets, {"paraphrase_sets":
                         config}), (avatar_paraphrases, {})):  # fmt: skip
        assert run(asset, "kiki|en", **extra).success
    # Uploaded while the daemon runs: not served...
    assert live_avatar.say(utterance, language="en", character="Kiki") == original
    # ... until the services initialize again (an InitializationEvent, or a restart).
    live_avatar.push(InitializationEvent())
    ours = "Tick tock, Kiki here: your second timer runs three minutes!"
    assert live_avatar.say(utterance, language="en", character="Kiki") == ours
    live_avatar.stop_daemon()
    live_avatar.start_daemon()
    # NewContentStrategy then AnyContentStrategy: ours is said again after a restart.
    assert live_avatar.say(utterance, language="en", character="Kiki") == ours


# -- identification ------------------------------------------------------------------------

SENTENCES = [
    "The weather is nice today and I would like a cup of tea.",
    "Please remind me to call my sister tomorrow morning.",
    "What time does the train to the city leave?",
    "Turn off the lights in the kitchen, please.",
    "I have been reading a very long book about the sea.",
    "Could you play some quiet music while I cook dinner?",
    "How many days are left until the end of the month?",
]
VOICES = {"adam": "en-us", "fiona": "en-us+f5"}


def _content_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _upload_cache(avatar: ContractAvatar, path: Path, prefix: str, suffix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex}{suffix}"
    store = HttpAvatarStore(avatar.url, retry_for_s=2)
    store.upload("cache", name, path)
    store.close()
    return name


def _identification_run(resources, instance, avatar: ContractAvatar, brainbox_url: str):
    res = {
        **resources,
        "avatar": AvatarResource(url=avatar.url),
        # kaia's decider names: the production role profile.
        "brainbox": BrainBoxResource(url=brainbox_url, role_profile="production"),
    }
    return asset_runner(IDENTIFICATION, instance, res)


def _label_and_upload(run, modality: str, users: list[str], home: Path, truth: dict) -> None:
    """chara's chain: collect, embed, a person labels every new sample, upload."""
    assert run(avatar_media, modality, avatar_media=AvatarMediaConfig(users=users)).success
    embedded = run(embedding_sets, modality)
    assert embedded.success, failure_message(embedded)
    embedding_set = load_manifest(home / "assets" / "embedding_sets" / modality)
    new = sum(s.user is None for s in embedding_set.samples)
    assert label_everything(write_task_for(embedding_set, home), truth) == new
    uploaded = run(identity_dataset, modality)
    assert uploaded.success, failure_message(uploaded)


def test_the_speaker_service_identifies_a_new_recording_with_charas_dataset(
    live_avatar: ContractAvatar, avatar_brainbox, resources, instance, chara_home: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    current = live_avatar.resources / "SpeakerIdentificationService" / "current"
    truth, held_out = {}, {}
    for user, voice in VOICES.items():
        for i, text in enumerate(SENTENCES):
            path = tmp_path / "voices" / f"{user}-{i}.wav"
            path.parent.mkdir(exist_ok=True)
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            truth[_content_id(path)] = user
            if i == 0:  # a labelled set from before, each user's file named 1.wav
                (current / user).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, current / user / "1.wav")
            elif i < len(SENTENCES) - 1:  # recordings the assistant made
                _upload_cache(live_avatar, path, "recording-", ".wav")
            else:  # uploaded after chara's dataset: never labelled
                held_out[user] = path
    run = _identification_run(resources, instance, live_avatar, avatar_brainbox[0])
    _label_and_upload(run, "voice", sorted(VOICES), chara_home, truth)
    assert sorted(p.name for p in current.iterdir()) == sorted(VOICES)

    live_avatar.start_daemon()
    for user, path in held_out.items():
        name = _upload_cache(live_avatar, path, "recording-", ".wav")
        assert live_avatar.identify_voice(name) == user
    # The service embedded every sample of chara's set itself, through BrainBox, from a copy
    # in its cache under the bare file name: each vector is that file's voice (two files named
    # 1.wav would both get the first one's vector).
    embedded = load_manifest(chara_home / "assets" / "embedding_sets" / "voice")
    chara_vectors = {s.id: embedded.matrix()[s.row] for s in embedded.samples}
    base = json.loads((current / "base.json").read_text())
    assert sorted(base) == sorted(VOICES)
    for user in VOICES:
        files = sorted((current / user).iterdir())
        assert len(files) == len(SENTENCES) - 1 == len(base[user])
        for path in files:
            kaia = np.asarray(base[user][path.name], dtype=float)  # null: the job failed
            ours = chara_vectors[_content_id(path)]
            cosine = kaia @ ours / (np.linalg.norm(kaia) * np.linalg.norm(ours))
            assert cosine > 0.99, (user, path.name, cosine)


RED, BLUE = (220, 30, 30), (30, 60, 220)


def test_the_face_service_loads_charas_face_dataset_and_answers_with_it(
    live_avatar: ContractAvatar, avatar_brainbox, resources, instance, chara_home: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    truth = {}
    # Six each: kaia's BestOfStrategy votes among the 10 nearest samples, so with five each
    # every frame is a 5:5 tie, which goes to the first name (measured: bob seen as alice).
    for i in range(6):
        for user, colour in (("alice", RED), ("bob", BLUE)):
            path = draw_faces(tmp_path / "faces" / f"{user}{i}.jpg", [colour], seed=i)
            _upload_cache(live_avatar, path, "webcam_", ".jpg")
            truth[_content_id(path)] = user
    run = _identification_run(resources, instance, live_avatar, avatar_brainbox[0])
    _label_and_upload(run, "face", ["alice", "bob"], chara_home, truth)

    live_avatar.start_daemon()
    for user, colour in (("alice", RED), ("bob", BLUE)):
        frame = draw_faces(tmp_path / "faces" / f"{user}-new.jpg", [colour], seed=99)
        assert live_avatar.identify_face(_upload_cache(live_avatar, frame, "webcam_", ".jpg")) == (
            user
        )
