"""Offline evaluation: splits and ranking metrics as pure functions (no Django imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # boolean mask over interactions
    test: np.ndarray


def chronological_split(user_index: np.ndarray, timestamps: np.ndarray, *, test_ratio: float = 0.2) -> Split:
    """Hold out each user's most recent ``test_ratio`` share of interactions.

    Users with a single interaction keep it in training (nothing to learn from otherwise).
    """
    if not 0 < test_ratio < 1:
        raise ValueError("test_ratio must be between 0 and 1")
    n = len(user_index)
    test = np.zeros(n, dtype=bool)
    if n == 0:
        return Split(train=~test, test=test)
    order = np.lexsort((timestamps, user_index))
    sorted_users = user_index[order]
    boundaries = np.flatnonzero(np.diff(sorted_users)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [n]))
    for start, end in zip(starts, ends, strict=True):
        count = end - start
        n_test = int(np.floor(count * test_ratio))
        if count >= 2 and n_test == 0:
            n_test = 1
        if n_test:
            test[order[end - n_test : end]] = True
    return Split(train=~test, test=test)


def precision_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if k <= 0:
        raise ValueError("k must be positive")
    return sum(1 for item in ranked[:k] if item in relevant) / k


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in ranked[:k] if item in relevant) / len(relevant)


def hit_rate_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Binary-relevance nDCG: DCG of the list over DCG of a perfect list."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / np.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return float(dcg / ideal)


def average_precision_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """AP@k normalised by min(|relevant|, k)."""
    if not relevant:
        return 0.0
    hits = 0
    total = 0.0
    for rank, item in enumerate(ranked[:k]):
        if item in relevant:
            hits += 1
            total += hits / (rank + 1)
    return total / min(len(relevant), k)


def evaluate_rankings(
    rankings: Mapping[int, Sequence[int]], relevant: Mapping[int, set[int]], *, k: int, n_items: int
) -> dict[str, float]:
    """Mean accuracy metrics over users that have held-out items, plus catalog coverage."""
    users = [u for u, items in relevant.items() if items]
    if not users:
        return {"users_evaluated": 0}
    per_metric = {"precision": [], "recall": [], "ndcg": [], "map": [], "hit_rate": []}
    recommended: set[int] = set()
    for user in users:
        ranked = list(rankings.get(user, []))[:k]
        rel = relevant[user]
        recommended.update(ranked)
        per_metric["precision"].append(precision_at_k(ranked, rel, k))
        per_metric["recall"].append(recall_at_k(ranked, rel, k))
        per_metric["ndcg"].append(ndcg_at_k(ranked, rel, k))
        per_metric["map"].append(average_precision_at_k(ranked, rel, k))
        per_metric["hit_rate"].append(hit_rate_at_k(ranked, rel, k))
    result = {f"{name}@{k}": float(np.mean(values)) for name, values in per_metric.items()}
    result["coverage"] = len(recommended) / n_items if n_items else 0.0
    result["users_evaluated"] = len(users)
    return result
