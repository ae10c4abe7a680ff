"""Profiles: the customer-360 page, declared preferences, privacy export/deletion, retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from catalog.models import ItemTag, Tag
from personalization import identity, interactions, profiles
from personalization.models import (
    AnonymousId,
    DeclaredPreference,
    DeletionLog,
    Event,
    Interaction,
    MergeRequest,
    Profile,
    WriteKey,
)
from tests import factories


@pytest.fixture
def taxonomy(db):
    genre = Tag.objects.add_root({"name": "Genre"})
    mood = Tag.objects.add_root({"name": "Mood"})
    anime = Tag.objects.add_child(genre, {"name": "Anime"})
    drama = Tag.objects.add_child(genre, {"name": "Drama"})
    dark = Tag.objects.add_child(mood, {"name": "Dark"})
    return {"anime": anime, "drama": drama, "dark": dark}


@pytest.fixture
def person(taxonomy):
    items = factories.items(3)
    ItemTag.objects.create(item=items[0], tag=taxonomy["anime"])
    ItemTag.objects.create(item=items[1], tag=taxonomy["anime"])
    ItemTag.objects.create(item=items[1], tag=taxonomy["dark"])
    ItemTag.objects.create(item=items[2], tag=taxonomy["drama"])
    profile = Profile.objects.create(external_id="u1", traits={"email": "u1@example.com"})
    AnonymousId.objects.create(anonymous_id="dev-1", profile=profile)
    factories.events(
        [(profile, items[0], "complete"), (profile, items[1], "play"), (profile, items[2], "dislike")]
    )
    interactions.interactions_rebuild()
    return profile


def test_tag_affinities_sum_interaction_strengths_per_tag_by_facet(person):
    rows = [(a.facet, a.tag, a.strength, a.items) for a in profiles.tag_affinities(profile=person)]
    assert rows == [("Genre", "Anime", 4.0, 2), ("Genre", "Drama", -2.0, 1), ("Mood", "Dark", 1.0, 1)]


def test_the_customer_360_page_shows_identities_traits_interests_and_a_filtered_timeline(client_as, person):
    client = client_as("marketer")
    html = client.get(person.get_absolute_url()).content.decode()
    assert "dev-1" in html and "u1@example.com" in html
    assert 'data-plotly="affinity-chart-data"' in html
    assert html.count("<tr><td>20") == 3
    filtered = client.get(person.get_absolute_url(), {"type": "dislike"}).content.decode()
    assert filtered.count("<tr><td>20") == 1
    future = client.get(person.get_absolute_url(), {"since": "2999-01-01", "until": "bad"}).content.decode()
    assert "No events match these filters" in future
    # Only the roles that may act see the privacy buttons.
    assert "Delete profile" not in html
    assert "Delete profile" in client_as("admin").get(person.get_absolute_url()).content.decode()


def test_declared_preferences_from_the_api_are_stored_and_validated(client_as, taxonomy):
    client = client_as("admin")
    url = "/api/v1/profiles/new-user/preferences"
    response = client.post(
        url, {"liked": ["genre/anime"], "disliked": ["mood/dark"]}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json() == {"liked": ["genre/anime"], "disliked": ["mood/dark"]}
    assert Profile.objects.get(external_id="new-user").declared_preferences.count() == 2
    bad = client.post(url, {"liked": ["genre/nope"]}, content_type="application/json")
    assert (bad.status_code, bad.json()["field"]) == (400, "liked")
    both = client.post(
        url, {"liked": ["genre/anime"], "disliked": ["genre/anime"]}, content_type="application/json"
    )
    assert both.status_code == 400
    refused = client_as("analyst").post(url, {"liked": []}, content_type="application/json")
    assert refused.status_code == 403


def test_the_quiz_page_stores_likes_and_dislikes(client_as, person, taxonomy):
    client = client_as("admin")
    url = reverse("personalization:profile_quiz", args=[person.pk])
    page = client.get(url).content.decode()
    assert "Anime" in page and "Mood" in page
    response = client.post(url, {"liked": ["genre/anime", "genre/drama"], "disliked": ["mood/dark"]})
    assert response.status_code == 302
    assert profiles.preferences_for(profile=person) == {
        "liked": ["genre/anime", "genre/drama"],
        "disliked": ["mood/dark"],
    }
    client.post(url, {"liked": ["genre/drama"]})
    assert DeclaredPreference.objects.filter(profile=person).count() == 1


def test_an_export_contains_everything_about_the_person(client_as, person):
    response = client_as("analyst").get(f"/api/v1/profiles/{person.external_id}/export")
    assert response.status_code == 200
    data = response.json()
    assert data["profile"]["traits"] == {"email": "u1@example.com"}
    assert data["anonymous_ids"] == ["dev-1"]
    assert [e["type"] for e in data["events"]] == ["complete", "play", "dislike"]
    assert len(data["interactions"]) == 3
    download = client_as("admin").get(reverse("personalization:profile_export", args=[person.pk]))
    assert json.loads(download.content)["profile"]["user_id"] == "u1"
    assert client_as("editor").get(f"/api/v1/profiles/{person.external_id}/export").status_code == 403


def test_deleting_a_profile_removes_all_its_data_and_logs_no_personal_data(client_as, person, personas):
    other = Profile.objects.create(external_id="u2")
    MergeRequest.objects.create(profile=person, into=other, reason="u1 and u2 share a device")
    assert client_as("marketer").delete("/api/v1/profiles/u1").status_code == 403
    response = client_as("admin").delete("/api/v1/profiles/u1")
    assert response.status_code == 200
    assert not Profile.objects.filter(external_id="u1").exists()
    assert (
        not Event.objects.exists() and not Interaction.objects.exists() and not AnonymousId.objects.exists()
    )
    assert not MergeRequest.objects.exists()
    log = DeletionLog.objects.get()
    assert log.deleted_by == personas["admin"]
    assert log.id_hash == profiles.id_hash("u1") and "u1" not in json.dumps(log.counts)
    assert log.counts == {"events": 3, "anonymous_ids": 1, "interactions": 3}
    assert client_as("admin").delete("/api/v1/profiles/u1").status_code == 404


def test_deleting_from_the_ui_asks_for_confirmation(client_as, person):
    client = client_as("admin")
    url = reverse("personalization:profile_delete", args=[person.pk])
    assert "Delete permanently" in client.get(url).content.decode()
    assert client.post(url).status_code == 302
    assert not Profile.objects.filter(pk=person.pk).exists()


def test_retention_deletes_only_events_older_than_the_setting(db, settings):
    profile = factories.profiles(1)[0]
    now = datetime(2026, 11, 30, tzinfo=UTC)
    factories.events([(profile, None, "view")] * 3, start=now - timedelta(days=100), step=timedelta(days=40))
    settings.EVENT_RETENTION_DAYS = 0
    assert profiles.events_retention_apply(now=now) == 0
    settings.EVENT_RETENTION_DAYS = 50
    assert profiles.events_retention_apply(now=now, chunk_size=1) == 2
    assert Event.objects.count() == 1


def test_the_retention_task_runs_the_service(db, settings):
    from personalization.tasks import events_retention_apply

    settings.EVENT_RETENTION_DAYS = 1
    assert events_retention_apply.delay().get() == 0


def test_admins_create_and_revoke_write_keys_in_the_ui_and_others_cannot(client_as):
    assert client_as("marketer").get(reverse("personalization:write_keys")).status_code == 403
    client = client_as("admin")
    page = client.post(reverse("personalization:write_keys"), {"source": "web"}).content.decode()
    key = WriteKey.objects.get()
    assert key.prefix in page and "shown once" in page
    client.post(reverse("personalization:write_key_revoke", args=[key.pk]))
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_admins_resolve_merge_requests_in_the_ui(client_as):
    a, b = Profile.objects.create(external_id="u1"), Profile.objects.create(external_id="u2")
    identity.merge_request_record(profile=a, into=b, reason="shared device")
    assert client_as("analyst").get(reverse("personalization:merge_requests")).status_code == 403
    client = client_as("admin")
    assert "shared device" in client.get(reverse("personalization:merge_requests")).content.decode()
    request = MergeRequest.objects.get()
    client.post(reverse("personalization:merge_request_resolve", args=[request.pk]), {"decision": "merge"})
    assert list(Profile.objects.values_list("external_id", flat=True)) == ["u2"]
    assert MergeRequest.objects.get().status == "merged"
