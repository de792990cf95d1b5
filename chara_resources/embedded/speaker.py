"""Speaker embeddings on CPU with Resemblyzer's packaged voice encoder.

Stands in for the production ``Resemblyzer.vector(file)`` decider: one WAV file in, one
256-dimensional, L2-normalised utterance embedding out. The weights ship inside the
``resemblyzer`` wheel (``resemblyzer/pretrained.pt``), so nothing is downloaded at run time.

torch and resemblyzer are imported only when the model is first needed, so importing this module
stays cheap for code (and tests) that never embed anything.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

#: The voice encoder works on 16 kHz mono audio.
SAMPLE_RATE = 16_000
#: Length of one embedding.
EMBEDDING_SIZE = 256
#: Least voiced audio (after Resemblyzer's silence trimming) worth embedding. Below this the
#: encoder still returns a vector, but it is mostly padding and says little about the voice.
MIN_VOICED_SECONDS = 0.5
#: Peak amplitude below which a file counts as silent (about -80 dBFS). Resemblyzer's volume
#: normalisation divides by the RMS, so true silence would otherwise turn into NaNs.
_SILENCE_PEAK = 1e-4


class _Shared:
    """The process-wide encoder: loaded on first use, then reused by every SpeakerEmbedder."""

    lock = threading.Lock()
    encoder: Any = None
    loads = 0  # how many times the weights were read; tests check it stays at 1


def _limit_torch_threads() -> None:
    """Run torch single-threaded.

    One utterance is a batch of a few 1.6 s windows through a small LSTM, which measured faster
    on one thread than on two (about 30 vs 40 ms for 4 s of speech, 2 cores). With more, torch's
    idle OpenMP workers spin on the cores that llama.cpp (the embedded LLM, in the same process
    and the same libgomp) needs: its generation fell from about 100 to 12-30 tokens/s right after
    an embedding. This setting is process-wide, as torch's thread pool is.
    """
    import torch

    torch.set_num_threads(1)


def _load_encoder() -> Any:
    """Return the shared ``resemblyzer.VoiceEncoder``, loading it on the first call.

    Raises:
        ImportError: resemblyzer (or torch, or webrtcvad) is not installed.
    """
    with _Shared.lock:
        if _Shared.encoder is None:
            try:
                with warnings.catch_warnings():
                    # resemblyzer 0.1.4 imports binary_dilation from scipy.ndimage.morphology,
                    # deprecated since SciPy 1.8 (gone in 2.0: keep scipy<2 until it changes).
                    warnings.filterwarnings("ignore", category=DeprecationWarning)
                    from resemblyzer import VoiceEncoder
            except ImportError as e:
                raise ImportError(
                    "speaker embeddings need the 'resemblyzer' package (with torch, librosa, "
                    f"scipy and webrtcvad-wheels): {e}"
                ) from e
            # Explicit CPU: the embedded server never has a GPU, and verbose=False keeps the
            # library from printing its load time to stdout.
            _Shared.encoder = VoiceEncoder(device="cpu", verbose=False)
            _limit_torch_threads()
            _Shared.loads += 1
        return _Shared.encoder


def read_mono_16k(wav: Path) -> np.ndarray:
    """Read an audio file as float32 mono at 16 kHz.

    Args:
        wav: any file libsndfile reads (WAV, FLAC, OGG, ...), any sample rate and channel count.

    Returns:
        1-D float32 array in [-1, 1] at :data:`SAMPLE_RATE`.

    Raises:
        ValueError: the file is missing or not readable as audio (the message names the file).
    """
    import soundfile as sf
    import soxr

    try:
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"cannot read audio file {wav}: {e}") from e
    mono = data.mean(axis=1)  # average the channels rather than pick one
    if rate != SAMPLE_RATE and len(mono) > 0:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)


class SpeakerEmbedder:
    """Utterance embeddings with Resemblyzer; the model loads lazily, once per process.

    Instances are cheap: they all share one encoder, loaded by the first :meth:`vector` call.
    Measured on 2 cores: about 1.2 s to import torch and load the weights, 1.4 s more for the
    first file (librosa's lazy imports), then about 30 ms per 4 s utterance; 450 MB resident.
    """

    @property
    def encoder(self) -> Any:
        """The shared ``resemblyzer.VoiceEncoder`` (loaded now if it was not yet)."""
        return _load_encoder()

    def vector(self, wav: Path) -> list[float]:
        """Embed the voice in one audio file.

        Args:
            wav: path to a speech recording; any sample rate or channel count.

        Returns:
            256 floats, L2 norm 1 (all >= 0, as Resemblyzer's final ReLU makes them).

        Raises:
            ValueError: the file is unreadable, silent, or has less than
                :data:`MIN_VOICED_SECONDS` of speech left after silence trimming; the message
                names the file.
            ImportError: resemblyzer or torch is not installed.
        """
        wav = Path(wav)
        samples = read_mono_16k(wav)
        if len(samples) == 0 or float(np.max(np.abs(samples))) < _SILENCE_PEAK:
            raise ValueError(f"audio file {wav} is empty or silent")

        encoder = self.encoder  # loads torch/resemblyzer on the first call only
        from resemblyzer import preprocess_wav

        # Passing an array with no source rate skips librosa's loader and resampler (we did
        # both with soundfile/soxr); it still normalises volume and trims long silences by VAD.
        voiced = preprocess_wav(samples)
        seconds = len(voiced) / SAMPLE_RATE
        if seconds < MIN_VOICED_SECONDS:
            raise ValueError(
                f"audio file {wav} has too little speech to embed: {seconds:.2f} s voiced "
                f"after trimming silence, need at least {MIN_VOICED_SECONDS} s"
            )
        embedding = encoder.embed_utterance(voiced)
        if not np.all(np.isfinite(embedding)):
            raise ValueError(f"audio file {wav} gave a non-finite embedding")
        return [float(v) for v in embedding]


def cosine_similarity(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cosine of the angle between two vectors.

    Args:
        a, b: vectors of the same length (lists or arrays).

    Returns:
        A float in [-1, 1]; for Resemblyzer's unit-norm, non-negative embeddings, in [0, 1].

    Raises:
        ValueError: the lengths differ, or a vector is empty or all zeros.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"vectors differ in length: {x.size} vs {y.size}")
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        raise ValueError("cosine similarity is undefined for an empty or zero vector")
    # Clip: rounding can push the cosine of (nearly) identical vectors just past 1.
    return float(np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))
