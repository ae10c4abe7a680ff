"""Thompson-sampling allocation for content modules (Bernoulli rewards), with a floor per arm. Pure.

Each arm's conversion rate has a Beta(1 + successes, 1 + failures) posterior. The share of
traffic an arm gets is the posterior probability that it is the best arm (estimated by
Monte Carlo draws), mixed with a uniform floor so every arm keeps at least ``min_share``
(exploration never stops and a late bloomer can recover).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Arm:
    key: str
    successes: int
    trials: int


def probability_best(arms: Sequence[Arm], *, draws: int = 20000, seed: int = 0) -> list[float]:
    if not arms:
        return []
    rng = np.random.default_rng(seed)
    samples = np.column_stack(
        [rng.beta(1 + a.successes, 1 + max(a.trials - a.successes, 0), size=draws) for a in arms]
    )
    best = np.bincount(samples.argmax(axis=1), minlength=len(arms))
    return (best / draws).tolist()


def thompson_allocation(
    arms: Sequence[Arm], *, min_share: float = 0.05, draws: int = 20000, seed: int = 0
) -> dict[str, float]:
    """Traffic share per arm: ``min_share + (1 - k * min_share) * P(arm is best)``."""
    k = len(arms)
    if k == 0:
        return {}
    if not 0 <= min_share <= 1 / k:
        raise ValueError(f"min_share must be between 0 and 1/{k}.")
    p_best = probability_best(arms, draws=draws, seed=seed)
    return {a.key: min_share + (1 - k * min_share) * p for a, p in zip(arms, p_best, strict=True)}


def choose_arm(allocation: dict[str, float], bucket: float) -> str:
    """The arm whose cumulative share holds ``bucket`` in [0, 1) (e.g. a GrowthBook hash)."""
    cumulative = 0.0
    keys = list(allocation)
    for key in keys:
        cumulative += allocation[key]
        if bucket < cumulative:
            return key
    return keys[-1]
