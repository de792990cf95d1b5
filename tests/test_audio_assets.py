"""Voice chain part 2 on the embedded BrainBox: registering the voice, voicing every line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
import soundfile as sf

from chara_assets.voice.assets import voice_sample
from chara_assets.voice.audio_assets import augmented_lines, cloned_audio, cloner_voice
from chara_assets.voice.corpus_assets import (
    ReviewedCorpusConfig,
    TextCorpusConfig,
    pool_phonemes,
    reviewed_corpus,
    sentence_pool,
    text_corpus,
)
from chara_resources.brainbox import BrainBoxResource
from chara_resources.storage import load_manifest

ASSETS = [
    voice_sample,
    sentence_pool,
    pool_phonemes,
    text_corpus,
    reviewed_corpus,
    augmented_lines,
    cloner_voice,
    cloned_audio,
]


def _jobs(box, where: str) -> int:
    with sqlite3.connect(box.folder / "data" / "brainbox.db") as db:
        return db.execute(f"select count(*) from brain_box_jobs where {where}").fetchone()[0]


@pytest.fixture
def chain(instance, resources, full_server):
    resources = {
        **resources,
        "brainbox": BrainBoxResource(url=full_server.running_url(), role_profile="embedded"),
    }

    def run(asset, partition: str, **config) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ASSETS,
            selection=[asset],
            instance=instance,
            resources=resources,
            partition_key=partition,
            run_config=dg.RunConfig(config),
            raise_on_error=False,
        )

    return run


def _reviewed(chain, lines: int) -> None:
    assert chain(sentence_pool, "en").success
    assert chain(pool_phonemes, "en").success
    assert chain(text_corpus, "kiki|en", text_corpus=TextCorpusConfig(target=lines)).success
    auto = ReviewedCorpusConfig(auto_accept=True)
    assert chain(reviewed_corpus, "kiki|en", reviewed_corpus=auto).success


def test_every_line_is_voiced_once(chain, chara_home: Path, full_server) -> None:
    _reviewed(chain, 6)
    assert chain(voice_sample, "kiki|en").success
    assert chain(augmented_lines, "kiki|en").success
    lines = load_manifest(chara_home / "assets" / "augmented_lines" / "kiki" / "en")
    assert (
        all(x.augmented == f"The beginning. {x.line} The end." for x in lines.lines)
        and len(lines.lines) == 6
    )
    registered = chain(cloner_voice, "kiki|en")
    assert registered.success
    before = _jobs(full_server, "method = 'voice_to_text'")
    voiced = chain(cloned_audio, "kiki|en")
    assert voiced.success
    audio = load_manifest(chara_home / "assets" / "cloned_audio" / "kiki" / "en")
    assert len(audio.clips) == 6 and not audio.errors
    for clip in audio.clips:
        info = sf.info(audio.path(clip.file))
        assert info.samplerate == 22050 and info.duration > 2.0
    assert _jobs(full_server, "method = 'voice_to_text'") - before == 6
    again = chain(cloned_audio, "kiki|en")
    assert again.success
    assert _jobs(full_server, "method = 'voice_to_text'") - before == 6  # nothing voiced twice
