"""Identity resolution: identify, alias, merges and the refusal to merge two known people."""

from __future__ import annotations

import base64
import json

import pytest

from catalog.models import Item
from personalization import identity, tracking
from personalization.models import (
    AnonymousId,
    Event,
    Interaction,
    MergeRequest,
    Profile,
    ProfileMerge,
)


@pytest.fixture
def send(client, db):
    _, key = tracking.write_key_create(source_name="web")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def post(path: str, body):
        response = client.post(
            f"/api/v1/{path}", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=auth
        )
        assert response.status_code in (200, 400), response.content
        return response.json()

    return post


@pytest.mark.parametrize(
    "value", ["anonymous", "Guest", "null", "undefined", "None", "0", "[object Object]", " "]
)
def test_placeholder_ids_are_refused_with_a_clear_error(send, value):
    body = send("identify", {"userId": value, "traits": {"plan": "pro"}})
    assert body["field"] == "userId"
    assert "placeholder" in body["error"]
    assert not Profile.objects.exists()


def test_identify_links_the_anonymous_history_to_the_known_user(send):
    Item.objects.create(external_id="m1", title="M1")
    send("track", {"anonymousId": "dev-1", "event": "Product Viewed", "properties": {"item_id": "m1"}})
    send("track", {"userId": "u1", "event": "Order Completed", "properties": {"item_id": "m1"}})
    assert Profile.objects.count() == 2
    send("identify", {"userId": "u1", "anonymousId": "dev-1", "traits": {"plan": "pro"}})
    profile = Profile.objects.get()
    assert profile.external_id == "u1"
    assert profile.traits == {"plan": "pro"}
    assert list(profile.anonymous_ids.values_list("anonymous_id", flat=True)) == ["dev-1"]
    assert Event.objects.filter(profile=profile).count() == 3  # view, purchase, identify
    interaction = Interaction.objects.get()
    assert (interaction.profile_id, interaction.strength, interaction.count) == (profile.pk, 3.5, 2)
    merge = ProfileMerge.objects.get()
    assert (merge.survivor_id, merge.reason, merge.moved["events"]) == (profile.pk, "identify", 1)


def test_an_anonymous_profile_becomes_known_when_the_user_id_is_new(send):
    send("track", {"anonymousId": "dev-1", "event": "Product Viewed"})
    anonymous = Profile.objects.get()
    send("track", {"anonymousId": "dev-1", "userId": "u1", "event": "Product Viewed"})
    assert Profile.objects.get().pk == anonymous.pk
    assert Profile.objects.get().external_id == "u1"
    assert not ProfileMerge.objects.exists()


def test_two_known_profiles_are_never_merged_automatically_but_recorded_for_an_admin(send):
    send("identify", {"userId": "u1", "anonymousId": "shared-tv"})
    send("identify", {"userId": "u2"})
    body = send("identify", {"userId": "u2", "anonymousId": "shared-tv"})
    assert body["status"] == "stored"
    assert Profile.objects.count() == 2
    request = MergeRequest.objects.get()
    assert (request.profile.external_id, request.into.external_id, request.status) == ("u1", "u2", "open")
    send("alias", {"previousId": "u1", "userId": "u2"})
    assert Profile.objects.count() == 2
    assert MergeRequest.objects.count() == 1  # recorded once


def test_an_admin_approving_a_merge_request_merges_and_keeps_the_request(send, personas):
    send("identify", {"userId": "u1", "traits": {"plan": "free", "city": "Oslo"}})
    send("identify", {"userId": "u2", "traits": {"plan": "pro"}})
    send("alias", {"previousId": "u1", "userId": "u2"})
    request = MergeRequest.objects.get()
    identity.merge_request_resolve(request=request, approve=True, resolved_by=personas["admin"])
    survivor = Profile.objects.get()
    assert survivor.external_id == "u2"
    assert survivor.traits == {"plan": "pro", "city": "Oslo"}  # the survivor wins conflicts
    request.refresh_from_db()
    assert (request.status, request.profile, request.resolved_by) == ("merged", None, personas["admin"])
    with pytest.raises(identity.IdentityError):
        identity.merge_request_resolve(request=request, approve=True)


def test_alias_from_an_anonymous_id_merges_into_the_user(send):
    send("track", {"anonymousId": "dev-9", "event": "Product Viewed"})
    send("identify", {"userId": "u1"})
    send("alias", {"previousId": "dev-9", "userId": "u1"})
    profile = Profile.objects.get()
    assert profile.external_id == "u1"
    assert AnonymousId.objects.get().profile == profile


def test_a_merge_is_idempotent(db):
    source = Profile.objects.create(traits={"a": 1})
    target = Profile.objects.create(external_id="u1")
    first = identity.profile_merge(source=source, target=target, reason="identify")
    again = identity.profile_merge(source=source, target=target, reason="identify")
    assert first.pk == again.pk
    assert ProfileMerge.objects.count() == 1


def test_merging_two_known_profiles_without_approval_is_refused(db):
    a, b = Profile.objects.create(external_id="u1"), Profile.objects.create(external_id="u2")
    with pytest.raises(identity.IdentityError):
        identity.profile_merge(source=a, target=b, reason="identify")


def test_a_merge_calls_the_experiments_hook_when_it_exists(db, monkeypatch):
    import experiments.services as experiment_services

    calls = []
    monkeypatch.setattr(
        experiment_services,
        "assignments_merge",
        lambda *, source, target: calls.append((source.pk, target.pk)) or 2,
        raising=False,
    )
    a, b = Profile.objects.create(), Profile.objects.create(external_id="u1")
    merge = identity.profile_merge(source=a, target=b, reason="identify")
    assert calls == [(a.pk, b.pk)]
    assert merge.moved["assignments"] == 2


def test_a_batch_that_identifies_mid_way_keeps_every_event(send):
    body = send(
        "batch",
        {
            "batch": [
                {"type": "track", "anonymousId": "dev-1", "event": "Product Viewed", "messageId": "1"},
                {"type": "identify", "userId": "u1", "messageId": "2"},
                {"type": "identify", "userId": "u1", "anonymousId": "dev-1", "messageId": "3"},
                {"type": "track", "anonymousId": "dev-1", "event": "Product Added", "messageId": "4"},
            ]
        },
    )
    assert [r["status"] for r in body["results"]] == ["stored"] * 4
    profile = Profile.objects.get()
    assert profile.events.count() == 4


def test_set_once_traits_are_written_only_when_absent(send):
    send("identify", {"userId": "u1", "traits": {"plan": "free", "$set_once": {"signup": "2026-01-01"}}})
    send("identify", {"userId": "u1", "traits": {"plan": "pro", "$set_once": {"signup": "2026-05-05"}}})
    assert Profile.objects.get().traits == {"plan": "pro", "signup": "2026-01-01"}
