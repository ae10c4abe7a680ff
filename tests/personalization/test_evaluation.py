import math

import numpy as np
import pytest

from personalization import evaluation


def brute_ndcg(ranked, relevant, k):
    gains = [1 if item in relevant else 0 for item in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal_gains = sorted(gains + [1] * len(relevant), reverse=True)[: min(k, len(relevant))]
    ideal = sum(1 / math.log2(i + 2) for i in range(len(ideal_gains)))
    return dcg / ideal if ideal else 0.0


def brute_ap(ranked, relevant, k):
    precisions = [
        sum(1 for x in ranked[: i + 1] if x in relevant) / (i + 1)
        for i in range(min(k, len(ranked)))
        if ranked[i] in relevant
    ]
    return sum(precisions) / min(len(relevant), k) if relevant else 0.0


@pytest.mark.parametrize("seed", range(20))
def test_ranking_metrics_match_brute_force_definitions(seed):
    rng = np.random.default_rng(seed)
    ranked = rng.permutation(30)[:15].tolist()
    relevant = set(rng.choice(30, size=rng.integers(1, 8), replace=False).tolist())
    for k in (1, 5, 10):
        hits = len(set(ranked[:k]) & relevant)
        assert evaluation.precision_at_k(ranked, relevant, k) == pytest.approx(hits / k)
        assert evaluation.recall_at_k(ranked, relevant, k) == pytest.approx(hits / len(relevant))
        assert evaluation.hit_rate_at_k(ranked, relevant, k) == (1.0 if hits else 0.0)
        assert evaluation.ndcg_at_k(ranked, relevant, k) == pytest.approx(brute_ndcg(ranked, relevant, k))
        assert evaluation.average_precision_at_k(ranked, relevant, k) == pytest.approx(
            brute_ap(ranked, relevant, k)
        )


def test_a_perfect_ranking_scores_one_and_an_empty_one_zero():
    assert evaluation.ndcg_at_k([1, 2, 3], {1, 2, 3}, 3) == pytest.approx(1.0)
    assert evaluation.average_precision_at_k([1, 2, 3], {1, 2, 3}, 3) == pytest.approx(1.0)
    assert evaluation.ndcg_at_k([], {1}, 10) == 0.0
    assert evaluation.recall_at_k([1], set(), 10) == 0.0


def test_chronological_split_holds_out_each_users_latest_fifth():
    users = np.array([0] * 10 + [1] * 5 + [2])
    times = np.array([*range(10, 0, -1), 5, 1, 4, 2, 3, 7], dtype=float)
    split = evaluation.chronological_split(users, times, test_ratio=0.2)
    # user 0: the two latest (times 10 and 9, the first two rows); user 1: its latest (time 5).
    assert split.test.tolist() == [True, True] + [False] * 8 + [True, False, False, False, False] + [False]
    assert (split.train == ~split.test).all()


def test_chronological_split_keeps_every_held_out_interaction_later_than_the_users_training_ones():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 50, size=2000)
    times = rng.random(2000)
    split = evaluation.chronological_split(users, times)
    for user in range(50):
        mine = users == user
        if (mine & split.test).any():
            assert times[mine & split.test].min() >= times[mine & split.train].max()


def test_evaluate_rankings_averages_over_users_with_held_out_items_and_reports_coverage():
    rankings = {0: [1, 2], 1: [3, 4], 2: [5]}
    relevant = {0: {1}, 1: {9}, 2: set()}
    result = evaluation.evaluate_rankings(rankings, relevant, k=2, n_items=10)
    assert result["users_evaluated"] == 2
    assert result["hit_rate@2"] == pytest.approx(0.5)
    assert result["precision@2"] == pytest.approx(0.25)
    assert result["coverage"] == pytest.approx(4 / 10)


def test_split_rejects_a_ratio_outside_zero_and_one():
    with pytest.raises(ValueError):
        evaluation.chronological_split(np.array([0]), np.array([0.0]), test_ratio=1.0)


def test_brute_force_helpers_agree_on_a_handmade_case():
    # Sanity check for the reference implementations themselves.
    assert brute_ap([1, 0, 2], {1, 2}, 3) == pytest.approx((1 + 2 / 3) / 2)
