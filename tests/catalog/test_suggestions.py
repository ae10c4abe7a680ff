"""The suggestion model: maths without a database, then the training service end to end."""

import numpy as np
import pytest

from catalog import services
from catalog import suggestions as ml
from catalog.models import Item, ItemTag, TagSuggestion, TagSuggestionModel
from tests import factories

WORDS = {
    10: ["robot", "pilot", "mech", "cockpit"],
    11: ["laugh", "joke", "funny", "prank"],
    12: ["ghost", "haunted", "scream", "curse"],
    13: ["love", "kiss", "wedding", "romance"],
    14: ["space", "alien", "planet", "starship"],
    15: ["detective", "murder", "clue", "suspect"],
}
FILLER = [f"filler{n}" for n in range(300)]


def synthetic(n: int, seed: int = 1):
    """Items whose text mentions words of their (1-2) tags among random filler words."""
    rng = np.random.default_rng(seed)
    tags = list(WORDS)
    texts, labels = [], []
    for _ in range(n):
        chosen = list(rng.choice(tags, size=rng.integers(1, 3), replace=False))
        words = list(rng.choice(FILLER, size=12))
        for t in chosen:
            words += list(rng.choice(WORDS[t], size=2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append([int(t) for t in chosen])
    return texts, labels


def brute_force_precision_recall(predicted, truth, k):
    p = r = n = 0
    for ranked, relevant in zip(predicted, truth, strict=True):
        hits = sum(1 for x in ranked[:k] if x in relevant)
        p += hits / k
        r += hits / len(relevant)
        n += 1
    return p / n, r / n


def test_precision_and_recall_at_3_match_a_brute_force_count():
    predicted = [[1, 2, 3], [4, 5, 6], [7, 1, 2]]
    truth = [{1, 9}, {6}, {8, 9, 10, 11}]
    assert ml.precision_recall_at_k(predicted, truth, 3) == pytest.approx(
        brute_force_precision_recall(predicted, truth, 3)
    )


def test_top_k_ranks_best_first_and_skips_excluded_pairs():
    import scipy.sparse as sp

    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.8, 0.1]], dtype=np.float32)
    exclude = sp.csr_matrix(([1], ([0], [1])), shape=(2, 4))
    best, values = ml.top_k(scores, 2, exclude)
    assert best.tolist() == [[3, 2], [2, 0]]
    assert np.allclose(values, [[0.7, 0.5], [0.8, 0.3]])


def test_the_model_learns_which_words_mean_which_tag_far_above_chance():
    texts, labels = synthetic(600)
    tags = np.array(sorted(WORDS))
    metrics = ml.holdout_evaluate(texts, labels, [[] for _ in texts], tags)
    # 1.5 tags per item on average: a perfect ranker scores 0.5, always-the-same-three ~0.25.
    assert metrics.precision_at_3 > 0.45
    assert metrics.recall_at_3 > 0.9
    assert metrics.precision_at_3 > metrics.baseline_precision_at_3 + 0.15


def test_rejections_become_hard_negatives_in_the_targets():
    targets = ml.label_matrix([[10], [11]], [[11], [11]], np.array([10, 11]))
    assert targets.toarray().tolist() == [[1, -1], [0, 1]]


def test_co_consumption_features_leave_the_item_itself_out():
    import scipy.sparse as sp

    # Items 0 and 1 share a viewer; item 2 is watched alone. Item 0 is tagged A, item 1 B.
    targets = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32))
    features = ml.cooccurrence_features(np.array([0, 1, 2]), np.array([0, 0, 1]), targets).toarray()
    assert features.tolist() == [[0, 1], [1, 0], [0, 0]]


def test_a_fitted_model_round_trips_through_bytes():
    texts, labels = synthetic(120)
    tags = np.array(sorted(WORDS))
    targets = ml.label_matrix(labels, [[] for _ in texts], tags)
    model = ml.fit(texts, targets, tags)
    again = ml.TagSuggester.loads(model.dumps())
    assert np.allclose(again.scores(texts[:5]), model.scores(texts[:5]))
    [(tag, confidence), *_] = ml.suggest(again, ["robot pilot cockpit mech"], k=3)[0]
    assert tag == 10 and 0 < confidence <= 1


@pytest.fixture
def learnable(taxonomy, django_capture_on_commit_callbacks):
    """60 items described with their tag's words; the last 6 untagged."""
    words = {"mecha": "robot pilot cockpit", "comedy": "laugh joke prank", "dark": "grim shadow bleak"}
    items = Item.objects.bulk_create(
        [Item(external_id=f"s{n}", title=f"Story {n}", description=f"{words[list(words)[n % 3]]} filler {n}")
         for n in range(60)]
    )  # fmt: skip
    ItemTag.objects.bulk_create(
        [ItemTag(item=item, tag=taxonomy[list(words)[n % 3]]) for n, item in enumerate(items[:54])]
    )
    return items


