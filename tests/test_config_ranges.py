"""Run-config and resource fields have ranges: a bad value fails naming the field and the
range, before any work, and the previous version of the asset stays (issue 14)."""

import dagster as dg
import pydantic
import pytest

from chara_assets.paraphrase.assets import ParaphraseSetsConfig
from chara_assets.voice.assets import voice_sample
from chara_assets.voice.audio_assets import ClonedAudioConfig
from chara_assets.voice.clip_assets import TrimmedClipsConfig
from chara_assets.voice.corpus_assets import SentencePoolConfig, TextCorpusConfig, sentence_pool
from chara_assets.voice.training_assets import CheckpointReportConfig, PiperCheckpointsConfig
from chara_resources.avatar import AvatarResource
from chara_resources.storage import CharaStorage

from .conftest import failure_message


def _run(asset, instance, resources, partition: str, config: dict):
    return dg.materialize(
        [asset],
        instance=instance,
        resources=resources,
        partition_key=partition,
        run_config={"ops": {asset.key.to_user_string(): {"config": config}}},
        raise_on_error=False,
    )


@pytest.mark.parametrize(
    ("config", "field", "says"),
    [
        ({"sample_rate": 0}, "sample_rate", "greater than or equal to 8000"),
        ({"gap_s": -1.0}, "gap_s", "greater than or equal to 0"),
        ({"target_level_db": 50.0}, "target_level_db", "less than or equal to -6"),
    ],
)
def test_a_bad_voice_sample_config_names_the_field_and_keeps_the_previous_version(
    instance, resources, chara_home, config: dict, field: str, says: str
) -> None:
    assert _run(voice_sample, instance, resources, "kiki|en", {}).success
    folder = chara_home / "assets" / "voice_sample" / "kiki" / "en"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    message = failure_message(_run(voice_sample, instance, resources, "kiki|en", config))
    assert "VoiceSampleConfig" in message and field in message and says in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_sentence_lengths_that_no_sentence_can_have_are_refused(instance, resources) -> None:
    config = {"min_length": 120, "max_length": 100}
    message = failure_message(_run(sentence_pool, instance, resources, "en", config))
    assert "min_length (120) is greater than max_length (100)" in message


@pytest.mark.parametrize(
    ("cls", "values", "field"),
    [
        (TextCorpusConfig, {"target": 0}, "target"),
        (SentencePoolConfig, {"max_capitals": -1}, "max_capitals"),
        (ClonedAudioConfig, {"max_failure_ratio": 2.0}, "max_failure_ratio"),
        (TrimmedClipsConfig, {"max_attempts": 0}, "max_attempts"),
        (TrimmedClipsConfig, {"speaker_reference": "both"}, "speaker_reference"),
        (TrimmedClipsConfig, {"target_hours": 0.0}, "target_hours"),
        (PiperCheckpointsConfig, {"epochs": 0}, "epochs"),
        (PiperCheckpointsConfig, {"validation_split": 1.0}, "validation_split"),
        (CheckpointReportConfig, {"training_clips": -1}, "training_clips"),
        (ParaphraseSetsConfig, {"paraphrases_per_answer": 0}, "paraphrases_per_answer"),
        (ParaphraseSetsConfig, {"max_rejection": -1.0}, "max_rejection"),
        (CharaStorage, {"min_free_mb": -5.0}, "min_free_mb"),
        (AvatarResource, {"retry_for_s": -1.0}, "retry_for_s"),
    ],
)
def test_config_fields_have_ranges(cls, values: dict, field: str) -> None:
    # Dagster builds these objects from the run config (or the definitions) before the asset
    # runs; the ValidationError is the step's (or the code location's) error.
    with pytest.raises(pydantic.ValidationError) as error:
        cls(**values)
    assert field in str(error.value) and cls.__name__ in str(error.value)
