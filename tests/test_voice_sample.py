"""voice_sample on real speech (espeak-ng): levelling, resampling, reuse and bad input."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import soundfile as sf

from chara_assets.voice.assets import VoiceSample, VoiceSampleConfig, voice_sample
from chara_assets.voice.audio import voiced_level_db
from chara_resources.storage import load_manifest

from .conftest import failure_message, speak, write_tone


def _materialize(instance, resources, partition: str, config: VoiceSampleConfig | None = None):
    return dg.materialize(
        [voice_sample],
        instance=instance,
        resources=resources,
        partition_key=partition,
        run_config=dg.RunConfig({"voice_sample": config or VoiceSampleConfig()}),
        raise_on_error=False,
    )


_failure = failure_message


def _metadata(result, name: str):
    return result.asset_materializations_for_node("voice_sample")[0].metadata[name].value


def test_levelled_sample_from_real_speech(instance, resources, chara_home: Path) -> None:
    result = _materialize(instance, resources, "kiki|en")
    assert result.success
    folder = chara_home / "assets" / "voice_sample" / "kiki" / "en"
    sample = load_manifest(folder)
    assert isinstance(sample, VoiceSample)
    assert sample.text.startswith("Hello! I am Kiki") and sample.same_language
    audio, rate = sf.read(sample.path(sample.audio))
    assert rate == 22050 and audio.ndim == 1
    assert abs(len(audio) / rate - sample.duration_s) < 0.01
    assert 6.0 < sample.duration_s < 9.0  # the espeak clip is 8.6 s before trimming
    assert abs(voiced_level_db(audio, rate, -60) - (-22.0)) < 1.0
    assert np.max(np.abs(audio)) < 1.0
    assert _metadata(result, "clips_levelled") == 1


def test_rerun_reuses_and_a_new_level_recomputes(instance, resources) -> None:
    assert _materialize(instance, resources, "kiki|en").success
    again = _materialize(instance, resources, "kiki|en")
    assert (_metadata(again, "clips_levelled"), _metadata(again, "clips_reused")) == (0, 1)
    louder = _materialize(instance, resources, "kiki|en", VoiceSampleConfig(target_level_db=-18))
    assert _metadata(louder, "clips_levelled") == 1
    assert abs(_metadata(louder, "level_db") - (-18.0)) < 0.5


def test_stereo_16k_clips_are_joined_as_mono_22k(
    instance, resources, config_dirs, chara_home: Path
) -> None:
    characters, _ = config_dirs
    stereo = characters / "voices" / "kiki" / "stereo.wav"
    data, rate = sf.read(speak("One more sentence for the sample.", stereo))
    sf.write(stereo, np.stack([data, data * 0.5], axis=1), rate)
    text = (characters / "kiki.yaml").read_text()
    extra = "  - file: voices/kiki/stereo.wav\n    language: en\n    text: One more.\n"
    (characters / "kiki.yaml").write_text(text + extra)
    result = _materialize(instance, resources, "kiki|en")
    assert result.success, _failure(result)
    sample = load_manifest(chara_home / "assets" / "voice_sample" / "kiki" / "en")
    assert [s.file for s in sample.sources] == ["en.wav", "stereo.wav"]
    assert sf.info(sample.path(sample.audio)).channels == 1
    total = sum(s.duration_s for s in sample.sources) + 0.4
    assert abs(sample.duration_s - total) < 0.01


def test_language_the_character_does_not_speak_fails_at_once(instance, resources) -> None:
    message = _failure(_materialize(instance, resources, "kiki|ru"))
    assert "character 'kiki' does not speak 'ru' (its languages: en, de)" in message


def test_missing_own_language_clip_falls_back_to_all_clips(
    instance, resources, config_dirs
) -> None:
    characters, _ = config_dirs
    text = (characters / "boris.yaml").read_text().replace("[en, ru]", "[en, ru, de]")
    (characters / "boris.yaml").write_text(text)
    instance.add_dynamic_partitions("character", ["boris"])
    result = _materialize(instance, resources, "boris|de")
    assert result.success
    assert _metadata(result, "same_language") is False
    assert _metadata(result, "clips") == 2


def test_unreadable_audio_names_the_file(instance, resources, config_dirs) -> None:
    characters, _ = config_dirs
    broken = characters / "voices" / "kiki" / "en.wav"
    broken.write_bytes(b"this is not audio at all")
    message = _failure(_materialize(instance, resources, "kiki|en"))
    assert f"{broken}: cannot read audio" in message


def test_silent_audio_is_rejected(instance, resources, config_dirs) -> None:
    characters, _ = config_dirs
    silent = characters / "voices" / "kiki" / "en.wav"
    sf.write(silent, np.zeros(22050), 22050)
    message = _failure(_materialize(instance, resources, "kiki|en"))
    assert f"{silent}: no sound louder than" in message


def test_tone_is_levelled_without_clipping(tmp_path: Path) -> None:
    from chara_assets.voice.audio import level_clip

    src = write_tone(tmp_path / "tone.wav", 1.0, rate=16000, channels=2)
    info = level_clip(src, tmp_path / "out.wav", sample_rate=22050, target_db=-3.0)
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 22050 and info.source_rate == 16000
    assert info.peak_limited and np.max(np.abs(out)) <= 10 ** (-1 / 20) + 1e-3
