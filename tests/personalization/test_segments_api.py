"""Segment API and pages: permissions, errors naming the rule part, refresh, members, export."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from personalization.models import Profile, Segment, SegmentMembership, SegmentRefresh

pytestmark = pytest.mark.django_db

GOLD = {
    "version": 1,
    "root": {
        "op": "and",
        "not": False,
        "conditions": [{"kind": "trait", "field": "plan", "op": "eq", "value": "gold"}],
    },
}


@pytest.fixture
def people(db):
    return [
        Profile.objects.create(external_id="ann", traits={"plan": "gold"}),
        Profile.objects.create(external_id="bob", traits={"plan": "free"}),
        Profile.objects.create(external_id="cat", traits={"plan": "gold"}),
    ]


def test_a_marketer_creates_a_segment_and_a_worker_fills_it(
    client_as, people, django_capture_on_commit_callbacks
):
    client = client_as("marketer")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/segments", {"key": "gold", "name": "Gold", "rule": GOLD}, content_type="application/json"
        )
    assert response.status_code == 201, response.json()
    segment = Segment.objects.get(key="gold")
    assert segment.size == 2
    members = client.get(f"/api/v1/segments/{segment.pk}/members").json()
    assert [m["user_id"] for m in members["results"]] == ["ann", "cat"]
    listed = client.get("/api/v1/segments").json()["results"]
    assert [s["size"] for s in listed] == [2]


def test_an_invalid_rule_is_refused_with_the_part_named(client_as, people):
    bad = {
        "version": 1,
        "root": {"conditions": [GOLD["root"]["conditions"][0], {"kind": "trait", "field": "x y"}]},
    }
    response = client_as("marketer").post(
        "/api/v1/segments", {"key": "bad", "name": "Bad", "rule": bad}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "rule.root.conditions[1].field"
    response = client_as("marketer").post(
        "/api/v1/segments/estimate",
        {"rule": {"version": 1, "root": {"conditions": [{"kind": "rfm", "group": "x"}]}}},
        content_type="application/json",
    )
    assert (response.status_code, response.json()["field"]) == (400, "rule.root.conditions[0].group")


def test_the_estimate_counts_without_saving(client_as, people):
    response = client_as("analyst").post(
        "/api/v1/segments/estimate", {"rule": GOLD}, content_type="application/json"
    )
    assert response.json() == {"size": 2}
    assert not Segment.objects.exists()


@pytest.mark.parametrize(("who", "status"), [("marketer", 202), ("analyst", 403), ("outsider", 403)])
def test_only_people_who_may_change_segments_can_refresh_them(client_as, people, who, status):
    segment = Segment.objects.create(key="gold", name="Gold", rule=GOLD)
    assert client_as(who).post(f"/api/v1/segments/{segment.pk}/refresh").status_code == status


def test_a_refresh_request_is_refused_while_one_runs(client_as, people):
    segment = Segment.objects.create(key="gold", name="Gold", rule=GOLD)
    SegmentRefresh.objects.create(segment=segment, started_at=segment.created_at)
    response = client_as("marketer").post(f"/api/v1/segments/{segment.pk}/refresh")
    assert response.status_code == 409 and response.json()["field"] == "segment"


@pytest.mark.parametrize(("who", "status"), [("analyst", 200), ("editor", 403), ("outsider", 403)])
def test_segment_reads_need_the_view_permission(client_as, people, who, status):
    Segment.objects.create(key="gold", name="Gold", rule=GOLD)
    assert client_as(who).get("/api/v1/segments").status_code == status
    assert client_as(who).get("/api/v1/profiles/ann/segments").status_code == status


def test_a_profile_lists_the_segments_it_is_in(client_as, people):
    segment = Segment.objects.create(key="gold", name="Gold", rule=GOLD)
    SegmentMembership.objects.create(segment=segment, profile=people[0], entered_at=segment.created_at)
    assert [s["key"] for s in client_as("marketer").get("/api/v1/profiles/ann/segments").json()] == ["gold"]
    assert client_as("marketer").get("/api/v1/profiles/bob/segments").json() == []


def test_segment_endpoints_are_in_the_openapi_schema(client_as):
    schema = client_as("admin").get("/api/schema/").content.decode()
    for path in (
        "/api/v1/segments/estimate",
        "/api/v1/segments/{id}/members",
        "/api/v1/profiles/{user_id}/segments",
    ):
        assert path in schema


def test_the_pages_show_size_history_charts_and_members(
    client_as, people, django_capture_on_commit_callbacks
):
    client = client_as("marketer")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("personalization:segment_create"),
            {
                "name": "Gold",
                "key": "gold",
                "kind": "dynamic",
                "refresh_every_minutes": 60,
                "rule": json.dumps(GOLD),
            },
        )
    segment = Segment.objects.get(key="gold")
    assert response.status_code == 302 and segment.size == 2
    page = client.get(segment.get_absolute_url()).content.decode()
    assert 'data-plotly="size-chart-data"' in page and "ann" in page
    listing = client.get(reverse("personalization:segment_list")).content.decode()
    assert "<polyline" in listing
    # Exporting needs the export permission, which marketers lack and analysts have.
    assert client.get(reverse("personalization:segment_members_export", args=[segment.pk])).status_code == 403
    export = client_as("analyst").get(reverse("personalization:segment_members_export", args=[segment.pk]))
    assert b"".join(export.streaming_content).decode().splitlines()[1:] == [
        f"{people[0].pk},ann,{SegmentMembership.objects.get(profile=people[0]).entered_at.isoformat()}",
        f"{people[2].pk},cat,{SegmentMembership.objects.get(profile=people[2]).entered_at.isoformat()}",
    ]


def test_the_form_shows_a_rule_error_and_a_static_upload_reports_unknown_ids(client_as, people):
    client = client_as("marketer")
    response = client.post(
        reverse("personalization:segment_create"),
        {
            "name": "Bad",
            "key": "bad",
            "kind": "dynamic",
            "rule": '{"version": 1, "root": {"conditions": [{"kind": "x"}]}}',
        },
    )
    assert response.status_code == 200 and "root.conditions[0].kind" in response.content.decode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        reverse("personalization:segment_create"),
        {
            "name": "List",
            "key": "list",
            "kind": "static",
            "upload": SimpleUploadedFile("ids.csv", b"ann\nzed\n"),
        },
        follow=True,
    )
    assert "Unknown ids (1): zed" in response.content.decode()
    assert Segment.objects.get(key="list").size == 1


def test_experiments_resolve_segments_through_memberships(people, settings):
    from django.utils.module_loading import import_string

    segment = Segment.objects.create(key="gold", name="Gold", rule=GOLD)
    SegmentMembership.objects.create(segment=segment, profile=people[0], entered_at=segment.created_at)
    resolver = import_string(settings.EXPERIMENTS_SEGMENT_RESOLVER)
    assert resolver(people[0].pk, [segment.pk]) and not resolver(people[1].pk, [segment.pk])


def test_odd_bodies_get_a_400_not_a_server_error(client_as, people):
    client = client_as("marketer")
    response = client.post("/api/v1/segments/estimate", [1, 2], content_type="application/json")
    assert (response.status_code, response.json()["field"]) == (400, "rule")
    response = client.post(
        "/api/v1/segments",
        {"key": "list", "name": "List", "kind": "static", "rule": None},
        content_type="application/json",
    )
    assert response.status_code == 201 and Segment.objects.get(key="list").rule == {}
    response = client.post(
        "/api/v1/segments", {"key": "d", "name": "D", "kind": "discovered"}, content_type="application/json"
    )
    assert (response.status_code, response.json()["field"]) == (400, "kind")
