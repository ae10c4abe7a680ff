import numpy as np
import pytest
import scipy.sparse as sp

from personalization import recommenders


def test_trending_sums_weights_and_halves_them_every_half_life():
    model = recommenders.trending_fit(
        item_index=np.array([0, 1, 1, 2]),
        weights=np.array([4.0, 1.0, 1.0, 3.0]),
        age_days=np.array([7.0, 0.0, 0.0, 0.0]),
        n_items=4,
        half_life_days=7.0,
        keep=10,
    )
    # item 0: 4 * 0.5 = 2; item 1: 2; item 2: 3; item 3 never seen is left out.
    assert model.item_index.tolist() == [2, 0, 1]
    assert model.scores.tolist() == pytest.approx([3.0, 2.0, 2.0])


def test_trending_without_decay_counts_raw_weights_and_keeps_the_best_only():
    model = recommenders.trending_fit(
        item_index=np.array([0, 1, 1, 2, 2, 2]),
        weights=np.ones(6),
        age_days=np.full(6, 100.0),
        n_items=3,
        half_life_days=None,
        keep=2,
    )
    assert model.item_index.tolist() == [2, 1]
    assert model.top(1, exclude={2}) == [(1, 2.0)]


def test_trending_refuses_a_non_positive_half_life():
    with pytest.raises(ValueError):
        recommenders.trending_fit(
            item_index=np.array([0]),
            weights=np.ones(1),
            age_days=np.zeros(1),
            n_items=1,
            half_life_days=0,
            keep=1,
        )


# --- Helpers ---------------------------------------------------------------------------


def random_interactions(seed, n_users=40, n_items=25, density=0.2, binary=False):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    values = np.ones((n_users, n_items)) if binary else rng.integers(1, 4, size=(n_users, n_items))
    return sp.csr_matrix(np.where(mask, values, 0.0), dtype=np.float32)


