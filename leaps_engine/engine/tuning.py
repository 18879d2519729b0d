"""Grid search of the priming weights and regulariser scale (paper Supp. S2).

Each trial synthesizes the same targets with one ``(lambda_first, lambda_last, r)`` and is scored on
the verifier: top-1 accuracy first, then the mean verifier probability of the targets, then the
inverted model's top-1. The paper searched with Mango over 1K-step runs; a plain grid over the same
values is exhaustive at this size.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from leaps_engine.config import Acceleration, SynthesisConfig
from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.engine.synthesis import StepState, Target, synthesize
from leaps_engine.errors import LeapsError

PAPER_GRID: dict[str, tuple[float, ...]] = {
    "lambda_first": (0.5, 0.625, 0.75, 0.875, 1.0),
    "lambda_last": (0.1, 0.2, 0.3, 0.4, 0.5),
    "r": (1e-3, 2.5e-3, 5e-3, 7.5e-3, 1e-2),
}


@dataclass
class Trial:
    """One grid point and its scores (accuracies in percent)."""

    lambda_first: float
    lambda_last: float
    r: float
    verifier_top1: float
    verifier_target_prob: float
    model_top1: float
    seconds: float

    def rank_key(self) -> tuple[float, float, float]:
        return (self.verifier_top1, self.verifier_target_prob, self.model_top1)


def grid_points(grid: dict[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, ``lambda_first`` varying slowest."""
    names = ("lambda_first", "lambda_last", "r")
    for name in names:
        if not grid.get(name):
            raise LeapsError(f"the tuning grid has no value for {name}")
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def tune(
    model: VideoAdapter,
    verifier: VideoAdapter,
    targets: Sequence[Target],
    config: SynthesisConfig,
    grid: dict[str, Sequence[float]] = PAPER_GRID,
    acceleration: Acceleration | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    callbacks: Sequence[Callable[[StepState], None]] = (),
) -> list[Trial]:
    """Run every grid point on ``targets`` (all in one batch) and return the trials in grid order;
    ``on_trial`` is called after each point, ``callbacks`` after every step of every point's synthesis."""
    if config.method != "leaps":
        raise LeapsError("tuning searches LEAPS's priming weights and r; the baselines have none")
    trials = []
    for point in grid_points(grid):
        started = time.perf_counter()
        result = synthesize(model, targets, verifier=verifier, config=config.replace(**point), callbacks=callbacks,
                            acceleration=acceleration)
        scores = result.scores
        trial = Trial(
            **point,
            verifier_top1=100.0 * sum(s.verifier_top1 == s.target_class for s in scores) / len(scores),
            verifier_target_prob=sum(s.verifier_target_prob or 0.0 for s in scores) / len(scores),
            model_top1=100.0 * sum(s.model_top1 == s.target_class for s in scores) / len(scores),
            seconds=time.perf_counter() - started,
        )
        trials.append(trial)
        if on_trial:
            on_trial(trial)
    return trials


def best_trial(trials: Sequence[Trial]) -> Trial:
    """The winner: highest verifier top-1, then verifier target probability, then model top-1."""
    return max(trials, key=Trial.rank_key)