def train(capture) -> TagSuggestionModel:
    with capture(execute=True):
        model = services.suggestion_model_request()
    return TagSuggestionModel.objects.get(pk=model.pk)


def test_training_stores_metrics_an_artifact_and_suggestions_for_untagged_items(
    learnable, taxonomy, django_capture_on_commit_callbacks
):
    model = train(django_capture_on_commit_callbacks)
    assert model.status == "succeeded", model.error
    assert model.metrics["precision@3"] > 0.3 and model.metrics["recall@3"] > 0.9
    assert model.trained_at and model.artifact
    best = services.item_suggestions(item=learnable[54])[0]
    assert best.tag == taxonomy["mecha"]  # item 54 describes a robot pilot
    assert not TagSuggestion.objects.filter(item=learnable[0], tag=taxonomy["mecha"]).exists()


def test_a_rejected_suggestion_is_never_suggested_again(
    learnable, taxonomy, django_capture_on_commit_callbacks
):
    train(django_capture_on_commit_callbacks)
    suggestion = services.item_suggestions(item=learnable[54])[0]
    services.suggestion_reject(suggestion=suggestion)
    train(django_capture_on_commit_callbacks)
    assert TagSuggestion.objects.filter(item=learnable[54], tag=suggestion.tag).get().status == "rejected"
    assert suggestion.tag not in [s.tag for s in services.item_suggestions(item=learnable[54])]


def test_training_with_too_few_tagged_items_fails_with_a_clear_message(
    taxonomy, django_capture_on_commit_callbacks
):
    factories.items(3)
    model = train(django_capture_on_commit_callbacks)
    assert model.status == "failed"
    assert "Not enough tagged items" in model.error


def test_a_second_training_is_refused_while_one_is_queued(taxonomy):
    services.suggestion_model_request()
    with pytest.raises(services.CatalogError, match="already queued"):
        services.suggestion_model_request()


def test_co_consumption_is_used_when_people_consumed_the_items(learnable, django_capture_on_commit_callbacks):
    people = factories.profiles(5)
    factories.events([(people[n % 5], item, "play") for n, item in enumerate(learnable)])
    model = train(django_capture_on_commit_callbacks)
    assert model.metrics["co_consumption"] is True


def test_the_conjugate_gradient_ridge_ranks_like_scikit_learns_exact_ridge():
    import scipy.sparse as sp
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    features = sp.random(300, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    targets = (rng.random((300, 5)) < 0.3).astype(np.float32)
    ours = ml.ridge_fit(features, targets, alpha=1.0, iterations=200)
    exact = Ridge(alpha=1.0, fit_intercept=False, solver="cholesky").fit(features.toarray(), targets).coef_.T
    assert np.allclose(ours, exact, atol=1e-3)


def test_a_warm_started_ridge_reaches_the_exact_solution_too():
    import scipy.sparse as sp
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    features = sp.random(300, 40, density=0.2, format="csr", random_state=3, dtype=np.float32)
    targets = (rng.random((300, 5)) < 0.3).astype(np.float32)
    exact = Ridge(alpha=1.0, fit_intercept=False, solver="cholesky").fit(features.toarray(), targets).coef_.T
    start = exact + rng.normal(0, 0.5, exact.shape).astype(np.float32)
    ours = ml.ridge_fit(features, targets, alpha=1.0, iterations=200, initial=start)
    assert np.allclose(ours, exact, atol=1e-3)
    assert not np.allclose(start, exact, atol=1e-3)


def test_training_evaluates_like_holdout_evaluate_and_suggests_only_tags_not_carried():
    texts, labels = synthetic(400)
    tags = np.array(sorted(WORDS))
    rejected = [[] for _ in texts]
    rejected[0] = [t for t in WORDS if t not in labels[0]][:1]
    training = ml.train(texts, labels, rejected, tags, k=3)
    assert training.metrics == ml.holdout_evaluate(texts, labels, rejected, tags)
    assert set(training.seconds) == {"vectorize", "evaluate", "final fit", "suggest"}
    assert len(training.suggestions) == len(texts)
    for carried, proposals in zip(labels, training.suggestions, strict=True):
        assert not set(carried) & {tag for tag, _ in proposals}
    # The final model ranks a text made of one tag's words first for that tag.
    [(tag, _), *_] = ml.suggest(training.model, ["ghost haunted scream curse"], k=3)[0]
    assert tag == 12


def test_duplicate_labels_count_once_and_a_carried_tag_is_never_a_negative():
    targets = ml.label_matrix([[10, 10, 11], []], [[11, 12], [12, 12]], np.array([10, 11, 12]))
    assert targets.toarray().tolist() == [[1, 1, -1], [0, 0, -1]]
