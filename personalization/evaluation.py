"""Offline evaluation: splits and ranking metrics as pure functions (no Django imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


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


def random_split(user_index: np.ndarray, *, test_ratio: float = 0.25, seed: int = 0) -> Split:
    """Hold out a random ``test_ratio`` share of each user's interactions (floor, at least
    one when the user has two or more; a single interaction stays in training)."""
    if not 0 < test_ratio < 1:
        raise ValueError("test_ratio must be between 0 and 1")
    user_index = np.asarray(user_index)
    n = len(user_index)
    test = np.zeros(n, dtype=bool)
    if n == 0:
        return Split(train=~test, test=test)
    keys = np.random.default_rng(seed).random(n)
    order = np.lexsort((keys, user_index))
    sorted_users = user_index[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_users)) + 1))
    counts = np.diff(np.concatenate((starts, [n])))
    n_test = np.floor(counts * test_ratio).astype(np.int64)
    n_test[(counts >= 2) & (n_test == 0)] = 1
    position = np.arange(n) - np.repeat(starts, counts)
    test[order[position < np.repeat(n_test, counts)]] = True
    return Split(train=~test, test=test)


# --- Batch metrics over recommendation matrices ----------------------------------------
#
# ``recommended`` is an int array [n_users, k] of item indices, best first, -1 for empty
# slots (as returned by the models' ``recommend``). Per-user functions return one value per
# row; NaN marks users for whom a metric is undefined (they are left out of the means).


def _hits(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean [n, k]: is recommended[u, r] among user u's relevant items."""
    relevant = sp.csr_matrix(relevant)
    n_items = relevant.shape[1]
    rows = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr))
    keys = np.sort(rows.astype(np.int64) * n_items + relevant.indices)
    wanted = np.arange(recommended.shape[0])[:, None].astype(np.int64) * n_items + recommended
    found = np.searchsorted(keys, wanted)
    found = np.minimum(found, max(len(keys) - 1, 0))
    return (recommended >= 0) & (keys[found] == wanted) if len(keys) else np.zeros(recommended.shape, bool)


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.csr_matrix, *, k: int = 10
) -> dict[str, np.ndarray]:
    """Per-user precision, recall, nDCG (binary relevance), AP (normalised by
    min(|relevant|, k)) and hit rate at k. Users without relevant items get NaN."""
    if k <= 0:
        raise ValueError("k must be positive")
    recommended = np.asarray(recommended)[:, :k]
    hits = _hits(recommended, relevant).astype(np.float64)
    n_relevant = np.diff(sp.csr_matrix(relevant).indptr).astype(np.float64)
    defined = n_relevant > 0
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k).astype(np.int64) - 1]
    n_hits = hits.sum(axis=1)
    cumulative = np.cumsum(hits, axis=1)
    ap = (hits * cumulative / np.arange(1, hits.shape[1] + 1)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant,
            "ndcg": (hits * discounts[: hits.shape[1]]).sum(axis=1) / ideal,
            "map": ap / np.minimum(n_relevant, k),
            "hit_rate": (n_hits > 0).astype(np.float64),
        }
    return {name: np.where(defined, values, np.nan) for name, values in out.items()}


def recommendation_counts(recommended: np.ndarray, *, n_items: int) -> np.ndarray:
    """How many lists each item appears in."""
    valid = recommended[recommended >= 0]
    return np.bincount(valid, minlength=n_items)


def catalog_coverage(recommended: np.ndarray, *, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    return (
        float((recommendation_counts(recommended, n_items=n_items) > 0).sum() / n_items) if n_items else 0.0
    )


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal; -> 1: one item gets everything)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(np.sum((2 * ranks - n - 1) * x) / (n * x.sum()))


