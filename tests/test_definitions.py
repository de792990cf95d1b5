"""The shape of the platform: every asset, job, sensor and resource, and that it validates."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from chara_assets.definitions import defs
from chara_resources.settings import PROJECT_ROOT


def test_definitions_list_the_platform() -> None:
    repo = defs.get_repository_def()
    assert sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()) == [
        "augmented_lines",
        "avatar_media",
        "avatar_paraphrase_stats",
        "avatar_paraphrases",
        "checkpoint_report",
        "cloned_audio",
        "cloner_voice",
        "corpus_review",
        "delivered_voice",
        "embedding_sets",
        "identification_report",
        "identity_annotations",
        "identity_dataset",
        "paraphrase_sets",
        "piper_archive",
        "piper_checkpoints",
        "pool_phonemes",
        "reviewed_corpus",
        "sentence_pool",
        "text_corpus",
        "trimmed_clips",
        "voice_sample",
    ]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "character_files",
        "pool_slots",
        "template_files",
    ]
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == [
        "character_job",
        "corpus_job",
        "deliver_voice_job",
        "language_job",
        "paraphrase_job",
        "training_job",
        "voice_job",
    ]
    assert sorted(defs.resources) == [
        "avatar",
        "brainbox",
        "characters",
        "io_manager",
        "storage",
        "templates",
    ]
    sensor = repo.get_sensor_def("character_files")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


PER_LANGUAGE = {"sentence_pool", "pool_phonemes"}  # shared by every character of a language
# About the assistant's users, not a character: per modality (voice, face).
PER_MODALITY = {
    "avatar_media",
    "embedding_sets",
    "identity_annotations",
    "identity_dataset",
    "identification_report",
}


def test_every_dataset_is_partitioned_by_character_and_language() -> None:
    repo = defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        partitions = repo.asset_graph.get(key).partitions_def
        if key.to_user_string() in PER_LANGUAGE:
            assert partitions.get_partition_keys() == ["de", "en", "ru"], key
            continue
        if key.to_user_string() in PER_MODALITY:
            assert partitions.get_partition_keys() == ["face", "voice"], key
            continue
        assert isinstance(partitions, dg.MultiPartitionsDefinition), key
        assert [d.name for d in partitions.partitions_defs] == ["character", "language"]


def test_steps_that_use_brainbox_are_in_its_pool() -> None:
    repo = defs.get_repository_def()
    checked = []
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        if node.is_materializable and "brainbox" in node.assets_def.required_resource_keys:
            assert node.pools == {"brainbox"}, key
            checked.append(key.to_user_string())
    assert "pool_phonemes" not in checked  # phonemized locally (libespeak-ng), not on BrainBox
    assert {
        "cloner_voice",
        "cloned_audio",
        "trimmed_clips",
        "paraphrase_sets",
        "piper_checkpoints",
        "checkpoint_report",
        "delivered_voice",
    } <= set(checked)
    assert "embedding_sets" in checked


@pytest.mark.slow
def test_definitions_load_without_heavy_imports() -> None:
    code = (
        "import sys, chara_assets.definitions\n"
        "heavy = [m for m in ('torch', 'gradio', 'vosk', 'onnxruntime', 'resemblyzer', "
        "'llama_cpp', 'faster_whisper', 'piper', 'numba', 'playwright', 'matplotlib') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


@pytest.mark.slow
def test_dagster_definitions_validate(tmp_path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "CHARA_HOME": str(tmp_path / "home")}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    result = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