def two_clusters(seed=0, n_users=60, n_items=40, density=0.5):
    """Users 0..n/2 consume only items 0..m/2, the others only the rest."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    half_u, half_i = n_users // 2, n_items // 2
    dense[:half_u, :half_i] = rng.random((half_u, half_i)) < density
    dense[half_u:, half_i:] = rng.random((n_users - half_u, n_items - half_i)) < density
    return sp.csr_matrix(dense)


def brute_top(scores_row, seen, k):
    candidates = [(-s, i) for i, s in enumerate(scores_row) if i not in seen and np.isfinite(s) and s != 0]
    return [i for _, i in sorted(candidates)[:k]]


# --- Trending per group ----------------------------------------------------------------


def test_trending_per_facet_ranks_each_tags_items_by_their_global_decayed_score():
    item_index = np.array([0, 1, 1, 2, 3, 3, 3])
    weights = np.ones(7)
    ages = np.zeros(7)
    item_groups = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 1]]))  # 4 items x 2 tags
    groups = recommenders.trending_fit_by_group(
        item_index=item_index,
        weights=weights,
        age_days=ages,
        n_items=4,
        half_life_days=None,
        keep=10,
        item_groups=item_groups,
    )
    assert groups[0].item_index.tolist() == [1, 0]
    assert groups[1].item_index.tolist() == [3, 1, 2]


def test_trending_per_segment_matches_a_loop_over_each_segments_interactions():
    rng = np.random.default_rng(4)
    item_index = rng.integers(0, 12, size=300)
    user_index = rng.integers(0, 20, size=300)
    weights = rng.random(300)
    ages = rng.random(300) * 30
    user_groups = rng.integers(-1, 3, size=20)
    groups = recommenders.trending_fit_by_group(
        item_index=item_index,
        weights=weights,
        age_days=ages,
        n_items=12,
        half_life_days=7.0,
        keep=5,
        user_index=user_index,
        user_groups=user_groups,
    )
    for segment in range(3):
        mine = user_groups[user_index] == segment
        expected = recommenders.trending_fit(
            item_index=item_index[mine],
            weights=weights[mine],
            age_days=ages[mine],
            n_items=12,
            half_life_days=7.0,
            keep=5,
        )
        assert groups[segment].item_index.tolist() == expected.item_index.tolist()
        assert groups[segment].scores == pytest.approx(expected.scores)


# --- Shared machinery ------------------------------------------------------------------


def test_top_k_orders_by_score_breaks_ties_by_item_and_marks_missing_slots():
    scores = np.array([[0.5, 2.0, 0.5, -np.inf], [-np.inf, -np.inf, 1.0, -np.inf]], dtype=np.float32)
    items, values = recommenders.top_k(scores, 3)
    assert items.tolist() == [[1, 0, 2], [2, -1, -1]]
    assert values[1, 1] == -np.inf


def test_popularity_recommends_the_most_consumed_unseen_items_and_says_trending():
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float32))
    model = recommenders.popularity_fit(user_items=x)
    items, _ = model.recommend([2], 3)
    assert items.tolist() == [[1, 2, -1]]  # item 3 was never consumed: no evidence
    assert model.explain(2, [1]) == [{"type": "trending"}]


# --- Item-kNN --------------------------------------------------------------------------


def brute_knn_scores(x, neighbours, shrink):
    dense = x.toarray().astype(np.float64)
    n_items = dense.shape[1]
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i != j:
                a, b = dense[:, i], dense[:, j]
                sim[i, j] = a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b) + shrink)
    kept = np.zeros_like(sim)
    for i in range(n_items):  # neighbourhood of target item i
        best = sorted(range(n_items), key=lambda j: -sim[j, i])[:neighbours]
        for j in best:
            kept[j, i] = sim[j, i]
    scores = np.zeros_like(dense)
    for u in range(dense.shape[0]):
        for i in range(n_items):
            scores[u, i] = sum(dense[u, j] * kept[j, i] for j in range(n_items))
    return scores, kept


@pytest.mark.parametrize(("seed", "neighbours", "shrink"), [(0, 5, 0.0), (1, 3, 10.0), (2, 100, 2.0)])
def test_item_knn_matches_brute_force_cosine_with_shrinkage_and_neighbourhoods(seed, neighbours, shrink):
    x = random_interactions(seed)
    expected, kept = brute_knn_scores(x, neighbours, shrink)
    model = recommenders.item_knn_fit(user_items=x, neighbours=neighbours, shrink=shrink, chunk_items=7)
    assert model.similarity.toarray() == pytest.approx(kept, abs=1e-5)
    items, _ = model.recommend(np.arange(x.shape[0]), 5)
    for u in range(x.shape[0]):
        seen = set(x[u].indices.tolist())
        want = brute_top(expected[u], seen, 5)
        got = [i for i in items[u].tolist() if i >= 0]
        assert [round(expected[u, i], 4) for i in got] == [round(expected[u, i], 4) for i in want]


def test_item_knn_explains_with_the_consumed_item_contributing_most():
    x = random_interactions(5)
    model = recommenders.item_knn_fit(user_items=x, neighbours=10, shrink=1.0)
    items, _ = model.recommend([3], 3)
    sim = model.similarity.toarray()
    for item, reason in zip(items[0], model.explain(3, items[0].tolist()), strict=True):
        consumed = x[3].indices
        contributions = x[3].data * sim[consumed, item]
        assert reason == {"type": "because_you_watched", "item": int(consumed[np.argmax(contributions)])}


# --- EASE ------------------------------------------------------------------------------


def numpy_ease(x, l2):
    dense = x.toarray().astype(np.float64)
    gram = dense.T @ dense + l2 * np.eye(dense.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return dense @ b, b


@pytest.mark.parametrize(("solver", "n_users"), [("cholesky", 40), ("woodbury", 15), ("auto", 15)])
def test_ease_matches_the_numpy_closed_form(solver, n_users):
    x = random_interactions(7, n_users=n_users, density=0.4, binary=True)
    expected, weights = numpy_ease(x, 5.0)
    model = recommenders.ease_fit(user_items=x, l2=5.0, solver=solver)
    assert model.items.tolist() == list(range(x.shape[1]))
    assert model.weights == pytest.approx(weights.astype(np.float32), abs=1e-5)
    items, _ = model.recommend(np.arange(x.shape[0]), 5)
    for u in range(x.shape[0]):
        want = brute_top(expected[u], set(x[u].indices.tolist()), 5)
        assert expected[u, items[u]] == pytest.approx(expected[u, want], abs=1e-5)
    assert model.message == ""


def test_ease_keeps_only_the_most_popular_items_when_capped_and_says_so():
    x = random_interactions(8, binary=True)
    counts = np.diff(x.tocsc().indptr)
    model = recommenders.ease_fit(user_items=x, l2=5.0, max_items=10)
    assert len(model.items) == 10
    assert counts[model.items].min() >= np.sort(counts)[-10]
    assert "kept the 10 most popular of 25 items" in model.message
    expected, _ = numpy_ease(x[:, model.items], 5.0)
    scores = model.scores([0])
    assert scores[0, model.items] == pytest.approx(expected[0], abs=1e-5)
    dropped = np.setdiff1d(np.arange(25), model.items)
    assert np.isneginf(scores[0, dropped]).all()


# --- ALS -------------------------------------------------------------------------------


def test_als_recovers_planted_clusters():
    # Two factors for two blocks: more would fit the noise inside the blocks too.
    x = two_clusters(density=0.4)
    model = recommenders.als_fit(user_items=x, factors=2, iterations=15, regularization=0.05, alpha=10.0)
    items, _ = model.recommend(np.arange(60), 3)
    assert (items[:30] < 20).all() and (items[:30] >= 0).all()
    assert (items[30:] >= 20).all()
    neighbours, _ = model.similar_items(3, 5)
    assert (neighbours < 20).all()


def test_als_user_factors_for_new_rows_match_implicits_recalculate_user():
    from implicit.cpu.als import AlternatingLeastSquares

    x = random_interactions(9)
    model = recommenders.als_fit(user_items=x, factors=6, iterations=3, alpha=4.0, regularization=0.1)
    reference = AlternatingLeastSquares(factors=6, regularization=0.1, alpha=4.0)
    reference.user_factors = model.user_factors.copy()
    reference.item_factors = model.item_factors.copy()
    expected = reference.recalculate_user(np.arange(5), x[:5])
    assert model.user_factors_for(x[:5]) == pytest.approx(expected, abs=1e-3)


def test_als_explanation_contributions_add_up_to_the_score():
    x = random_interactions(10)
    model = recommenders.als_fit(user_items=x, factors=6, iterations=3, alpha=4.0)
    row = x[[2]]
    a, _, confidence = model._system(row)
    item = 7
    weighted = np.linalg.solve(a, model.item_factors[item].astype(np.float64))
    contributions = confidence * (model.item_factors[row.indices] @ weighted)
    assert contributions.sum() == pytest.approx(model.scores(row)[0, item], rel=1e-3)
    reason = model.explain(row, [item])[0]
    assert reason == {"type": "because_you_watched", "item": int(row.indices[np.argmax(contributions)])}


# --- Content-based ---------------------------------------------------------------------

TAGS = [["drama", "french"], ["comedy"], ["drama"], ["horror", "gore"], ["comedy", "french"], ["horror"]]


def test_content_tfidf_vectors_match_scikit_learns_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    model = recommenders.content_fit(item_tags=TAGS, weighting="tfidf")
    docs = [" ".join(tags) for tags in TAGS]
    vectorizer = TfidfVectorizer(token_pattern=r"\S+")
    expected = vectorizer.fit_transform(docs).toarray()
    columns = [model.vocabulary.index(f"tag:{t}") for t in vectorizer.get_feature_names_out()]
    assert model.item_vectors.toarray()[:, columns] == pytest.approx(expected, abs=1e-6)


def test_content_bm25_weights_match_the_formula():
    model = recommenders.content_fit(item_tags=TAGS, weighting="bm25", bm25_k1=1.2, bm25_b=0.75)
    n, avg = 6, sum(len(t) for t in TAGS) / 6
    for item, tags in enumerate(TAGS):
        raw = {}
        for t in tags:
            df = sum(t in other for other in TAGS)
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            raw[t] = 2.2 / (1 + 1.2 * (0.25 + 0.75 * len(tags) / avg)) * idf
        norm = np.sqrt(sum(v * v for v in raw.values()))
        for t, v in raw.items():
            assert model.item_vectors[item, model.vocabulary.index(f"tag:{t}")] == pytest.approx(v / norm)


def test_content_ranks_tag_matching_items_first_and_explains_with_the_tags():
    history = sp.csr_matrix(([1.0], ([0], [2])), shape=(1, 6))  # watched a drama
    model = recommenders.content_fit(item_tags=TAGS, user_items=history)
    items, _ = model.recommend([0], 6)
    assert items[0].tolist()[:1] == [0]  # the other drama
    assert -1 in items[0].tolist()  # horror items share nothing: no evidence
    assert model.explain(0, [0]) == [{"type": "matches_your_taste", "tags": ["drama"]}]


def test_content_serves_cold_start_users_from_declared_tags_and_new_items_without_interactions():
    model = recommenders.content_fit(item_tags=TAGS, item_texts=["", "", "", "", "", "a gory slasher"])
    nobody = sp.csr_matrix((2, 6), dtype=np.float32)
    items, _ = model.recommend(nobody, 2, liked_tags=[["horror"], ["comedy"]], disliked_tags=[[], ["french"]])
    assert set(items[0].tolist()) == {3, 5}
    assert items[1].tolist() == [1, -1]  # item 4 is a comedy but French (disliked): no match
    reasons = model.explain(nobody[[0]], [5], liked_tags=["horror"])
    assert reasons == [{"type": "matches_your_taste", "tags": ["horror"]}]
    similar, _ = model.similar_items(3, 2)
    assert similar.tolist() == [5, -1]


# --- Hybrid and fallback ---------------------------------------------------------------


def test_hybrid_blends_min_max_normalised_scores_of_unseen_items():
    x = random_interactions(11)
    knn = recommenders.item_knn_fit(user_items=x, neighbours=10)
    pop = recommenders.popularity_fit(user_items=x)
    hybrid = recommenders.HybridModel(models=[knn, pop], weights=[0.7, 0.3])
    user = 4
    seen = set(x[user].indices.tolist())
    expected = np.zeros(x.shape[1])
    for weight, model in ((0.7, knn), (0.3, pop)):
        raw = model.scores([user])[0]
        scored = [i for i in range(x.shape[1]) if np.isfinite(raw[i]) and i not in seen]
        low, high = min(raw[scored]), max(raw[scored])
        for i in scored:
            expected[i] += weight * (raw[i] - low) / (high - low)
    items, scores = hybrid.recommend([user], 5)
    assert scores[0] == pytest.approx(np.sort(expected)[::-1][:5], abs=1e-5)
    assert hybrid.explain(user, items[0][:1].tolist())[0]["type"] in {"because_you_watched", "trending"}


def test_rank_normalisation_gives_one_minus_rank_over_scored_items():
    scores = np.array([[3.0, -np.inf, 1.0, 2.0]], dtype=np.float32)
    assert recommenders._normalise(scores, "rank")[0] == pytest.approx([1.0, 0.0, 1 / 3, 2 / 3])


def test_fallback_chain_fills_the_gaps_of_the_first_model_from_the_next():
    x = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=np.float32))
    knn = recommenders.item_knn_fit(user_items=x, neighbours=1)
    pop = recommenders.popularity_fit(user_items=x)
    chain = recommenders.FallbackModel(models=[knn, pop])
    items, _, sources = chain.recommend_with_sources([0, 1], 3)
    knn_items, _ = knn.recommend([0], 3)
    found = [i for i in knn_items[0].tolist() if i >= 0]
    assert items[0].tolist()[: len(found)] == found
    assert sources[0].tolist() == [0] * len(found) + [1] * (2 - len(found)) + [-1]  # only 3 unseen
    assert items[1].tolist() == [0, 1, 2]  # no history: popularity only
    assert sources[1].tolist() == [1, 1, 1]


# --- Serving concerns ------------------------------------------------------------------


def fitted_models():
    x = random_interactions(12)
    tags = [[f"t{i % 4}", f"u{i % 3}"] for i in range(x.shape[1])]
    knn = recommenders.item_knn_fit(user_items=x, neighbours=5)
    content = recommenders.content_fit(item_tags=tags, user_items=x)
    return x, {
        "popularity": recommenders.popularity_fit(user_items=x),
        "item_knn": knn,
        "ease": recommenders.ease_fit(user_items=x, l2=10.0, max_items=20),
        "als": recommenders.als_fit(user_items=x, factors=4, iterations=3),
        "content": content,
        "hybrid": recommenders.HybridModel(models=[knn, content], weights=[1, 1], normalisation="rank"),
        "fallback": recommenders.FallbackModel(models=[knn, content]),
    }


@pytest.mark.parametrize("name", ["popularity", "item_knn", "ease", "als", "content", "hybrid", "fallback"])
def test_a_model_round_trips_through_bytes_with_identical_recommendations(name):
    x, models = fitted_models()
    model = models[name]
    loaded = recommenders.model_from_bytes(model.to_bytes())
    assert type(loaded) is type(model)
    assert loaded.message == model.message
    users = np.arange(x.shape[0])
    items, scores = model.recommend(users, 5)
    got_items, got_scores = loaded.recommend(users, 5)
    assert (got_items == items).all()
    assert got_scores == pytest.approx(scores)
    assert loaded.explain(3, items[3].tolist()) == model.explain(3, items[3].tolist())
    # Rows instead of indices give the same lists (ALS solves the user factors again).
    if name != "als":
        assert (loaded.recommend(x, 5)[0] == items).all()


def test_recommend_excludes_seen_items_and_chunking_changes_nothing():
    x, models = fitted_models()
    model = models["ease"]
    items, _ = model.recommend(np.arange(x.shape[0]), 6)
    chunked, _ = model.recommend(np.arange(x.shape[0]), 6, chunk_size=7)
    assert (items == chunked).all()
    for u in range(x.shape[0]):
        assert not set(items[u].tolist()) & set(x[u].indices.tolist())
    with_seen, _ = models["popularity"].recommend([0], 30, exclude_seen=False)
    assert set(x[0].indices.tolist()) <= set(with_seen[0].tolist())


def test_loading_refuses_another_models_bytes():
    _, models = fitted_models()
    with pytest.raises(TypeError):
        recommenders.EASEModel.from_bytes(models["item_knn"].to_bytes())


def test_trending_per_group_needs_exactly_one_grouping():
    kwargs = {"item_index": np.array([0]), "weights": np.ones(1), "age_days": np.zeros(1), "n_items": 1}
    with pytest.raises(ValueError):
        recommenders.trending_fit_by_group(**kwargs, half_life_days=None, keep=1)


def test_popularity_can_wrap_a_trending_model_for_the_common_interface():
    x = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    trending = recommenders.TrendingModel(item_index=np.array([2, 0]), scores=np.array([5.0, 1.0]))
    model = recommenders.popularity_fit(user_items=x, trending=trending)
    items, scores = model.recommend([0, 1], 2)
    assert items.tolist() == [[2, -1], [2, 0]]
    assert scores[1].tolist() == [5.0, 1.0]


def test_ease_explains_with_the_consumed_item_of_largest_weight():
    x = random_interactions(13, binary=True)
    model = recommenders.ease_fit(user_items=x, l2=5.0)
    _, weights = numpy_ease(x, 5.0)
    items, _ = model.recommend([1], 3)
    consumed = x[1].indices
    for item, reason in zip(items[0], model.explain(1, items[0].tolist()), strict=True):
        assert reason == {
            "type": "because_you_watched",
            "item": int(consumed[np.argmax(weights[consumed, item])]),
        }
