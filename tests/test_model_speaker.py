"""Resemblyzer speaker embeddings on real (synthetic) speech made here with espeak-ng.

espeak-ng's voice variants differ in pitch and formants the way speakers do, and the synthesis is
deterministic, so the similarity ordering checked here is stable from run to run.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chara_resources.embedded import speaker
from chara_resources.embedded.speaker import SpeakerEmbedder, cosine_similarity

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("resemblyzer") is None or shutil.which("espeak-ng") is None,
    reason="needs the speaker model (resemblyzer) and espeak-ng to make test speech",
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Yesterday I bought fresh bread, some cheese and a bottle of milk at the market.",
    "Please turn off the lights in the kitchen when you leave the house tonight.",
]
# espeak-ng voices that sound like different speakers: a male and a female variant of the US
# voice, the Klatt synthesiser, and the German voice (speaking English text). Some variants
# (en+croak vs de) are too alike for Resemblyzer, so they are left out.
VOICES = ["en-us+m7", "en-us+f3", "en+klatt4", "de"]


def _say(voice: str, text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], list[float]]:
    """Embedding of every (voice, sentence index)."""
    folder = tmp_path_factory.mktemp("speech")
    embedder = SpeakerEmbedder()
    return {
        (voice, i): embedder.vector(_say(voice, text, folder / f"{voice}_{i}.wav"))
        for voice in VOICES
        for i, text in enumerate(SENTENCES)
    }


@needs_model
def test_vector_shape_and_norm(vectors: dict[tuple[str, int], list[float]]) -> None:
    for vector in vectors.values():
        assert len(vector) == speaker.EMBEDDING_SIZE == 256
        assert all(isinstance(v, float) and math.isfinite(v) for v in vector)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)


@needs_model
@pytest.mark.parametrize("voice", VOICES)
def test_same_voice_beats_same_sentence(
    vectors: dict[tuple[str, int], list[float]], voice: str
) -> None:
    """Different sentences by one voice are closer than one sentence by two voices.

    Measured: same voice 0.89-0.96, same sentence by another voice at most 0.86.
    """
    for other, i in ((o, i) for o in VOICES if o != voice for i in range(len(SENTENCES))):
        same_text = cosine_similarity(vectors[(voice, i)], vectors[(other, i)])
        for j in range(len(SENTENCES)):
            if j != i:
                same_voice = cosine_similarity(vectors[(voice, i)], vectors[(voice, j)])
                assert same_voice > same_text, (voice, other, i, j, same_voice, same_text)


@needs_model
def test_any_rate_and_channels(tmp_path: Path) -> None:
    """A 44.1 kHz stereo copy embeds like the 22.05 kHz mono original."""
    original = _say(VOICES[0], SENTENCES[0], tmp_path / "mono.wav")
    data, rate = sf.read(original, dtype="float32")
    import soxr

    stereo = np.stack([soxr.resample(data, rate, 44_100)] * 2, axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, 44_100)
    embedder = SpeakerEmbedder()
    similarity = cosine_similarity(
        embedder.vector(original), embedder.vector(tmp_path / "stereo.wav")
    )
    assert similarity > 0.99  # measured 1.000


@needs_model
def test_unreadable_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"this is not a RIFF file at all" * 10)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        SpeakerEmbedder().vector(bad)
    missing = tmp_path / "missing.wav"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        SpeakerEmbedder().vector(missing)


@needs_model
def test_silent_or_too_short_audio_names_it(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16_000 * 2, dtype=np.float32), 16_000)
    with pytest.raises(ValueError, match=re.escape(str(silent))):
        SpeakerEmbedder().vector(silent)
    short = _say(VOICES[0], "Hi", tmp_path / "short.wav")
    data, rate = sf.read(short, dtype="float32")
    sf.write(short, data[: rate // 5], rate)  # 0.2 s
    with pytest.raises(ValueError, match=re.escape(str(short))):
        SpeakerEmbedder().vector(short)


@needs_model
def test_model_loads_once(vectors: dict[tuple[str, int], list[float]], tmp_path: Path) -> None:
    """Many files and several SpeakerEmbedder instances: the weights were read once."""
    first = SpeakerEmbedder().encoder
    SpeakerEmbedder().vector(_say(VOICES[1], SENTENCES[0], tmp_path / "again.wav"))
    assert SpeakerEmbedder().encoder is first
    assert speaker._Shared.loads == 1


def test_cosine_similarity_helper() -> None:
    assert cosine_similarity([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert cosine_similarity(np.array([1.0, 1.0]), [-3.0, -3.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        cosine_similarity([1.0, 0.0], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        cosine_similarity([0.0, 0.0], [1.0, 0.0])
