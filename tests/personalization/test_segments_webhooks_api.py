"""The segment webhook API: list, add (the secret is shown once), delete; who may do what;
errors that name the field; the OpenAPI description."""

from __future__ import annotations

import pytest

from personalization import webhooks
from personalization.models import Segment, SegmentWebhook
from recsite.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def segment(db):
    return Segment.objects.create(key="fans", name="Fans")


def url(segment_id, webhook_id=None):
    base = f"/api/v1/segments/{segment_id}/webhooks"
    return base if webhook_id is None else f"{base}/{webhook_id}"


def test_a_marketer_adds_a_webhook_and_sees_its_secret_only_once(client_as, segment):
    client = client_as("marketer")
    response = client.post(
        url(segment.pk),
        {"url": "https://hooks.example.com/r", "on_exit": False},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    webhook = SegmentWebhook.objects.get(pk=created["id"])
    assert created["secret"] == webhook.secret and created["secret"].startswith("whsec_")
    assert created["segment"] == segment.pk and created["on_enter"] is True and created["on_exit"] is False
    assert created["secret_hint"] == webhook.secret_hint
    # The secret signs what the receiver verifies.
    signature = webhooks.signature_compute(secret=created["secret"], timestamp=100, body=b"{}")
    assert webhooks.signature_verify(
        secret=webhook.secret, timestamp="100", signature=signature, body=b"{}", now=100
    )
    listed = client.get(url(segment.pk)).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == webhook.pk
    assert "secret" not in listed["results"][0] and webhook.secret not in str(listed)
    assert AuditEntry.objects.filter(action="segment_webhook.create", actor__username="marketer").exists()


def test_a_marketer_deletes_a_webhook_of_the_segment_named_in_the_url(client_as, segment):
    other = Segment.objects.create(key="others", name="Others")
    webhook, _secret = webhooks.webhook_create(segment=segment, url="https://hooks.example.com/r")
    client = client_as("marketer")
    assert client.delete(url(other.pk, webhook.pk)).status_code == 404  # not that segment's
    assert SegmentWebhook.objects.filter(pk=webhook.pk).exists()
    assert client.delete(url(segment.pk, webhook.pk)).status_code == 204
    assert not SegmentWebhook.objects.filter(pk=webhook.pk).exists()
    assert AuditEntry.objects.filter(action="segment_webhook.delete", detail__webhook=webhook.pk).exists()
    assert client.delete(url(segment.pk, webhook.pk)).status_code == 404


def test_analysts_see_webhooks_but_may_not_add_or_delete_them(client_as, segment):
    webhook, _secret = webhooks.webhook_create(segment=segment, url="https://hooks.example.com/r")
    client = client_as("analyst")
    assert client.get(url(segment.pk)).status_code == 200
    refused = client.post(url(segment.pk), {"url": "https://x.example.com"}, content_type="application/json")
    assert refused.status_code == 403 and "error" in refused.json()
    assert client.delete(url(segment.pk, webhook.pk)).status_code == 403
    assert client_as("editor").get(url(segment.pk)).status_code == 403
    assert SegmentWebhook.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://files.example.com/x"}, "url"),
        ({"url": "https://hooks.example.com/r", "on_enter": False, "on_exit": False}, "on_enter"),
        ({"url": "https://hooks.example.com/r", "on_enter": "sometimes"}, "on_enter"),
        ({"url": "https://hooks.example.com/" + "x" * 600}, "url"),
    ],
)
def test_bad_webhooks_are_refused_with_the_field_named(client_as, segment, body, field):
    response = client_as("marketer").post(url(segment.pk), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field and response.json()["error"].startswith(f"{field}: ")
    assert SegmentWebhook.objects.count() == 0


def test_an_unknown_segment_is_a_404_in_json(client_as):
    client = client_as("marketer")
    assert client.get(url(999)).status_code == 404
    response = client.post(url(999), {"url": "https://hooks.example.com/r"}, content_type="application/json")
    assert response.status_code == 404 and "error" in response.json()


def test_the_webhook_endpoints_are_in_the_openapi_schema(client_as):
    schema = client_as("admin").get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert set(paths["/api/v1/segments/{segment}/webhooks"]) >= {"get", "post"}
    assert "delete" in paths["/api/v1/segments/{segment}/webhooks/{id}"]
    created = paths["/api/v1/segments/{segment}/webhooks"]["post"]["responses"]["201"]
    ref = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "secret" in schema["components"]["schemas"][ref]["properties"]
    listed = schema["components"]["schemas"]["SegmentWebhook"]["properties"]
    assert "secret" not in listed and "secret_hint" in listed
