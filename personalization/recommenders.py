"""Recommender algorithms: pure functions over arrays (no Django imports).

Items and users are dense integer indices; callers map them to database ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrendingModel:
    """Items ranked by time-decayed interaction strength."""

    item_index: np.ndarray  # item indices, best first
    scores: np.ndarray  # matching scores, descending

    def top(self, k: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for item, score in zip(self.item_index.tolist(), self.scores.tolist(), strict=True):
            if item in exclude:
                continue
            out.append((item, score))
            if len(out) == k:
                break
        return out


def trending_fit(
    *,
    item_index: np.ndarray,
    weights: np.ndarray,
    age_days: np.ndarray,
    n_items: int,
    half_life_days: float | None,
    keep: int,
) -> TrendingModel:
    """Score each item by the sum of its interaction weights, each halved every
    ``half_life_days`` of age (no decay when None), and keep the ``keep`` best."""
    if half_life_days is not None and half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    if half_life_days is None:
        decayed = weights.astype(np.float64)
    else:
        decayed = weights * np.power(0.5, age_days / half_life_days)
    scores = np.bincount(item_index, weights=decayed, minlength=n_items)
    positive = np.flatnonzero(scores > 0)
    # Stable order: by score descending, then by item index for ties.
    order = positive[np.lexsort((positive, -scores[positive]))][:keep]
    return TrendingModel(item_index=order.astype(np.int64), scores=scores[order])
