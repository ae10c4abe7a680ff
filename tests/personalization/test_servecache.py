"""The serving caches: a warm request reads only the profile's interactions, and what the
caches hold follows edits within SERVING_CACHE_SECONDS."""

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone

from catalog.models import Item
from personalization import servecache, services, serving
from personalization.models import AnonymousId, Placement, Recommender
from recsite import impact
from recsite.models import RecommendationImpression
from recsite.tokens import token_create, token_revoke
from tests import factories
from tests.personalization.test_serving import clusters, train, train_trending  # noqa: F401


class Clock:
    """Stands in for time.monotonic in servecache, so that tests move time by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    settings.SERVING_CACHE_SECONDS = 60
    settings.IMPACT_RECORD_IMPRESSIONS = False
    fake = Clock()
    monkeypatch.setattr(servecache.time, "monotonic", fake)
    return fake


@pytest.fixture
def knn(clusters):  # noqa: F811
    train_trending()
    train("knn", "item_knn", precompute=5)
    return clusters


def test_a_warm_request_reads_only_the_profiles_interactions(knn, clock, django_assert_num_queries):
    _, users, _, _ = knn
    first = serving.recommendations_get(user_id=users[0].external_id, k=3, recommender_name="knn")
    assert len(first.results) == 3 and first.known_profile
    # 1. the profile left-joined to its interactions; configuration, items and the
    # precomputed list come from the process's caches.
    with django_assert_num_queries(1):
        again = serving.recommendations_get(user_id=users[0].external_id, k=3, recommender_name="knn")
    assert [r.item.pk for r in again.results] == [r.item.pk for r in first.results]
    assert [r.reason for r in again.results] == [r.reason for r in first.results]
    assert again.results[0].recommendation_id != first.results[0].recommendation_id


def test_a_warm_api_request_with_a_token_costs_one_query(
    knn, clock, client, personas, django_assert_num_queries
):
    _, users, _, _ = knn
    _, key = token_create(user=personas["marketer"], name="script")
    url = f"/api/v1/recommendations?user_id={users[0].external_id}&recommender=knn&k=3"
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    # 1. the profile and its interactions (token, user, permissions: cached).
    with django_assert_num_queries(1):
        body = client.get(url, HTTP_AUTHORIZATION=f"Token {key}").json()
    assert body["recommender"] == "knn" and body["version"] == 1 and body["known_profile"] is True
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    assert set(body["results"][0]) == {
        "item", "title", "score", "rank", "reason", "reason_data", "recommendation_id", "recommender",
    }  # fmt: skip


def test_consumption_is_excluded_at_once_even_with_warm_caches(knn, clock):
    _, users, _, _ = knn
    before = serving.recommendations_get(user_id=users[0].external_id, k=1, recommender_name="knn")
    picked = before.results[0].item.pk
    factories.events([(users[0], Item.objects.get(pk=picked), "complete")])
    after = serving.recommendations_get(user_id=users[0].external_id, k=3, recommender_name="knn")
    assert picked not in [r.item.pk for r in after.results]


def test_placement_edits_and_activations_reach_serving_within_the_cache_seconds(knn, clock):
    _, users, _, _ = knn
    Placement.objects.create(key="home", name="Home", recommender=Recommender.objects.get(name="knn"), k=2)
    assert len(serving.recommendations_get(user_id=users[0].external_id, placement_key="home").results) == 2
    Placement.objects.filter(key="home").update(k=4)
    knn = Recommender.objects.get(name="knn")
    second = services.training_run_execute(run_id=services.training_run_request(recommender=knn).pk)
    services.recommender_activate(run=second)
    stale = serving.recommendations_get(user_id=users[0].external_id, placement_key="home")
    assert len(stale.results) == 2 and stale.recommender.version == 1, "within the cache seconds"
    clock.now += 61
    fresh = serving.recommendations_get(user_id=users[0].external_id, placement_key="home")
    assert len(fresh.results) == 4 and fresh.recommender.version == 2


def test_an_item_taken_off_the_catalog_leaves_the_results_once_the_cache_expires(knn, clock):
    _, users, _, _ = knn
    first = serving.recommendations_get(user_id=users[0].external_id, k=2, recommender_name="knn")
    gone = Item.objects.get(pk=first.results[0].item.pk)
    gone.active = False
    gone.save(update_fields=["active", "updated_at"])
    clock.now += 61
    after = serving.recommendations_get(user_id=users[0].external_id, k=2, recommender_name="knn")
    assert gone.pk not in [r.item.pk for r in after.results]


def test_precomputed_lists_are_shared_through_the_django_cache(knn, clock, django_assert_num_queries):
    _, users, _, _ = knn
    served = serving.recommendations_get(user_id=users[1].external_id, k=2, recommender_name="knn")
    run_key, profile_id = served.recommender.run_key, served.state.profile_id
    assert cache.get(f"serving:list:{run_key}:{profile_id}") is not None
    servecache._lists.clear()  # another process: only the shared cache has the list
    # 1. the profile and its interactions; the list comes from the Django cache.
    with django_assert_num_queries(1):
        serving.recommendations_get(user_id=users[1].external_id, k=2, recommender_name="knn")
    stranger = serving.recommendations_get(user_id="nobody", k=2, recommender_name="knn")
    assert stranger.known_profile is False


def test_anonymous_ids_resolve_to_their_profile_in_the_same_query(knn, clock):
    _, users, _, _ = knn
    AnonymousId.objects.create(anonymous_id="device-1", profile=users[0])
    state = serving.profile_state_load(anonymous_id="device-1")
    assert state.profile_id == users[0].pk and len(state.consumed) == 4
    assert serving.profile_state_load(anonymous_id="device-2").profile_id is None
    assert serving.profile_state_load(user_id=None).profile_id is None


def test_a_revoked_token_stops_working_once_the_cache_seconds_pass(knn, clock, client, personas):
    token, key = token_create(user=personas["marketer"], name="script")
    url = "/api/v1/recommendations?recommender=knn&k=2"
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    token_revoke(token=token)
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200, "cached"
    clock.now += 61
    # 403, not 401, because session authentication comes first, as everywhere in the API.
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 403
    assert client.get(url, HTTP_AUTHORIZATION="Token wrong").status_code == 403


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"k": "0"}, "k"),
        ({"k": "abc"}, "k"),
        ({"k": "101"}, "k"),
        ({"placement": "not a slug"}, "placement"),
        ({"recommender": "x" * 101}, "recommender"),
        ({"user_id": "x" * 201}, "user_id"),
        ({"user_id": "u\x00"}, "user_id"),
        ({"exclude_consumed": "maybe"}, "exclude_consumed"),
    ],
)
def test_unusual_parameters_go_through_the_serializer_and_get_a_json_error(client_as, knn, query, field):
    response = client_as("analyst").get("/api/v1/recommendations", {"recommender": "knn", **query})
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_well_formed_parameters_mean_what_the_serializer_says(client_as, knn):
    _, users, _, _ = knn
    client = client_as("analyst")
    padded = client.get("/api/v1/recommendations", {"user_id": f" {users[0].external_id} ", "k": "2"}).json()
    plain = client.get(
        "/api/v1/recommendations", {"user_id": users[0].external_id, "k": "02", "exclude_consumed": "True"}
    ).json()
    assert padded["user_id"] == plain["user_id"] == users[0].external_id
    assert [r["item"] for r in padded["results"]] == [r["item"] for r in plain["results"]]
    everything = client.get(
        "/api/v1/recommendations", {"user_id": users[0].external_id, "k": "12", "exclude_consumed": "false"}
    ).json()
    consumed = {
        i.external_id
        for i in Item.objects.filter(
            interactions__profile=users[0], interactions__last_at__lte=timezone.now()
        )
    }
    assert consumed & {r["item"] for r in everything["results"]}


def test_a_catalog_edit_drops_the_item_table_at_the_next_configuration_reload(knn, clock, settings):
    _, users, _, _ = knn
    first = serving.recommendations_get(user_id=users[0].external_id, k=2, recommender_name="knn")
    renamed = Item.objects.get(pk=first.results[0].item.pk)
    renamed.title = "A new title"
    renamed.save(update_fields=["title", "updated_at"])
    stale = serving.recommendations_get(user_id=users[0].external_id, k=2, recommender_name="knn")
    assert stale.results[0].item.title != "A new title", "within the cache seconds"
    settings.SERVING_CACHE_SECONDS = 0  # the next request reloads the configuration
    fresh = serving.recommendations_get(user_id=users[0].external_id, k=2, recommender_name="knn")
    assert fresh.results[0].item.title == "A new title"


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="REDIS_URL is not set")
def test_with_redis_a_warm_request_records_its_impressions_without_a_database_query(
    knn, clock, client, personas, settings, django_assert_num_queries
):
    _, users, _, _ = knn
    settings.IMPACT_RECORD_IMPRESSIONS = True
    settings.IMPACT_IMPRESSION_FLUSH_SECONDS = 5
    _, key = token_create(user=personas["marketer"], name="script")
    url = f"/api/v1/recommendations?user_id={users[0].external_id}&recommender=knn&k=3"
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    # 1. the profile and its interactions; the impressions go to Redis (one RPUSH).
    with django_assert_num_queries(1):
        body = client.get(url, HTTP_AUTHORIZATION=f"Token {key}").json()
    assert impact.impressions_pending() == 2
    impact.impressions_flush()
    stored = RecommendationImpression.objects.filter(
        recommendation_id__in=[r["recommendation_id"] for r in body["results"]]
    )
    assert sorted(stored.values_list("rank", "recommender")) == [
        (r["rank"], r["recommender"]) for r in body["results"]
    ]


def test_recommendation_ids_are_distinct_random_hex(knn, clock):
    _, users, _, _ = knn
    ids = [
        r.recommendation_id
        for _ in range(3)
        for r in serving.recommendations_get(
            user_id=users[0].external_id, k=3, recommender_name="knn"
        ).results
    ]
    assert len(set(ids)) == 9
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 200),
        ("*/*", 200),
        ("application/json", 200),
        ("application/json; indent=2", 200),
        ("text/csv", 406),
    ],
)
def test_the_serving_endpoints_answer_json_and_refuse_what_they_cannot_render(client_as, knn, accept, status):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    client = client_as("analyst")
    for url in (
        "/api/v1/recommendations?recommender=knn&k=2",
        "/api/v1/home",
        f"/api/v1/items/{Item.objects.first().external_id}/similar",
    ):
        response = client.get(url, **headers)
        assert response.status_code == status, url
        assert response["Content-Type"] == "application/json"
