import math

import numpy as np
import pytest
import scipy.sparse as sp

from personalization import evaluation, recommenders


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


# --- Random split ----------------------------------------------------------------------


def test_random_split_holds_out_a_seeded_quarter_of_each_users_interactions():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, size=1000)
    split = evaluation.random_split(users, test_ratio=0.25, seed=7)
    for user in range(30):
        count = (users == user).sum()
        expected = max(int(np.floor(count * 0.25)), 1 if count >= 2 else 0)
        assert (split.test & (users == user)).sum() == expected
    again = evaluation.random_split(users, test_ratio=0.25, seed=7)
    other = evaluation.random_split(users, test_ratio=0.25, seed=8)
    assert (again.test == split.test).all()
    assert (other.test != split.test).any()
    assert (split.train == ~split.test).all()


def test_random_split_keeps_a_single_interaction_in_training():
    split = evaluation.random_split(np.array([5, 1, 1]), test_ratio=0.5, seed=0)
    assert split.test.tolist()[0] is False
    assert split.test[1:].sum() == 1


# --- Batch metrics against loops -------------------------------------------------------


def random_lists(seed, n_users=30, n_items=40, k=10):
    rng = np.random.default_rng(seed)
    recommended = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    recommended[rng.random((n_users, k)) < 0.1] = -1  # some empty slots
    relevant = sp.csr_matrix((rng.random((n_users, n_items)) < 0.15).astype(float))
    return recommended, relevant


@pytest.mark.parametrize("seed", range(5))
def test_batch_ranking_metrics_match_the_per_user_loops(seed):
    recommended, relevant = random_lists(seed)
    for k in (1, 5, 10):
        batch = evaluation.ranking_metrics(recommended, relevant, k=k)
        for u in range(len(recommended)):
            rel = set(relevant[u].indices.tolist())
            ranked = recommended[u].tolist()  # -1 is never relevant
            if not rel:
                assert all(np.isnan(values[u]) for values in batch.values())
                continue
            assert batch["precision"][u] == pytest.approx(sum(i in rel for i in ranked[:k]) / k)
            assert batch["recall"][u] == pytest.approx(sum(i in rel for i in ranked[:k]) / len(rel))
            assert batch["hit_rate"][u] == (1.0 if set(ranked[:k]) & rel else 0.0)
            assert batch["ndcg"][u] == pytest.approx(brute_ndcg(ranked, rel, k))
            assert batch["map"][u] == pytest.approx(brute_ap(ranked, rel, k))


def brute_gini(values):
    x = np.asarray(values, dtype=float)
    n = len(x)
    total = sum(abs(a - b) for a in x for b in x)
    return total / (2 * n * n * x.mean()) if x.sum() else 0.0


def test_coverage_counts_and_gini_match_loops():
    recommended, _ = random_lists(1)
    counts = [sum(int((row == i).any()) for row in recommended) for i in range(40)]
    assert evaluation.recommendation_counts(recommended, n_items=40).tolist() == counts
    assert evaluation.catalog_coverage(recommended, n_items=40) == pytest.approx(
        sum(c > 0 for c in counts) / 40
    )
    assert evaluation.gini(counts) == pytest.approx(brute_gini(counts))
    assert evaluation.gini(np.ones(5)) == pytest.approx(0.0)
    assert evaluation.gini([0, 0, 0, 10]) == pytest.approx(0.75)


def random_tags(seed, n_items=40, n_tags=6):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_items, n_tags)) < 0.3).astype(float)
    dense[0] = 0  # an item without tags
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("similarity", ["jaccard", "cosine"])
def test_intra_list_diversity_matches_pairwise_loops(similarity):
    recommended, _ = random_lists(2)
    tags = random_tags(2)
    sets = [set(tags[i].indices.tolist()) for i in range(40)]
    got = evaluation.intra_list_diversity(recommended, item_tags=tags, similarity=similarity, chunk_size=7)
    for u, row in enumerate(recommended):
        items = [i for i in row.tolist() if i >= 0]
        sims = []
        for a in items:
            for b in items:
                if a == b:
                    continue
                inter = len(sets[a] & sets[b])
                if similarity == "jaccard":
                    union = len(sets[a] | sets[b])
                    sims.append(inter / union if union else 0.0)
                else:
                    norm = math.sqrt(len(sets[a]) * len(sets[b]))
                    sims.append(inter / norm if norm else 0.0)
        assert got[u] == pytest.approx(1 - sum(sims) / len(sims))


