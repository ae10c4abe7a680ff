"""Query counts of the ingestion hot path: constant per batch, whatever its size."""

from __future__ import annotations

import base64
import json

import pytest

from personalization import tracking
from personalization.models import Event, Interaction, Profile
from tests import factories


@pytest.fixture
def post(client, db):
    _, key = tracking.write_key_create(source_name="web")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    # The key was just used once, so last_used_at is fresh and not written again.
    tracking.write_key_authenticate(authorization=auth)

    def send(body):
        return client.post("/api/v1/batch", data=json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=auth)  # fmt: skip

    return send


def batch(n: int, *, offset: int = 0, users: int = 10, items: int = 10) -> dict:
    return {
        "batch": [
            {"type": "track", "event": "Video Playback Completed", "userId": f"u{i % users:03d}",
             "messageId": f"q{offset + i}", "properties": {"item_id": f"m{i % items:03d}"}}
            for i in range(n)
        ]
    }  # fmt: skip


@pytest.mark.parametrize("size", [10, 500])
def test_a_batch_of_known_profiles_and_items_takes_a_constant_number_of_queries(
    post, django_assert_num_queries, size
):
    factories.items(10)
    factories.profiles(10)
    # 1 write key look-up, 2 SAVEPOINT/RELEASE (the test's transaction wraps ours),
    # 1 source lock, 1 profiles by user id, 1 items by external id, 1 INSERT events (its
    # RETURNING finds duplicates), 1 interaction upsert, 1 UPDATE first/last seen.
    with django_assert_num_queries(9):
        response = post(batch(size))
    assert response.json()["stored"] == size
    assert Event.objects.count() == size
    assert Interaction.objects.count() == 10


def test_a_batch_of_new_profiles_and_items_adds_a_few_queries_not_one_per_event(
    post, django_assert_num_queries
):
    # The 9 above, plus: look up anonymous ids (1), create user profiles and read
    # their ids (2), create placeholder items and read their ids (2), create anonymous
    # profiles, link their ids and read the owners back (3); minus the first/last seen
    # UPDATE (1): profiles created by the batch already span its events.
    body = batch(100)
    for n, message in enumerate(body["batch"][:20]):
        message.pop("userId")
        message["anonymousId"] = f"dev-{n}"
    with django_assert_num_queries(16):
        response = post(body)
    assert response.json()["stored"] == 100
    assert Profile.objects.count() == 30


def test_a_replayed_batch_writes_nothing_but_the_skipped_insert(post, django_assert_num_queries):
    factories.items(10)
    post(batch(50))
    seen = list(Profile.objects.values_list("external_id", "last_seen"))
    # write key, SAVEPOINT, source lock, profiles, items, INSERT (nothing returned), RELEASE.
    with django_assert_num_queries(7):
        body = post(batch(50)).json()
    assert body["duplicates"] == 50
    assert Interaction.objects.filter(count=5).count() == 10
    assert list(Profile.objects.values_list("external_id", "last_seen")) == seen


def test_a_replayed_identify_is_checked_first_and_applies_nothing(post, django_assert_num_queries):
    message = {"type": "identify", "userId": "u1", "anonymousId": "d1", "messageId": "i1",
               "traits": {"plan": "pro"}}  # fmt: skip
    assert post({"batch": [message]}).json()["stored"] == 1
    Profile.objects.filter(external_id="u1").update(traits={"plan": "free"})
    # write key, SAVEPOINT, source lock, existing message ids, RELEASE.
    with django_assert_num_queries(5):
        body = post({"batch": [message]}).json()
    assert body["duplicates"] == 1
    assert Profile.objects.get(external_id="u1").traits == {"plan": "free"}
