"""Monotonic alignment search (the VITS "maximum path"), our own implementation.

VITS learns which phoneme each spectrogram frame belongs to by finding, for every utterance,
the monotonic path through a (frames x phonemes) score matrix with the largest total score:
frame 0 belongs to phoneme 0, the last frame to the last phoneme, and from one frame to the
next the phoneme either stays or advances by one. Dynamic programming over the frames gives
the best total for every cell; walking back from the last cell picks the path.

piper-tts ships this as a Cython extension, but its wheel carries neither the compiled module
nor its source, so ``python -m piper.train`` fails on import. :func:`install` puts this module
in its place (``piper.train.vits.monotonic_align``) in the running interpreter, without
touching site-packages. numba compiles the loop on first use (cached on disk when the package
folder is writable).
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np
from numba import njit, prange

_TARGET = "piper.train.vits.monotonic_align"
_UNREACHABLE = np.float32(-1e9)  # the score of a cell no monotonic path reaches


@njit(cache=True, nogil=True)
def _best_path(path: np.ndarray, score: np.ndarray, frames: int, tokens: int) -> None:
    """Mark in ``path`` (frames x tokens, zeros) the best monotonic path through ``score``.

    ``score`` is overwritten with the running totals. A frame ``y`` can only sit on tokens
    ``x`` with ``x <= y`` (one step per frame at most) and ``tokens - x <= frames - y`` (the
    path must still reach the last token).
    """
    if frames <= 0 or tokens <= 0:
        return
    for y in range(frames):
        low = max(0, tokens - frames + y)
        high = min(tokens - 1, y)
        for x in range(low, high + 1):
            if y == 0:
                best = np.float32(0.0)  # the only start is (0, 0)
            else:
                stay = score[y - 1, x] if x <= y - 1 else _UNREACHABLE
                advance = score[y - 1, x - 1] if x >= 1 else _UNREACHABLE
                best = stay if stay >= advance else advance
            score[y, x] += best
    # Walk back from the last cell; on a tie keep the same token (so the path advances early).
    x = tokens - 1
    for y in range(frames - 1, -1, -1):
        path[y, x] = 1
        if y == 0 or x == 0:
            continue
        stay = score[y - 1, x] if x <= y - 1 else _UNREACHABLE
        if score[y - 1, x - 1] > stay:
            x -= 1


@njit(cache=True, parallel=True)
def _best_paths(paths: np.ndarray, scores: np.ndarray, frames: np.ndarray, tokens: np.ndarray):
    for b in prange(paths.shape[0]):
        _best_path(paths[b], scores[b], frames[b], tokens[b])


def maximum_path_numpy(scores: np.ndarray, frames: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Best monotonic paths for a batch: ``scores`` [batch, frames, tokens] (not changed),
    ``frames``/``tokens`` [batch] the valid lengths. Returns int32 0/1 paths of the same shape.

    Raises ValueError when an utterance has more tokens than frames (no path exists).
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32).copy()
    frames = np.ascontiguousarray(frames, dtype=np.int64)
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    if scores.ndim != 3 or frames.shape != (scores.shape[0],) or tokens.shape != frames.shape:
        raise ValueError(
            f"maximum_path: scores {scores.shape}, frames {frames.shape}, tokens {tokens.shape}"
        )
    if (frames > scores.shape[1]).any() or (tokens > scores.shape[2]).any():
        raise ValueError("maximum_path: a length exceeds the score matrix")
    if (tokens > frames).any():
        b = int(np.argmax(tokens > frames))
        raise ValueError(
            f"maximum_path: utterance {b} has {tokens[b]} phonemes but only {frames[b]} "
            "frames; no monotonic alignment exists (audio too short for its text)"
        )
    paths = np.zeros(scores.shape, dtype=np.int32)
    _best_paths(paths, scores, frames, tokens)
    return paths


def maximum_path(neg_cent, mask):
    """Drop-in for ``piper.train.vits.monotonic_align.maximum_path``.

    ``neg_cent``: torch tensor [batch, frames, tokens] of scores; ``mask``: [batch, frames,
    tokens] of 0/1 marking the valid cells. Returns the 0/1 path as a tensor like ``neg_cent``.
    """
    import torch

    scores = neg_cent.detach().cpu().numpy().astype(np.float32)
    valid = mask.detach().cpu()
    frames = valid.sum(1)[:, 0].numpy().astype(np.int64)
    tokens = valid.sum(2)[:, 0].numpy().astype(np.int64)
    paths = maximum_path_numpy(scores, frames, tokens)
    return torch.from_numpy(paths).to(device=neg_cent.device, dtype=neg_cent.dtype)


def install() -> ModuleType:
    """Make ``piper.train.vits.monotonic_align`` this module in the running interpreter.

    piper's models.py imports it lazily (``from . import monotonic_align``), which finds the
    entry in ``sys.modules`` and the package attribute set here. Returns this module.
    """
    import piper.train.vits as vits

    module = sys.modules[__name__]
    sys.modules[_TARGET] = module
    vits.monotonic_align = module
    return module
