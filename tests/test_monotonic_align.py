"""Our maximum-path alignment against brute force, and plugged into Piper's VITS model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from chara_resources.embedded.monotonic_align import maximum_path, maximum_path_numpy


def _all_paths(frames: int, tokens: int):
    """Every monotonic path as the token index of each frame: starts at 0, ends at the last
    token, each step stays or advances by one."""
    for steps in itertools.product((0, 1), repeat=frames - 1):
        if sum(steps) != tokens - 1:
            continue
        yield np.concatenate([[0], np.cumsum(steps, dtype=np.int64)]).astype(np.int64)


def _brute_force(scores: np.ndarray, frames: int, tokens: int) -> tuple[float, np.ndarray]:
    best, best_path = -np.inf, None
    for path in _all_paths(frames, tokens):
        total = scores[np.arange(frames), path].sum()
        if total > best:
            best, best_path = total, path
    return best, best_path


def _as_indices(path: np.ndarray, frames: int) -> np.ndarray:
    rows = path[:frames]
    assert (rows.sum(axis=1) == 1).all(), "each frame belongs to exactly one token"
    return rows.argmax(axis=1)


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_random_batches(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, max_frames, max_tokens = 3, 9, 5
    scores = rng.normal(size=(batch, max_frames, max_tokens)).astype(np.float32)
    tokens = rng.integers(1, max_tokens + 1, size=batch)
    frames = np.array([rng.integers(t, max_frames + 1) for t in tokens])
    before = scores.copy()
    paths = maximum_path_numpy(scores, frames, tokens)
    assert np.array_equal(scores, before)  # the input is not changed
    for b in range(batch):
        f, t = frames[b], tokens[b]
        best, expected = _brute_force(scores[b], f, t)
        got = _as_indices(paths[b], f)
        assert scores[b][np.arange(f), got].sum() == pytest.approx(best, rel=1e-5)
        assert np.array_equal(got, expected)  # random floats: the best path is unique
        assert not paths[b, f:].any() and not paths[b, :, t:].any()  # padding stays empty


def test_edge_shapes_and_ties() -> None:
    # One token: every frame on it. As many tokens as frames: the diagonal.
    one = maximum_path_numpy(np.zeros((1, 4, 3)), np.array([4]), np.array([1]))
    assert one[0, :, 0].tolist() == [1, 1, 1, 1] and one[0, :, 1:].sum() == 0
    diagonal = maximum_path_numpy(np.zeros((1, 3, 3)), np.array([3]), np.array([3]))
    assert np.array_equal(diagonal[0], np.eye(3, dtype=np.int32))
    # All scores equal: every path ties; walking back ours keeps the token, so it advances early.
    ties = maximum_path_numpy(np.zeros((1, 5, 3)), np.array([5]), np.array([3]))
    assert _as_indices(ties[0], 5).tolist() == [0, 1, 2, 2, 2]
    # A strongly preferred cell pulls the path through it.
    scores = np.zeros((1, 6, 3), dtype=np.float32)
    scores[0, 1, 1] = 10
    assert _as_indices(maximum_path_numpy(scores, np.array([6]), np.array([3]))[0], 6)[1] == 1


def test_more_tokens_than_frames_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="4 phonemes but only 3 frames"):
        maximum_path_numpy(np.zeros((1, 5, 5)), np.array([3]), np.array([4]))


@pytest.mark.slow
def test_torch_wrapper_reads_lengths_from_the_mask() -> None:
    import torch

    rng = np.random.default_rng(7)
    scores = torch.from_numpy(rng.normal(size=(2, 8, 4)).astype(np.float32))
    mask = torch.zeros(2, 8, 4)
    mask[0, :8, :4] = 1
    mask[1, :6, :3] = 1
    path = maximum_path(scores, mask)
    assert path.dtype == scores.dtype and path.shape == scores.shape
    for b, (f, t) in enumerate([(8, 4), (6, 3)]):
        _best, expected = _brute_force(scores[b].numpy(), f, t)
        assert np.array_equal(_as_indices(path[b].numpy(), f), expected)


@pytest.mark.slow
def test_piper_model_trains_a_step_with_it() -> None:
    """The VITS generator's forward pass (which runs the alignment) works once installed."""
    import torch

    from chara_resources.embedded.monotonic_align import install

    install()
    from piper.train.vits.models import SynthesizerTrn

    torch.manual_seed(0)
    model = SynthesizerTrn(
        n_vocab=20,
        spec_channels=513,
        segment_size=8,
        inter_channels=16,
        hidden_channels=16,
        filter_channels=32,
        n_heads=2,
        n_layers=1,
        kernel_size=3,
        p_dropout=0.0,
        resblock="2",
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 2),),
        upsample_rates=(8, 8, 4),
        upsample_initial_channel=16,
        upsample_kernel_sizes=(16, 16, 8),
    )
    x = torch.randint(1, 20, (2, 7))
    x_lengths = torch.tensor([7, 5])
    spec = torch.randn(2, 513, 30)
    spec_lengths = torch.tensor([30, 24])
    _y_hat, _l_length, attn, *_ = model(x, x_lengths, spec, spec_lengths)
    # attn [batch, 1, frames, tokens]: every valid frame is assigned to exactly one token.
    assert attn.shape == (2, 1, 30, 7)
    assert torch.equal(attn[0, 0].sum(1), torch.ones(30))
    assert torch.equal(attn[1, 0, :24].sum(1), torch.ones(24))
    assert attn[1, 0, 24:].sum() == 0 and attn[1, 0, :, 5:].sum() == 0
