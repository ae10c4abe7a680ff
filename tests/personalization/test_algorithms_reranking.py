"""Re-ranking at request time: MMR diversification and Steck's calibration."""

import numpy as np
import pytest
import scipy.sparse as sp

from personalization import recommenders


def test_mmr_keeps_the_order_at_lambda_one_and_skips_near_duplicates_at_lower_lambda():
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    candidates = np.array([0, 1, 2])
    scores = np.array([1.0, 0.95, 0.5])
    kwargs = {"candidates": candidates, "scores": scores, "item_vectors": vectors, "k": 2}
    assert recommenders.mmr_rerank(**kwargs, lambda_=1.0).tolist() == [0, 1]
    assert recommenders.mmr_rerank(**kwargs, lambda_=0.5).tolist() == [0, 2]


def test_calibration_brings_the_list_closer_to_the_history_tag_mix():
    item_tags = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=float))
    history = np.array([0.5, 0.5])
    kwargs = {"candidates": np.arange(5), "scores": np.array([1.0, 0.9, 0.8, 0.3, 0.2]), "k": 4}
    plain = recommenders.calibrate_rerank(**kwargs, item_tags=item_tags, history=history, lambda_=0.0)
    assert plain.tolist() == [0, 1, 2, 3]
    calibrated = recommenders.calibrate_rerank(**kwargs, item_tags=item_tags, history=history, lambda_=0.9)
    assert sorted(calibrated.tolist()) == [0, 1, 3, 4]

    def kl_of(items):
        q = recommenders.tag_distribution(item_tags=item_tags, items=np.array(items))
        return recommenders.kl_divergence(history, q)

    assert kl_of(calibrated) < kl_of(plain)


def test_kl_divergence_uses_stecks_smoothing():
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    smoothed = 0.99 * q + 0.01 * p
    expected = sum(pi * np.log(pi / si) for pi, si in zip(p, smoothed, strict=True))
    assert recommenders.kl_divergence(p, q, alpha=0.01) == pytest.approx(expected)


def loop_mmr(candidates, scores, vectors, k, lam):
    low, high = min(scores), max(scores)
    rel = [(s - low) / (high - low) for s in scores]

    def cos(a, b):
        na, nb = np.sqrt(a @ a), np.sqrt(b @ b)
        return float(a @ b / (na * nb)) if na and nb else 0.0

    picked = []
    while len(picked) < k:
        best, best_value = None, -np.inf
        for c in range(len(candidates)):
            if c in picked:
                continue
            penalty = max((cos(vectors[candidates[c]], vectors[candidates[p]]) for p in picked), default=0.0)
            value = lam * rel[c] - (1 - lam) * penalty
            if value > best_value:
                best, best_value = c, value
        picked.append(best)
    return [int(candidates[p]) for p in picked]


@pytest.mark.parametrize("seed", range(5))
def test_mmr_matches_a_loop_over_the_greedy_definition(seed):
    rng = np.random.default_rng(seed)
    vectors = (rng.random((30, 6)) < 0.4).astype(float)
    candidates = rng.permutation(30)[:12]
    scores = np.sort(rng.random(12))[::-1]
    got = recommenders.mmr_rerank(
        candidates=candidates, scores=scores, item_vectors=vectors, k=6, lambda_=0.6
    )
    assert got.tolist() == loop_mmr(candidates, scores, vectors, 6, 0.6)


@pytest.mark.parametrize("seed", range(5))
def test_calibration_matches_a_loop_over_stecks_greedy_objective(seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((20, 4)) < 0.4).astype(float)
    dense[dense.sum(axis=1) == 0, 0] = 1.0
    tags = sp.csr_matrix(dense)
    candidates = rng.permutation(20)[:10]
    scores = np.sort(rng.random(10))[::-1]
    history = rng.dirichlet(np.ones(4))
    got = recommenders.calibrate_rerank(
        candidates=candidates, scores=scores, item_tags=tags, history=history, k=5, lambda_=0.7
    )
    rel = (scores - scores.min()) / (scores.max() - scores.min())
    picked: list[int] = []
    for _ in range(5):
        best, best_value = None, -np.inf
        for c in range(10):
            if c in picked:
                continue
            chosen = [*picked, c]
            q = sum(dense[candidates[i]] / dense[candidates[i]].sum() for i in chosen) / len(chosen)
            smoothed = 0.99 * q + 0.01 * history
            kl = sum(p * np.log(p / s) for p, s in zip(history, smoothed, strict=True) if p > 0)
            value = 0.3 * sum(rel[i] for i in chosen) - 0.7 * kl
            if value > best_value:
                best, best_value = c, value
        picked.append(best)
    assert got.tolist() == [int(candidates[i]) for i in picked]
