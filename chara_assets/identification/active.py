"""Which sample a person should label next, and how well a labelled set identifies people.

Pure numpy, no Dagster: the annotation service calls :func:`choose_next` after every decision
(through :mod:`.planning`), the report calls :func:`leave_one_out`; the tests and
``bench/identification_active.py`` simulate a person with ``tests/identification_simulation.py``.

The strategy (DESIGN §6), over unit-length embeddings and cosine distance:

1. **explore**: while some person has fewer than ``min_per_class`` labelled samples, a random
   unlabelled sample far from every class that already has enough (farther from the class's
   centre than its members' mean distance plus 3 standard deviations, else 2); with no full
   class yet, any random sample. When nothing is that far (the missing people may simply not
   be in the data), go on to 2.
2. **balance**: while the labelled class sizes differ by more than ``max_gap``, the sample of
   the smallest class's region (the samples whose nearest class it is) farthest from that
   class's labelled samples: it widens what the small class is known to cover.
3. **border**: the sample closest to the border between its two nearest classes (smallest
   difference of the distances to them).

Identification itself is the assistant's: a majority vote of the 10 nearest labelled samples
by cosine distance (:func:`knn_vote`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXPLORE, BALANCE, BORDER = "explore", "balance", "border"
K_VOTE = 10  # Avatar's BestOfStrategy(k=10)


def unit_rows(vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), as float64.

    Errors: ``ValueError`` if the input is not a 2-D array of finite numbers.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("embeddings must be a 2-D array of finite numbers")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


@dataclass(frozen=True)
class Choice:
    """The sample to show (index into the vectors), the phase that chose it and why."""

    index: int
    phase: str
    reason: str


def _class_members(labels: Sequence[str | None], classes: Sequence[str]) -> dict[str, np.ndarray]:
    found: dict[str, list[int]] = {c: [] for c in classes}
    for i, label in enumerate(labels):
        if label is not None and label in found:
            found[label].append(i)
    return {c: np.array(ix, dtype=int) for c, ix in found.items()}


def _far_from(
    x: np.ndarray, candidates: np.ndarray, members: dict[str, np.ndarray], sigmas: float
) -> np.ndarray:
    """The candidates farther than mean + ``sigmas``·std from every given class's centre."""
    keep = np.ones(len(candidates), dtype=bool)
    for ix in members.values():
        centre = x[ix].mean(axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        spread = 1.0 - x[ix] @ centre
        limit = spread.mean() + sigmas * spread.std()
        keep &= (1.0 - x[candidates] @ centre) > limit
    return candidates[keep]


def _class_distances(
    x: np.ndarray, rows: np.ndarray, members: dict[str, np.ndarray], k: int = 3
) -> tuple[list[str], np.ndarray]:
    """Distance of each row to each class with labels: the mean of its ``k`` nearest labelled
    members (fewer when the class has fewer). Output: the class names and a rows × classes
    array."""
    names = [c for c, ix in members.items() if len(ix)]
    out = np.empty((len(rows), len(names)))
    for j, c in enumerate(names):
        d = 1.0 - x[rows] @ x[members[c]].T
        kk = min(k, d.shape[1])
        out[:, j] = np.partition(d, kk - 1, axis=1)[:, :kk].mean(axis=1)
    return names, out


def choose_next(
    vectors: np.ndarray,
    labels: Sequence[str | None],
    candidates: Sequence[int],
    classes: Sequence[str],
    rng: np.random.Generator,
    *,
    min_per_class: int = 5,
    max_gap: int = 5,
) -> Choice | None:
    """The next sample to label.

    Inputs: ``vectors`` (n × d, unit rows: see :func:`unit_rows`); ``labels`` (n: the known
    label of each sample or None); ``candidates`` (indices that may be shown: unlabelled,
    not skipped); ``classes`` (every person who may be a label); ``rng`` for the random
    choices. Output: a :class:`Choice`, or None when there is no candidate.
    """
    cands = np.asarray(list(candidates), dtype=int)
    if len(cands) == 0:
        return None
    x = vectors
    members = _class_members(labels, classes)
    sizes = {c: len(ix) for c, ix in members.items()}

    short = [c for c in classes if sizes[c] < min_per_class]
    if short:
        full = {c: ix for c, ix in members.items() if sizes[c] >= min_per_class}
        if not full:
            i = int(rng.choice(cands))
            return Choice(i, EXPLORE, f"{', '.join(short)}: fewer than {min_per_class} samples")
        for sigmas in (3.0, 2.0):
            far = _far_from(x, cands, full, sigmas)
            if len(far):
                i = int(rng.choice(far))
                return Choice(i, EXPLORE, f"far ({sigmas:.0f}σ) from {', '.join(sorted(full))}")

    present = {c: n for c, n in sizes.items() if n > 0}
    if not present:
        return Choice(int(rng.choice(cands)), EXPLORE, "nothing labelled yet")
    names, dist = _class_distances(x, cands, members)
    nearest = np.argmin(dist, axis=1)
    if len(present) > 1 and max(present.values()) - min(present.values()) > max_gap:
        # Smallest first; a class whose region has no candidate left cannot be balanced.
        for small in sorted(present, key=lambda c: (present[c], c)):
            region = cands[nearest == names.index(small)]
            if len(region):
                d = 1.0 - x[region] @ x[members[small]].T
                i = int(region[np.argmax(d.min(axis=1))])
                return Choice(i, BALANCE, f"{small} has {present[small]} samples")
            if present[small] >= max(present.values()) - max_gap:
                break
    if len(names) < 2:
        i = int(cands[np.argmax(dist[:, 0])])
        return Choice(i, BORDER, f"farthest from {names[0]}")
    two = np.sort(dist, axis=1)[:, :2]
    margin = two[:, 1] - two[:, 0]
    best = int(np.argmin(margin))
    order = np.argsort(dist[best])[:2]
    pair = " and ".join(names[j] for j in order)
    return Choice(int(cands[best]), BORDER, f"between {pair}")


def most_doubtful(
    vectors: np.ndarray,
    labels: Sequence[str | None],
    candidates: Sequence[int],
    classes: Sequence[str],
) -> Choice | None:
    """Refinement of a labelled set: the candidate (a labelled sample) whose label its
    neighbours doubt most. Samples that the other labelled samples would identify as someone
    else come first, the one farthest inside the other class first; then the rest, closest
    to a border first.

    Inputs as for :func:`choose_next`; each candidate has a label. Output: a
    :class:`Choice` (phase ``"refine"``) or None with no candidate.
    """
    cands = [i for i in candidates if labels[i] is not None]
    if not cands:
        return None
    x = vectors
    members = _class_members(labels, classes)
    best: tuple[float, int, str] | None = None
    for i in cands:
        others = {c: ix[ix != i] for c, ix in members.items()}
        names, dist = _class_distances(x, np.array([i]), others)
        if not names:
            continue
        own = labels[i]
        d = dict(zip(names, dist[0], strict=True))
        rival = min((c for c in names if c != own), key=lambda c: d[c], default=None)
        if rival is None:
            continue
        # Positive: nearer to the rival than to its own class (the neighbours disagree).
        doubt = d.get(own, 2.0) - d[rival]
        if best is None or doubt > best[0]:
            best = (doubt, i, rival)
    if best is None:
        return Choice(cands[0], "refine", "no other class to compare with")
    doubt, i, rival = best
    word = "nearer to" if doubt > 0 else "near"
    return Choice(i, "refine", f"labelled {labels[i]}, {word} {rival}")


# -- identification and its accuracy -------------------------------------------------------


def knn_vote(similarities: np.ndarray, labels: Sequence[str], k: int = K_VOTE) -> list[str | None]:
    """The majority label among the ``k`` most similar labelled samples, per row.

    Inputs: ``similarities`` (queries × labelled, cosine similarity; ``-inf`` excludes a
    pair), ``labels`` of the labelled samples. Ties go to the label whose members are nearer
    (their summed similarity), then by name. Output: a label per query (None with no
    labelled sample).
    """
    labels = list(labels)
    out: list[str | None] = []
    if similarities.shape[1] == 0:
        return [None] * similarities.shape[0]
    kk = min(k, similarities.shape[1])
    top = np.argpartition(-similarities, kk - 1, axis=1)[:, :kk]
    for row, ix in enumerate(top):
        ix = [i for i in ix if np.isfinite(similarities[row, i])]
        if not ix:
            out.append(None)
            continue
        votes = Counter(labels[i] for i in ix)
        weight = Counter()
        for i in ix:
            weight[labels[i]] += similarities[row, i]
        out.append(max(votes, key=lambda c: (votes[c], weight[c], c)))
    return out


def leave_one_out(vectors: np.ndarray, labels: Sequence[str], k: int = K_VOTE) -> list[str | None]:
    """Each sample identified by the ``k``-NN vote of all the others (cosine)."""
    x = unit_rows(vectors)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return knn_vote(sims, labels, k)


def confusion(truth: Sequence[str], guess: Sequence[str | None], classes: Sequence[str]):
    """Counts ``[true class][guessed class]`` as nested dicts (None guesses under ``"?"``)."""
    table = {t: {g: 0 for g in [*classes, "?"]} for t in classes}
    for t, g in zip(truth, guess, strict=True):
        table.setdefault(t, {c: 0 for c in [*classes, "?"]})
        table[t][g if g in table[t] else "?"] += 1
    return table