def intra_list_diversity(
    recommended: np.ndarray, *, item_tags: sp.spmatrix, similarity: str = "jaccard", chunk_size: int = 2048
) -> np.ndarray:
    """Per user, 1 - mean pairwise similarity of the listed items' tag sets (Jaccard or
    cosine; two items without tags count as dissimilar). NaN for lists of fewer than two."""
    if similarity not in ("jaccard", "cosine"):
        raise ValueError("similarity must be 'jaccard' or 'cosine'")
    tags = sp.csr_matrix(item_tags, dtype=np.float64)
    tags.data[:] = 1.0
    n, k = recommended.shape
    out = np.full(n, np.nan)
    for start in range(0, n, chunk_size):
        block = recommended[start : start + chunk_size]
        valid = block >= 0
        flat = tags[np.where(valid, block, 0).ravel()].toarray().reshape(len(block), k, -1)
        flat *= valid[:, :, None]
        inter = np.einsum("ukg,ulg->ukl", flat, flat)
        size = flat.sum(axis=2)
        if similarity == "jaccard":
            denominator = size[:, :, None] + size[:, None, :] - inter
        else:
            denominator = np.sqrt(size[:, :, None] * size[:, None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            sim = np.where(denominator > 0, inter / denominator, 0.0)
        pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(k, dtype=bool)[None]
        n_pairs = pair.sum(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_sim = (sim * pair).sum(axis=(1, 2)) / n_pairs
        out[start : start + len(block)] = np.where(n_pairs > 0, 1.0 - mean_sim, np.nan)
    return out


def novelty(recommended: np.ndarray, *, item_probability: np.ndarray) -> np.ndarray:
    """Per user, mean self-information -log2 p(i) of the listed items, with p(i) the share
    of users who interacted with i. NaN for empty lists."""
    valid = recommended >= 0
    info = -np.log2(np.asarray(item_probability, dtype=np.float64)[np.where(valid, recommended, 0)])
    with np.errstate(invalid="ignore"):
        return (info * valid).sum(axis=1) / valid.sum(axis=1)


def average_popularity(recommended: np.ndarray, *, item_popularity: np.ndarray) -> np.ndarray:
    """Per user, mean popularity (e.g. training interaction count) of the listed items."""
    valid = recommended >= 0
    values = np.asarray(item_popularity, dtype=np.float64)[np.where(valid, recommended, 0)]
    with np.errstate(invalid="ignore"):
        return (values * valid).sum(axis=1) / valid.sum(axis=1)


def miscalibration(
    recommended: np.ndarray, *, history: sp.csr_matrix, item_tags: sp.spmatrix, alpha: float = 0.01
) -> np.ndarray:
    """Per user, Steck's KL(p || q~): p(g|u) the tag mix of the user's history (weighted by
    interaction strength), q(g|u) that of the list (uniform weights), each item's tags
    sharing its weight equally, q~ = (1 - alpha) q + alpha p. NaN when either has no tags."""
    tags = sp.csr_matrix(item_tags, dtype=np.float64)
    tags.data[:] = 1.0
    tag_count = np.diff(tags.indptr)
    per_item = sp.diags(1.0 / np.maximum(tag_count, 1)) @ tags
    history = sp.csr_matrix(history, dtype=np.float64)
    p = np.asarray((history @ per_item).todense())
    p_mass = p.sum(axis=1, keepdims=True)
    n = recommended.shape[0]
    valid = recommended >= 0
    listed = sp.csr_matrix(
        (np.ones(valid.sum()), (np.repeat(np.arange(n), valid.sum(axis=1)), recommended[valid])),
        shape=(n, tags.shape[0]),
    )
    q = np.asarray((listed @ per_item).todense())
    q_mass = q.sum(axis=1, keepdims=True)
    defined = (p_mass[:, 0] > 0) & (q_mass[:, 0] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / p_mass
        q = q / q_mass
        smoothed = (1 - alpha) * q + alpha * p
        terms = np.where(p > 0, p * np.log(p / smoothed), 0.0)
    return np.where(defined, terms.sum(axis=1), np.nan)


def evaluate_model(
    model,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    k: int = 10,
    item_tags: sp.spmatrix | None = None,
    item_popularity: np.ndarray | None = None,
    by_index: bool | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Recommend k items to every user with held-out positives (test items they did not
    already have in training) and compute all metrics in batch.

    ``model`` is any fitted ``recommenders.Recommender``. Users are passed by index when the
    model was fitted on ``train`` (``by_index=None`` detects it), else as interaction rows.
    ``item_popularity`` defaults to the number of training users per item."""
    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test)
    relevant = (test > 0).astype(np.float64) - (test > 0).multiply(train > 0)
    relevant = sp.csr_matrix(relevant)
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    n_users, n_items = train.shape
    if users.size == 0:
        return {"users_evaluated": 0}
    if by_index is None:
        fitted = getattr(model, "user_items", None)
        by_index = fitted is not None and fitted.shape == train.shape and (fitted != train).nnz == 0
    queries = users if by_index else train[users]
    recommended, _ = model.recommend(queries, k, exclude_seen=True, chunk_size=chunk_size)
    result: dict[str, float] = {}
    for name, values in ranking_metrics(recommended, relevant[users], k=k).items():
        result[f"{name}@{k}"] = float(np.nanmean(values))
    if item_popularity is None:
        item_popularity = np.diff(sp.csc_matrix(train).indptr)
    popularity = np.asarray(item_popularity, dtype=np.float64)
    counts = recommendation_counts(recommended, n_items=n_items)
    result["coverage"] = catalog_coverage(recommended, n_items=n_items)
    result["novelty"] = _mean(
        novelty(recommended, item_probability=np.maximum(popularity, 1) / max(n_users, 1))
    )
    result["avg_popularity"] = _mean(average_popularity(recommended, item_popularity=popularity))
    result["gini"] = gini(counts)
    if item_tags is not None:
        result["diversity"] = _mean(intra_list_diversity(recommended, item_tags=item_tags))
        result["miscalibration"] = _mean(
            miscalibration(recommended, history=train[users], item_tags=item_tags)
        )
    result["users_evaluated"] = int(users.size)
    return result


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
