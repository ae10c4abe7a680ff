"""Segment webhooks: signed payloads on enter and exit, sent by a worker to a local HTTP server,
retried with exponential backoff, logged, and managed from the segment page."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.utils import timezone

from personalization import segments, webhooks
from personalization.models import Profile, Segment, SegmentWebhook, WebhookDelivery
from recsite.models import AuditEntry

pytestmark = pytest.mark.django_db

GOLD = {
    "version": 1,
    "root": {"op": "and", "conditions": [{"kind": "trait", "field": "plan", "op": "eq", "value": "gold"}]},
}


class Receiver:
    """A local HTTP server that records requests and answers with the queued status codes."""

    def __init__(self, statuses=()):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_hooks(settings):
    settings.SEGMENT_WEBHOOK_ALLOW_PRIVATE = True
    settings.SEGMENT_WEBHOOK_TIMEOUT_SECONDS = 5
    return settings


@pytest.fixture
def gold(db):
    for name, plan in (("ann", "gold"), ("bob", "free"), ("cat", "gold")):
        Profile.objects.create(external_id=name, traits={"plan": plan})
    return Segment.objects.create(key="gold", name="Gold", rule=GOLD)


def refresh(segment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return segments.segment_refresh(segment=segment)


def test_entries_and_exits_are_posted_signed_to_the_url(
    gold, local_hooks, django_capture_on_commit_callbacks
):
    with Receiver() as receiver:
        webhook, secret = webhooks.webhook_create(segment=gold, url=receiver.url)
        first = refresh(gold, django_capture_on_commit_callbacks)
        Profile.objects.filter(external_id="ann").update(traits={"plan": "free"})
        Profile.objects.filter(external_id="bob").update(traits={"plan": "gold"})
        refresh(gold, django_capture_on_commit_callbacks)
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [(b["type"], [p["user_id"] for p in b["profiles"]]) for b in bodies] == [
        ("segment.enter", ["ann", "cat"]),
        ("segment.enter", ["bob"]),
        ("segment.exit", ["ann"]),
    ]
    assert bodies[0]["segment"] == {"id": gold.pk, "key": "gold", "name": "Gold"}
    assert bodies[0]["refresh"] == first.pk and bodies[0]["parts"] == 1
    for request in receiver.requests:
        headers = request["headers"]
        assert webhooks.signature_verify(
            secret=secret,
            timestamp=headers[webhooks.TIMESTAMP_HEADER],
            signature=headers[webhooks.SIGNATURE_HEADER],
            body=request["body"],
        )
        # Checked independently of our own helper: HMAC-SHA256 over "<timestamp>.<body>".
        import hashlib
        import hmac

        mac = hmac.new(
            secret.encode(),
            headers[webhooks.TIMESTAMP_HEADER].encode() + b"." + request["body"],
            hashlib.sha256,
        )
        assert headers[webhooks.SIGNATURE_HEADER] == "v1=" + mac.hexdigest()
    assert not webhooks.signature_verify(
        secret="whsec_wrong",
        timestamp=receiver.requests[0]["headers"][webhooks.TIMESTAMP_HEADER],
        signature=receiver.requests[0]["headers"][webhooks.SIGNATURE_HEADER],
        body=receiver.requests[0]["body"],
    )
    deliveries = WebhookDelivery.objects.filter(webhook=webhook)
    assert {(d.status, d.attempts, d.status_code) for d in deliveries} == {("succeeded", 1, 200)}


def test_an_old_timestamp_is_refused_by_the_verification():
    body = b'{"x":1}'
    signature = webhooks.signature_compute(secret="s", timestamp=1_000, body=body)
    assert webhooks.signature_verify(secret="s", timestamp="1000", signature=signature, body=body, now=1_100)
    assert not webhooks.signature_verify(
        secret="s", timestamp="1000", signature=signature, body=body, now=2_000
    )
    assert not webhooks.signature_verify(
        secret="s", timestamp="1000", signature=signature, body=b"{}", now=1_100
    )


def test_failures_are_retried_with_exponential_backoff_then_given_up(gold, local_hooks, settings):
    settings.SEGMENT_WEBHOOK_MAX_ATTEMPTS = 4
    settings.SEGMENT_WEBHOOK_BACKOFF_SECONDS = 30
    with Receiver(statuses=[500, 503, 500, 500]) as receiver:
        webhooks.webhook_create(segment=gold, url=receiver.url, on_exit=False)
        run = segments.segment_refresh(segment=gold)
        (delivery_id,) = webhooks.webhooks_dispatch(refresh=run)
        now = timezone.now()
        waits = []
        for _ in range(5):
            wait = webhooks.webhook_delivery_attempt(delivery_id=delivery_id, now=now)
            delivery = WebhookDelivery.objects.get(pk=delivery_id)
            waits.append(wait)
            if wait is not None:
                assert delivery.next_attempt_at == now + timedelta(seconds=wait)
                # Not due yet: a duplicate message does nothing.
                assert webhooks.webhook_delivery_attempt(delivery_id=delivery_id, now=now) is None
                now += timedelta(seconds=wait)
    assert waits == [30, 60, 120, None, None]
    assert (delivery.status, delivery.attempts, delivery.status_code, delivery.error) == (
        "failed",
        4,
        500,
        "HTTP 500",
    )
    assert len(receiver.requests) == 4


def test_a_retry_succeeds_and_an_unreachable_url_logs_the_error(gold, local_hooks):
    with Receiver(statuses=[502]) as receiver:
        webhooks.webhook_create(segment=gold, url=receiver.url, on_exit=False)
        run = segments.segment_refresh(segment=gold)
        (delivery_id,) = webhooks.webhooks_dispatch(refresh=run)
        now = timezone.now()
        wait = webhooks.webhook_delivery_attempt(delivery_id=delivery_id, now=now)
        assert WebhookDelivery.objects.get(pk=delivery_id).status == "retrying"
        # The beat sweep finds the retry once it is overdue (its delayed message was lost).
        later = now + timedelta(seconds=wait + 120)
        assert webhooks.webhook_deliveries_due(now=later) == [delivery_id]
        assert webhooks.webhook_delivery_attempt(delivery_id=delivery_id, now=later) is None
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        assert (delivery.status, delivery.attempts, delivery.status_code) == ("succeeded", 2, 200)
        closed_port = receiver.url
    WebhookDelivery.objects.all().delete()
    # The server is gone: the connection is refused, and the error is kept on the row.
    SegmentWebhook.objects.update(url=closed_port)
    (delivery_id,) = webhooks.webhooks_dispatch(refresh=run)
    assert webhooks.webhook_delivery_attempt(delivery_id=delivery_id) is not None
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "retrying" and delivery.status_code is None and delivery.error


def test_a_mocked_transport_sees_batches_and_a_rerun_does_not_send_twice(gold, settings):
    settings.SEGMENT_WEBHOOK_BATCH = 1
    sent = []

    def transport(url, body, headers, timeout):
        sent.append(json.loads(body))
        return 204

    webhooks.webhook_create(segment=gold, url="https://hooks.example.com/x")
    run = segments.segment_refresh(segment=gold)
    ids = webhooks.webhooks_dispatch(refresh=run)
    assert webhooks.webhooks_dispatch(refresh=run) == ids  # the same rows, none added
    for delivery_id in ids:
        webhooks.webhook_delivery_attempt(delivery_id=delivery_id, transport=transport)
        webhooks.webhook_delivery_attempt(delivery_id=delivery_id, transport=transport)  # already done
    assert sorted((b["part"], b["parts"]) for b in sent) == [(1, 2), (2, 2)]
    assert webhooks.webhooks_dispatch(refresh=run) == []


def test_private_addresses_are_refused_unless_allowed(gold, settings):
    settings.SEGMENT_WEBHOOK_ALLOW_PRIVATE = False
    webhooks.webhook_create(segment=gold, url="http://127.0.0.1:9/hook", on_exit=False)
    (delivery_id,) = webhooks.webhooks_dispatch(refresh=segments.segment_refresh(segment=gold))
    webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
    assert "non-public address" in WebhookDelivery.objects.get(pk=delivery_id).error


def test_the_refresh_task_queues_the_deliveries_on_a_worker(
    gold, local_hooks, django_capture_on_commit_callbacks
):
    from personalization import tasks

    with Receiver() as receiver:
        webhooks.webhook_create(segment=gold, url=receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            tasks.segment_refresh(gold.pk)  # eager: refresh, dispatch, deliver
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_the_page_adds_a_webhook_shows_its_secret_once_and_logs_deliveries(client_as, gold):
    client = client_as("marketer")
    response = client.post(f"/segments/{gold.pk}/webhooks/", {"url": "ftp://nope", "on_enter": "on"})
    assert response.status_code == 400 and "http:// or https://" in response.content.decode()
    response = client.post(
        f"/segments/{gold.pk}/webhooks/", {"url": "https://hooks.example.com/gold", "on_enter": "on"}
    )
    webhook = SegmentWebhook.objects.get()
    page = response.content.decode()
    assert response.status_code == 200 and webhook.secret in page
    assert (webhook.on_enter, webhook.on_exit) == (True, False)
    assert AuditEntry.objects.filter(action="segment_webhook.create").exists()
    run = segments.segment_refresh(segment=gold)
    webhooks.webhooks_dispatch(refresh=run)
    page = client.get(f"/segments/{gold.pk}/").content.decode()
    assert webhook.secret not in page and webhook.secret_hint in page
    assert "Delivery log" in page and "pending" in page
    assert client_as("analyst").post(f"/segments/webhooks/{webhook.pk}/delete/").status_code == 403
    response = client_as("marketer").post(f"/segments/webhooks/{webhook.pk}/delete/")
    assert response.status_code == 302 and not SegmentWebhook.objects.exists()
    assert AuditEntry.objects.filter(action="segment_webhook.delete").exists()


def test_the_admin_lists_deliveries_without_the_secret(client_as, gold):
    webhook, secret = webhooks.webhook_create(segment=gold, url="https://hooks.example.com/gold")
    webhooks.webhooks_dispatch(refresh=segments.segment_refresh(segment=gold))
    client = client_as("admin")
    assert client.get("/admin/personalization/webhookdelivery/").status_code == 200
    page = client.get(f"/admin/personalization/segmentwebhook/{webhook.pk}/change/").content.decode()
    assert secret not in page
