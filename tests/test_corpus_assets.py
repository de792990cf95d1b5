"""The text corpus chain materialized for real: Debian corpora, the embedded BrainBox's
phonemizer, coverage selection, a person's review (through the annotation log)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from chara_assets.annotation.log import AnnotationLog, default_log_path
from chara_assets.voice.corpus_assets import (
    ReviewedCorpusConfig,
    SentencePoolConfig,
    TextCorpusConfig,
    pool_phonemes,
    reviewed_corpus,
    sentence_pool,
    text_corpus,
)
from chara_assets.voice.review import read_review, review_folder, sentence_id, write_review_task
from chara_resources.brainbox import BrainBoxResource
from chara_resources.storage import load_manifest

from .conftest import asset_runner, failure_message

ASSETS = [sentence_pool, pool_phonemes, text_corpus, reviewed_corpus]


@pytest.fixture
def chain(instance, resources, server):
    brainbox = BrainBoxResource(url=server.running_url())
    return asset_runner(ASSETS, instance, {**resources, "brainbox": brainbox})


_failure = failure_message


def _metadata(result, asset: str) -> dict:
    return {
        k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()
    }


def test_corpus_chain_with_a_persons_review(chain, chara_home: Path) -> None:
    pool = chain(sentence_pool, "en")
    assert pool.success
    assert _metadata(pool, "sentence_pool")["sentences"] > 500
    phonemes = chain(pool_phonemes, "en")
    assert phonemes.success, _failure(phonemes)
    metadata = _metadata(phonemes, "pool_phonemes")
    assert metadata["sentences"] > 500 and metadata["espeak_voice"] == "en-us"
    # with kaia's EspeakPhonemizer 1,159 of 1,162 English sentences came out foreign
    assert metadata["with_foreign_words"] < metadata["sentences"] / 10

    small = {"text_corpus": TextCorpusConfig(target=40)}
    first = chain(text_corpus, "kiki|en", **small)
    assert first.success, _failure(first)
    corpus = load_manifest(chara_home / "assets" / "text_corpus" / "kiki" / "en")
    assert len(corpus.sentences) == 40 and corpus.path(corpus.chart).stat().st_size > 1000
    metadata = _metadata(first, "text_corpus")
    assert "data:image/png;base64," in metadata["chart"]
    assert "chara review kiki en" in metadata["review"]

    # Nobody reviewed yet: reviewed_corpus fails and says what to do.
    assert "run `chara review kiki en`" in _failure(chain(reviewed_corpus, "kiki|en"))

    # A person accepts 30 and rejects 5, as the annotation service would log it.
    folder = review_folder(chara_home, "kiki", "en")
    log = AnnotationLog(default_log_path(write_review_task(folder, "kiki", "en", corpus.sentences)))
    for sentence in corpus.sentences[:30]:
        log.append(sentence_id(sentence), "yes")
    rejected = corpus.sentences[30:35]
    for sentence in rejected:
        log.append(sentence_id(sentence), "no")
    reviewed = chain(reviewed_corpus, "kiki|en")
    assert reviewed.success
    assert (
        load_manifest(chara_home / "assets" / "reviewed_corpus" / "kiki" / "en").sentences
        == (corpus.sentences[:30])
    )

    # The next round starts from the accepted sentences and never proposes a rejected one.
    second = chain(text_corpus, "kiki|en", **small)
    assert second.success
    again = load_manifest(chara_home / "assets" / "text_corpus" / "kiki" / "en")
    assert again.sentences[:30] == corpus.sentences[:30]
    assert not set(rejected) & set(again.sentences)
    assert again.accepted_before == 30


def test_auto_accept_is_recorded_not_silent(chain, chara_home: Path) -> None:
    assert chain(sentence_pool, "en").success
    assert chain(pool_phonemes, "en").success
    assert chain(text_corpus, "kiki|en", text_corpus=TextCorpusConfig(target=10)).success
    result = chain(
        reviewed_corpus, "kiki|en", reviewed_corpus=ReviewedCorpusConfig(auto_accept=True)
    )
    assert result.success and _metadata(result, "reviewed_corpus")["auto_accepted"] is True
    folder = review_folder(chara_home, "kiki", "en")
    history = AnnotationLog(default_log_path(folder / "task.json")).history()
    assert len(history) == 10 and all(e.get("by") == "auto_accept" for e in history)
    assert len(read_review(folder).accepted) == 10


def test_banned_words_never_selected(chain, config_dirs) -> None:
    characters, _ = config_dirs
    text = (characters / "kiki.yaml").read_text()
    (characters / "kiki.yaml").write_text(text + "banned_words: [the, The]\n")
    assert chain(sentence_pool, "en").success
    assert chain(pool_phonemes, "en").success
    result = chain(text_corpus, "kiki|en", text_corpus=TextCorpusConfig(target=20))
    assert result.success
    corpus = load_manifest(Path(_metadata(result, "text_corpus")["path"]))
    assert corpus.sentences and all(" the " not in f" {s.lower()} " for s in corpus.sentences)


def test_bad_corpus_files_fail_clearly(chain, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    message = _failure(
        chain(sentence_pool, "de", sentence_pool=SentencePoolConfig(extra_files=[str(empty)]))
    )
    assert f"{empty}: empty corpus file" in message
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Ein schöner Satz über die Straße.".encode("latin-1"))
    message = _failure(
        chain(sentence_pool, "de", sentence_pool=SentencePoolConfig(extra_files=[str(latin1)]))
    )
    assert str(latin1) in message and "utf-8" in message.lower()


def test_chara_review_serves_the_latest_selection(chain, chara_home: Path) -> None:
    from gradio_client import Client

    from chara_resources.embedded.launcher import free_port

    assert chain(sentence_pool, "en").success
    assert chain(pool_phonemes, "en").success
    assert chain(text_corpus, "kiki|en", text_corpus=TextCorpusConfig(target=12)).success
    port = free_port()
    chara = Path(sys.executable).parent / "chara"
    process = subprocess.Popen(
        [str(chara), "review", "kiki", "en", "--port", str(port)],
        env={**os.environ, "CHARA_HOME": str(chara_home)},
        stdout=subprocess.DEVNULL,
        stderr=open(chara_home / "review.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (chara_home / "review.log").read_text()[-2000:]
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        client = Client(url, verbose=False)
        state = client.predict(api_name="/state")
        assert state["total"] == 12 and state["decided"] == 0
        client.predict("yes", api_name="/decide")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert len(read_review(review_folder(chara_home, "kiki", "en")).accepted) == 1


def test_phoneme_coverage_check_names_what_is_missing(chain, chara_home: Path) -> None:
    assert chain(sentence_pool, "en").success
    assert chain(pool_phonemes, "en").success
    # Two sentences cannot hold every English phoneme: a warning, not a failed run.
    few = chain(text_corpus, "kiki|en", text_corpus=TextCorpusConfig(target=2))
    assert few.success
    (check,) = few.get_asset_check_evaluations()
    assert check.check_name == "phoneme_coverage" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    corpus = load_manifest(chara_home / "assets" / "text_corpus" / "kiki" / "en")
    missing = sorted(p for p, n in corpus.coverage.items() if n == 0)
    assert missing and check.metadata["covered"].value == len(corpus.coverage) - len(missing)
    named = check.metadata["in_pool_not_selected"].value
    assert all(f"`{p}`" in named for p in missing[:20])

    enough = chain(text_corpus, "kiki|en", text_corpus=TextCorpusConfig(target=60))
    (check,) = enough.get_asset_check_evaluations()
    corpus = load_manifest(chara_home / "assets" / "text_corpus" / "kiki" / "en")
    assert check.passed == all(n > 0 for n in corpus.coverage.values())
