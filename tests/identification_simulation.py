"""A person labelling simulated, for the active-learning tests and
``bench/identification_active.py``: synthetic households of embeddings, and how many labels a
person gives, in the strategy's order or a random one, before the labelled set identifies
enough of all samples. Not production code: the annotation service runs
:func:`chara_assets.identification.active.choose_next` itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from chara_assets.identification.active import K_VOTE, choose_next, knn_vote, unit_rows


def accuracy_with(
    x: np.ndarray, truth: Sequence[str], labelled: Sequence[int], k: int = K_VOTE
) -> float:
    """Accuracy over all samples of the ``k``-NN vote of the ``labelled`` ones (a labelled
    sample is identified by the others, as in leave-one-out)."""
    labelled = list(labelled)
    if not labelled:
        return 0.0
    sims = x @ x[labelled].T
    sims[labelled, np.arange(len(labelled))] = -np.inf
    guess = knn_vote(sims, [truth[i] for i in labelled], k)
    return float(np.mean([g == t for g, t in zip(guess, truth, strict=True)]))


def simulate(
    vectors: np.ndarray,
    truth: Sequence[str],
    order: Callable[[np.ndarray, list[str | None], list[int]], int],
    *,
    target: float = 0.95,
    max_labels: int | None = None,
) -> int | None:
    """How many labels a person gives before the labelled set identifies ``target`` of all
    samples; None if never. ``order(x, labels, candidates)`` picks the next index."""
    x = unit_rows(vectors)
    n = len(truth)
    labels: list[str | None] = [None] * n
    labelled: list[int] = []
    for step in range(1, (max_labels or n) + 1):
        candidates = [i for i in range(n) if labels[i] is None]
        if not candidates:
            return None
        i = order(x, labels, candidates)
        labels[i] = truth[i]
        labelled.append(i)
        if accuracy_with(x, truth, labelled) >= target:
            return step
    return None


def strategy_order(classes: Sequence[str], seed: int):
    """:func:`choose_next` as an ``order`` for :func:`simulate`."""
    rng = np.random.default_rng(seed)

    def order(x: np.ndarray, labels: list[str | None], candidates: list[int]) -> int:
        return choose_next(x, labels, candidates, classes, rng).index

    return order


def random_order(seed: int):
    """Samples in a random order: the baseline for :func:`simulate`."""
    rng = np.random.default_rng(seed)

    def order(x: np.ndarray, labels: list[str | None], candidates: list[int]) -> int:
        return int(rng.choice(candidates))

    return order


def clustered_vectors(
    sizes: Sequence[int], dim: int = 32, spread: float = 0.6, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Synthetic embeddings: one Gaussian cloud per person around a random direction, with
    ``sizes[i]`` samples of person ``p<i>``; ``spread`` is the noise relative to the centre's
    length (larger: more overlap). Output: unit rows and the true labels."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for c, size in enumerate(sizes):
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        rows.append(centre + rng.normal(scale=spread / np.sqrt(dim), size=(size, dim)))
        truth += [f"p{c}"] * size
    return unit_rows(np.vstack(rows)), truth
