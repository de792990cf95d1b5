"""Active learning for identification: labels a person gives before the labelled set
identifies 95 % of all samples, with the strategy and in random order, and how long one
choice takes (the wait after each click).

.venv/bin/python bench/identification_active.py [--seeds 11] [--target 0.95]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulation is in tests/

from chara_assets.identification.active import choose_next, most_doubtful
from tests.identification_simulation import (
    clustered_vectors,
    random_order,
    simulate,
    strategy_order,
)

SCENARIOS = {
    # name: (samples per person, dimensions, spread)
    "unbalanced household (200/100/40/20/10)": ([200, 100, 40, 20, 10], 32, 1.0),
    "balanced, 3 people (60 each)": ([60, 60, 60], 32, 1.0),
    "unbalanced, more overlap": ([200, 100, 40, 20, 10], 32, 1.3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=11)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    for name, (sizes, dim, spread) in SCENARIOS.items():
        strategy, baseline = [], []
        for seed in range(args.seeds):
            x, truth = clustered_vectors(sizes, dim=dim, spread=spread, seed=seed)
            classes = sorted(set(truth))
            n = len(truth)
            strategy.append(
                simulate(x, truth, strategy_order(classes, seed), target=args.target) or n
            )
            baseline.append(simulate(x, truth, random_order(seed), target=args.target) or n)
        print(
            f"{name}: labels to {args.target:.0%} accuracy, median of {args.seeds} seeds: "
            f"strategy {statistics.median(strategy)}, random {statistics.median(baseline)}"
        )
        print(f"    strategy {strategy}\n    random   {baseline}")

    # The wait after a click: one choice over 5000 samples of 256 dimensions.
    x, truth = clustered_vectors([2000, 1500, 1000, 400, 100], dim=256, spread=1.0, seed=0)
    x = x.astype(np.float32)  # as the annotation service holds them
    classes = sorted(set(truth))
    rng = np.random.default_rng(0)
    for labelled in (10, 200, 1000):
        labels: list[str | None] = [None] * len(truth)
        for i in rng.choice(len(truth), labelled, replace=False):
            labels[i] = truth[i]
        candidates = [i for i, label in enumerate(labels) if label is None]
        started = time.perf_counter()
        choice = choose_next(x, labels, candidates, classes, rng)
        took = time.perf_counter() - started
        print(
            f"choose_next, 5000 samples, {labelled} labelled: {took * 1000:.0f} ms ({choice.phase})"
        )
    labels = list(truth[:500]) + [None] * (len(truth) - 500)
    started = time.perf_counter()
    most_doubtful(x[:500], labels[:500], list(range(500)), classes)
    print(f"most_doubtful, 500 labelled samples: {(time.perf_counter() - started) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