def test_novelty_and_average_popularity_match_loops():
    recommended, _ = random_lists(3)
    rng = np.random.default_rng(3)
    popularity = rng.integers(1, 50, size=40)
    probability = popularity / 60
    novelty = evaluation.novelty(recommended, item_probability=probability)
    average = evaluation.average_popularity(recommended, item_popularity=popularity)
    for u, row in enumerate(recommended):
        items = [i for i in row.tolist() if i >= 0]
        assert novelty[u] == pytest.approx(sum(-math.log2(probability[i]) for i in items) / len(items))
        assert average[u] == pytest.approx(sum(popularity[i] for i in items) / len(items))


def test_miscalibration_matches_stecks_kl_computed_by_loops():
    recommended, _ = random_lists(4)
    tags = random_tags(4)
    rng = np.random.default_rng(4)
    history = sp.csr_matrix(
        np.where(rng.random((30, 40)) < 0.2, rng.integers(1, 4, (30, 40)), 0).astype(float)
    )
    got = evaluation.miscalibration(recommended, history=history, item_tags=tags, alpha=0.01)

    def distribution(items, weights):
        p = np.zeros(tags.shape[1])
        total = 0.0
        for item, weight in zip(items, weights, strict=True):
            own = tags[item].indices
            if len(own):
                for g in own:
                    p[g] += weight / len(own)
                total += weight
        return p / total if total else None

    for u, row in enumerate(recommended):
        p = distribution(history[u].indices.tolist(), history[u].data.tolist())
        listed = [i for i in row.tolist() if i >= 0]
        q = distribution(listed, [1.0] * len(listed))
        if p is None or q is None:
            assert np.isnan(got[u])
            continue
        kl = sum(p[g] * math.log(p[g] / (0.99 * q[g] + 0.01 * p[g])) for g in range(len(p)) if p[g] > 0)
        assert got[u] == pytest.approx(kl)


# --- evaluate_model --------------------------------------------------------------------


def test_evaluate_model_agrees_with_evaluate_rankings_and_the_per_metric_functions():
    rng = np.random.default_rng(5)
    dense = (rng.random((50, 30)) < 0.25).astype(np.float32)
    train_mask = rng.random((50, 30)) < 0.7
    train = sp.csr_matrix(dense * train_mask)
    test = sp.csr_matrix(dense * ~train_mask)
    model = recommenders.item_knn_fit(user_items=train, neighbours=10)
    tags = random_tags(5, n_items=30)
    result = evaluation.evaluate_model(model, train, test, k=5, item_tags=tags)

    relevant = {u: set(test[u].indices.tolist()) - set(train[u].indices.tolist()) for u in range(50)}
    relevant = {u: items for u, items in relevant.items() if items}
    items, _ = model.recommend(np.arange(50), 5)
    rankings = {u: [i for i in items[u].tolist() if i >= 0] for u in relevant}
    expected = evaluation.evaluate_rankings(rankings, relevant, k=5, n_items=30)
    for name in ("precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "coverage", "users_evaluated"):
        assert result[name] == pytest.approx(expected[name]), name
    users = sorted(relevant)
    popularity = np.diff(train.tocsc().indptr)
    assert result["gini"] == pytest.approx(
        evaluation.gini(evaluation.recommendation_counts(items[users], n_items=30))
    )
    assert result["novelty"] == pytest.approx(
        np.nanmean(evaluation.novelty(items[users], item_probability=np.maximum(popularity, 1) / 50))
    )
    assert {"diversity", "miscalibration", "avg_popularity"} <= set(result)
    # Passing rows instead of indices gives the same answer.
    assert evaluation.evaluate_model(model, train, test, k=5, by_index=False)["ndcg@5"] == pytest.approx(
        result["ndcg@5"]
    )
