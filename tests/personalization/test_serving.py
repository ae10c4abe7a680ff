"""Every algorithm trains through the real pipeline and serves with reasons, filters,
fallbacks, cold start and activation rules."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Item, ItemTag, Tag
from personalization import services, serving
from personalization.models import DeclaredPreference, PrecomputedList, Profile, Recommender, TrainingRun
from tests import factories

MATRIX = ["popularity", "item_knn", "ease", "als", "content", "hybrid"]


@pytest.fixture
def clusters(db):
    """Two tastes: users 0-9 watch items 0-5 (Anime), users 10-19 items 6-11 (Drama)."""
    items = factories.items(12)
    genre = Tag.objects.add_root({"name": "Genre"})
    anime = Tag.objects.add_child(genre, {"name": "Anime"})
    drama = Tag.objects.add_child(genre, {"name": "Drama"})
    for n, item in enumerate(items):
        ItemTag.objects.create(item=item, tag=anime if n < 6 else drama)
    users = factories.profiles(20)
    Profile.objects.update(last_seen=timezone.now())
    rows = []
    for u, user in enumerate(users):
        base = 0 if u < 10 else 6
        for j in range(4):
            rows.append((user, items[base + (u + j) % 6], "complete"))
    factories.events(rows)
    factories.trending()
    return items, users, anime, drama


def train(name: str, algorithm: str, **params) -> TrainingRun:
    recommender = Recommender.objects.create(name=name, algorithm=algorithm, params=params)
    run = services.training_run_request(recommender=recommender)
    return services.training_run_execute(run_id=run.pk)


def train_trending() -> None:
    run = services.training_run_request(recommender=Recommender.objects.get(name="trending"))
    services.training_run_execute(run_id=run.pk)


@pytest.mark.parametrize("algorithm", MATRIX)
def test_each_algorithm_trains_evaluates_and_precomputes_lists(clusters, algorithm):
    run = train(algorithm, algorithm, precompute=5)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert {"ndcg@10", "coverage", "diversity", "novelty", "gini"} <= set(run.metrics)
    assert run.data_sizes["item_count"] == 12
    assert PrecomputedList.objects.filter(run=run).count() == 20
    assert run.snapshot_at is not None


@pytest.mark.parametrize("algorithm", ["item_knn", "ease", "als", "content"])
def test_personal_algorithms_recommend_from_the_users_own_taste(clusters, algorithm):
    items, users, _, _ = clusters
    train(algorithm, algorithm)
    served = serving.recommendations_get(user_id=users[0].external_id, k=2, recommender_name=algorithm)
    picked = [r.item.pk for r in served.results]
    assert len(picked) == 2
    assert set(picked) <= {i.pk for i in items[:6]}
    consumed = {i.pk for i in items[:6] if (0 + 0) <= items.index(i) <= 3}
    assert not set(picked) & consumed
    assert all(r.reason for r in served.results)


def test_item_knn_explains_a_pick_by_an_item_the_user_watched(clusters):
    _, users, _, _ = clusters
    train("knn", "item_knn")
    first = serving.recommendations_get(user_id=users[0].external_id, k=1, recommender_name="knn").results[0]
    assert first.reason_data["type"] == "because_you_watched"
    assert first.reason.startswith("Because you watched Title")


def test_consumption_after_training_is_excluded_at_once(clusters):
    _items, users, _, _ = clusters
    train("ease", "ease")
    before = serving.recommendations_get(user_id=users[0].external_id, k=1, recommender_name="ease").results[
        0
    ]
    factories.events([(users[0], Item.objects.get(pk=before.item.pk), "complete")])
    after = serving.recommendations_get(user_id=users[0].external_id, k=3, recommender_name="ease").results
    assert before.item.pk not in [r.item.pk for r in after]


def test_a_new_profile_with_declared_preferences_gets_content_picks(clusters):
    items, _, _, drama = clusters
    train("content", "content")
    newcomer = Profile.objects.create(external_id="new")
    DeclaredPreference.objects.create(profile=newcomer, tag=drama, sentiment=1)
    served = serving.recommendations_get(user_id="new", k=3, recommender_name="content")
    assert [r.reason_data["type"] for r in served.results] == ["matches_your_taste"] * 3
    assert {r.item.pk for r in served.results} <= {i.pk for i in items[6:]}
    assert "Drama" in served.results[0].reason


def test_a_profile_with_nothing_falls_back_to_trending(clusters):
    train_trending()
    train("knn", "item_knn")
    placement_recommender = Recommender.objects.get(name="knn")
    from personalization.models import Placement

    Placement.objects.create(
        key="home", name="Home", recommender=placement_recommender, fallbacks=["trending"]
    )
    served = serving.recommendations_get(user_id="stranger", k=3, placement_key="home")
    assert served.profile is None
    assert [r.reason_data["type"] for r in served.results] == ["trending"] * 3


def test_placement_filters_keep_only_items_under_the_included_tags(clusters):
    items, users, _anime, drama = clusters
    train_trending()
    from personalization.models import Placement

    Placement.objects.create(
        key="drama",
        name="Drama row",
        recommender=Recommender.objects.get(name="trending"),
        include_tags=[drama.slug_path],
    )
    served = serving.recommendations_get(user_id=users[0].external_id, k=5, placement_key="drama")
    assert served.results
    assert {r.item.pk for r in served.results} <= {i.pk for i in items[6:]}


def test_similar_items_come_from_the_same_cluster(clusters):
    items, _, _, _ = clusters
    train("knn", "item_knn")
    similar = serving.similar_items_get(item=items[0], k=3)
    assert {r.item.pk for r in similar} <= {i.pk for i in items[1:6]}
    assert similar[0].reason.startswith("Similar to")


def test_home_rows_include_top_picks_because_you_watched_trending_and_new_in(clusters):
    _, users, _, _ = clusters
    train_trending()
    train("knn", "item_knn")
    rows = serving.home_rows(user_id=users[0].external_id, k=3)
    titles = [row.title for row in rows]
    assert titles[0] == "Top picks for you"
    assert any(t.startswith("Because you watched") for t in titles)
    assert any(t.startswith("New in") or t == "Trending now" for t in titles)
    shown = [r.item.pk for row in rows for r in row.results]
    assert len(shown) == len(set(shown)), "an item appears in two rows"


def test_a_new_version_that_loses_on_the_primary_metric_is_not_activated(clusters):
    good = train("ease", "ease")
    recommender = good.recommender
    TrainingRun.objects.filter(pk=good.pk).update(metrics={**good.metrics, "ndcg@10": 1.0})
    run = services.training_run_request(recommender=recommender)
    worse = services.training_run_execute(run_id=run.pk)
    recommender.refresh_from_db()
    assert recommender.active_run_id == good.pk
    assert worse.activation_note.startswith("Not activated")
    services.recommender_activate(run=worse)
    recommender.refresh_from_db()
    assert recommender.active_run_id == worse.pk


def test_parameters_are_validated_per_algorithm_with_the_field_named():
    from django.core.exceptions import ValidationError

    assert services.recommender_params_clean(algorithm="ease", params={"l2": 300}) == {"l2": 300.0}
    with pytest.raises(ValidationError, match=r"params\.l2: must be between"):
        services.recommender_params_clean(algorithm="ease", params={"l2": -1})
    with pytest.raises(ValidationError, match=r"params\.neighbours: unknown parameter"):
        services.recommender_params_clean(algorithm="ease", params={"neighbours": 5})
    with pytest.raises(ValidationError, match=r"params\.blend\.trending"):
        services.recommender_params_clean(algorithm="hybrid", params={"blend": {"trending": 1}})


def test_the_api_serves_placements_similar_items_and_home_rows(client_as, clusters):
    items, users, _, _ = clusters
    train_trending()
    train("knn", "item_knn")
    client = client_as("marketer")
    created = client.post(
        "/api/v1/placements",
        {"key": "home", "name": "Home", "recommender": "knn", "fallbacks": ["trending"], "k": 5},
        "application/json",
    )
    assert created.status_code == 201, created.json()
    body = client.get(
        "/api/v1/recommendations", {"user_id": users[0].external_id, "placement": "home"}
    ).json()
    assert body["placement"] == "home" and len(body["results"]) == 5
    similar = client.get(f"/api/v1/items/{items[0].external_id}/similar", {"k": 2}).json()
    assert len(similar["results"]) == 2
    home = client.get("/api/v1/home", {"user_id": users[0].external_id, "k": 3}).json()
    assert home["rows"][0]["title"] == "Top picks for you"
    missing = client.get("/api/v1/recommendations", {"placement": "nope"})
    assert missing.status_code == 404 and missing.json()["field"] == "placement"
    bad = client.post(
        "/api/v1/placements",
        {"key": "x", "name": "X", "recommender": "knn", "fallbacks": ["zzz"]},
        "application/json",
    )
    assert bad.status_code == 400 and bad.json()["field"] == "fallbacks"


def test_activation_through_the_api_needs_a_successful_run(client_as, clusters):
    run = train("knn", "item_knn")
    failed = TrainingRun.objects.create(recommender=run.recommender, version=2, status="failed")
    client = client_as("marketer")
    assert client.post(f"/api/v1/training-runs/{failed.pk}/activate").status_code == 409
    assert client.post(f"/api/v1/training-runs/{run.pk}/activate").status_code == 200
    assert client_as("analyst").post(f"/api/v1/training-runs/{run.pk}/activate").status_code == 403


def test_item_without_interactions_is_reachable_by_content_similarity(clusters):
    items, _, anime, _ = clusters
    fresh = Item.objects.create(external_id="fresh", title="Fresh anime")
    ItemTag.objects.create(item=fresh, tag=anime)
    train("content", "content")
    similar = serving.similar_items_get(item=fresh, k=3, recommender_name="content")
    assert {r.item.pk for r in similar} <= {i.pk for i in items[:6]}
    assert timezone.now() - fresh.created_at < timedelta(minutes=5)


def test_a_running_experiment_on_a_placement_picks_the_recommender_and_records_exposures(clusters):
    from experiments import services as experiment_services
    from experiments.models import ExperimentMetric, Exposure
    from personalization.models import Placement
    from tests.experiments import builders

    _, users, _, _ = clusters
    train_trending()
    train("knn", "item_knn")
    Placement.objects.create(key="home", name="Home", recommender=Recommender.objects.get(name="trending"))
    experiment = builders.experiment("home-algo")
    experiment_services.experiment_save(
        experiment=experiment,
        variants=[
            {
                "key": "control",
                "name": "Trending",
                "weight": 0.5,
                "payload": {"placement": "home", "recommender": "trending"},
            },
            {
                "key": "knn",
                "name": "kNN",
                "weight": 0.5,
                "payload": {"placement": "home", "recommender": "knn"},
            },
        ],
        metrics=[(builders.metric("plays", event_type="play"), ExperimentMetric.Role.PRIMARY)],
    )
    experiment_services.experiment_start(experiment=experiment)
    seen = set()
    for user in users:
        served = serving.recommendations_get(user_id=user.external_id, k=3, placement_key="home")
        assert served.experiment["key"] == "home-algo"
        expected = "trending" if served.experiment["variant"] == "control" else "knn"
        assert served.recommender.name == expected
        seen.add(served.experiment["variant"])
        again = serving.recommendations_get(user_id=user.external_id, k=3, placement_key="home")
        assert again.experiment["variant"] == served.experiment["variant"], "assignment is sticky"
    assert seen == {"control", "knn"}
    assert Exposure.objects.filter(experiment=experiment).count() >= len(users)


def test_the_recommendation_pages_compare_models_activate_versions_and_preview_a_profile(client_as, clusters):
    from django.urls import reverse

    _, users, _, _ = clusters
    train_trending()
    first = train("knn", "item_knn")
    run = services.training_run_request(recommender=first.recommender)
    second = services.training_run_execute(run_id=run.pk)
    client = client_as("marketer")
    listing = client.get(reverse("personalization:recommender_list")).content.decode()
    assert 'id="comparison-data"' in listing and 'id="tradeoff-data"' in listing
    detail = client.get(first.recommender.get_absolute_url()).content.decode()
    assert "Roll back to v1" in detail or "Activate v1" in detail
    response = client.post(reverse("personalization:training_run_activate", args=[first.pk]), follow=True)
    assert "now serves v1" in response.content.decode()
    first.recommender.refresh_from_db()
    assert first.recommender.active_run_id == first.pk != second.pk
    preview = client.get(reverse("personalization:recommender_preview"), {"user_id": users[0].external_id})
    html = preview.content.decode()
    assert "Top picks for you" in html and 'class="rec-reason"' in html
    assert (
        client_as("analyst")
        .post(reverse("personalization:training_run_activate", args=[second.pk]))
        .status_code
        == 403
    )
    client = client_as("marketer")
    edit = client.post(
        reverse("personalization:recommender_edit", args=[first.recommender.pk]),
        {"name": "knn", "algorithm": "item_knn", "params": '{"neighbours": 0}', "primary_metric": "ndcg@10"},
    )
    assert "params.neighbours: must be between" in edit.content.decode()


def test_members_of_a_segment_get_the_recommender_their_placement_override_names(clusters):
    from personalization.models import Placement, Segment, SegmentMembership

    _, users, _, _ = clusters
    train_trending()
    train("knn", "item_knn")
    fans = Segment.objects.create(key="anime-fans", name="Anime fans", kind="static")
    SegmentMembership.objects.create(segment=fans, profile=users[0], entered_at=timezone.now())
    SegmentMembership.objects.create(
        segment=fans,
        profile=users[1],
        entered_at=timezone.now() - timedelta(days=2),
        exited_at=timezone.now(),
    )
    Placement.objects.create(
        key="home", name="Home", recommender=Recommender.objects.get(name="trending"),
        segment_overrides={"anime-fans": "knn"},
    )  # fmt: skip
    member = serving.recommendations_get(user_id=users[0].external_id, k=3, placement_key="home")
    assert member.recommender.name == "knn"
    former = serving.recommendations_get(user_id=users[1].external_id, k=3, placement_key="home")
    assert former.recommender.name == "trending"
    stranger = serving.recommendations_get(user_id="nobody", k=3, placement_key="home")
    assert stranger.recommender.name == "trending"
