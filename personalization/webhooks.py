"""Segment webhooks: signed JSON calls when profiles enter or leave a segment.

After a refresh commits, ``webhooks_dispatch`` turns its entries and exits into
``WebhookDelivery`` rows (one per webhook, event and batch of profiles; a unique constraint
makes a re-run harmless) and each row is posted by a worker. A failed attempt is retried with
exponential backoff until ``SEGMENT_WEBHOOK_MAX_ATTEMPTS``; every attempt leaves its status
code or error on the row, which is the delivery log shown on the segment page.

Signature (docs/segments.md): ``X-Recsite-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
with ``X-Recsite-Timestamp: <unix seconds>``, so a receiver can refuse old or replayed calls.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from recsite import outbox
from recsite.services import audit_record

from .models import Segment, SegmentMembership, SegmentRefresh, SegmentWebhook, WebhookDelivery

SIGNATURE_HEADER = "X-Recsite-Signature"
TIMESTAMP_HEADER = "X-Recsite-Timestamp"
DELIVERY_HEADER = "X-Recsite-Delivery"
USER_AGENT = "recsite-webhooks/1"

# (url, body, headers, timeout) -> HTTP status code; raises OSError when no answer came.
Transport = Callable[[str, bytes, dict[str, str], float], int]


class WebhookError(ValueError):
    """A webhook cannot be created as asked; ``field`` names the form field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# --- Configuration -----------------------------------------------------------------------------


def webhook_create(
    *, segment: Segment, url: str, on_enter: bool = True, on_exit: bool = True, created_by=None
) -> tuple[SegmentWebhook, str]:
    """A new webhook with a fresh secret; the secret is returned to be shown once."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("url", "Enter an http:// or https:// URL.")
    if len(url) > 500:
        raise WebhookError("url", "The URL is longer than 500 characters.")
    if not (on_enter or on_exit):
        raise WebhookError("on_enter", "Choose entries, exits or both.")
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        webhook = SegmentWebhook.objects.create(
            segment=segment,
            url=url,
            secret=secret,
            on_enter=on_enter,
            on_exit=on_exit,
            created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        )
        audit_record(actor=created_by, action="segment_webhook.create", target=webhook, detail={"url": url})
    return webhook, secret


def webhook_delete(*, webhook: SegmentWebhook, deleted_by=None) -> None:
    """Delete a webhook and its delivery log (pending retries stop: their row is gone)."""
    with transaction.atomic():
        audit_record(
            actor=deleted_by,
            action="segment_webhook.delete",
            target=webhook.segment,
            detail={"webhook": webhook.pk, "url": webhook.url},
        )
        webhook.delete()


# --- Signing -----------------------------------------------------------------------------------


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under the webhook's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signature_verify(
    *,
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float | None = None,
    tolerance: int = 300,
) -> bool:
    """What a receiver does (docs/segments.md): a fresh timestamp and a matching signature."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance:
        return False
    expected = signature_compute(secret=secret, timestamp=int(timestamp), body=body)
    return hmac.compare_digest(expected, signature)


# --- Dispatch ----------------------------------------------------------------------------------


def _payload(*, webhook, refresh, segment, event, part, parts, rows) -> dict:
    return {
        "type": f"segment.{event}",
        "segment": {"id": segment.pk, "key": segment.key, "name": segment.name},
        "refresh": refresh.pk,
        "occurred_at": refresh.started_at.isoformat(),
        "part": part,
        "parts": parts,
        "profiles": [{"profile_id": pid, "user_id": user_id} for pid, user_id in rows],
    }


def webhooks_dispatch(*, refresh: SegmentRefresh) -> list[int]:
    """Create the deliveries of a finished refresh; returns the ids still to be sent.

    Entries are the stays opened at the refresh time, exits the stays closed at it (a refresh
    stamps both with its ``started_at``)."""
    if refresh.status != SegmentRefresh.Status.SUCCEEDED or not (refresh.entered or refresh.exited):
        return []
    segment = refresh.segment
    hooks = list(segment.webhooks.filter(active=True))
    if not hooks:
        return []
    batch = settings.SEGMENT_WEBHOOK_BATCH
    stays = SegmentMembership.objects.filter(segment=segment).order_by("profile_id")
    changes = {
        "enter": list(
            stays.filter(entered_at=refresh.started_at).values_list("profile_id", "profile__external_id")
        ),
        "exit": list(
            stays.filter(exited_at=refresh.started_at).values_list("profile_id", "profile__external_id")
        ),
    }
    rows = []
    for webhook in hooks:
        for event, people in changes.items():
            if not people or not (webhook.on_enter if event == "enter" else webhook.on_exit):
                continue
            chunks = [people[start : start + batch] for start in range(0, len(people), batch)]
            for part, chunk in enumerate(chunks, start=1):
                payload = _payload(
                    webhook=webhook,
                    refresh=refresh,
                    segment=segment,
                    event=event,
                    part=part,
                    parts=len(chunks),
                    rows=chunk,
                )
                rows.append(
                    WebhookDelivery(webhook=webhook, refresh=refresh, event=event, part=part, payload=payload)
                )
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return list(
        WebhookDelivery.objects.filter(
            refresh=refresh, status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING]
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def webhooks_enqueue(*, refresh: SegmentRefresh) -> None:
    """After the refresh commits, queue the dispatch when the segment has webhooks."""
    if not (refresh.entered or refresh.exited):
        return
    if not SegmentWebhook.objects.filter(segment_id=refresh.segment_id, active=True).exists():
        return
    from . import tasks

    outbox.enqueue(tasks.segment_webhooks_dispatch, refresh.pk)


# --- Delivery ----------------------------------------------------------------------------------


def _check_host(url: str) -> None:
    """Refuse private, loopback and link-local addresses unless allowed (SSRF guard)."""
    if settings.SEGMENT_WEBHOOK_ALLOW_PRIVATE:
        return
    host = urlsplit(url).hostname or ""
    for info in socket.getaddrinfo(host, None):
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise OSError(f"{host} resolves to a non-public address ({address}).")


def urllib_transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST with the standard library; any HTTP answer is a status code, no answer an OSError."""
    _check_host(url)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(
            request, timeout=timeout
        ) as response:  # the scheme is checked on creation
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def backoff_seconds(attempt: int, *, base: float) -> float:
    """Wait after failed attempt ``attempt`` (1-based): base, 2 x base, 4 x base, ..."""
    return base * 2 ** (attempt - 1)


def webhook_delivery_attempt(
    *, delivery_id: int, transport: Transport | None = None, now: datetime | None = None
) -> float | None:
    """Post one delivery; returns the seconds to wait before the next attempt, or None when done.

    The row is claimed by a conditional update on its attempt count, so two workers holding
    the same message cannot both send it."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    open_states = [WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING]
    if delivery is None or delivery.status not in open_states or not delivery.webhook.active:
        return None
    now = now or timezone.now()
    if delivery.next_attempt_at and delivery.next_attempt_at > now + timedelta(seconds=1):
        return None  # not due: a duplicate message; the one for the due time will come
    attempt = delivery.attempts + 1
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, status__in=open_states
    ).update(attempts=attempt, last_attempt_at=now)
    if not claimed:
        return None
    body = json.dumps({"id": delivery.pk, **delivery.payload}, separators=(",", ":")).encode()
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: str(delivery.pk),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_compute(secret=delivery.webhook.secret, timestamp=timestamp, body=body),
    }
    status_code, error = None, ""
    try:
        status_code = (transport or urllib_transport)(
            delivery.webhook.url, body, headers, settings.SEGMENT_WEBHOOK_TIMEOUT_SECONDS
        )
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, bad hosts
        error = str(getattr(exc, "reason", None) or exc)[:500] or exc.__class__.__name__
    update = {"status_code": status_code, "error": error}
    wait = None
    if not error:
        update.update(
            status=WebhookDelivery.Status.SUCCEEDED, delivered_at=timezone.now(), next_attempt_at=None
        )
    elif attempt >= settings.SEGMENT_WEBHOOK_MAX_ATTEMPTS:
        update.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        wait = backoff_seconds(attempt, base=settings.SEGMENT_WEBHOOK_BACKOFF_SECONDS)
        update.update(status=WebhookDelivery.Status.RETRYING, next_attempt_at=now + timedelta(seconds=wait))
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=attempt).update(**update)
    return wait


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Retries whose time has come but whose delayed message was lost (a restarted broker or
    worker): the beat sweep sends them again. A retry still in flight is claimed only once."""
    now = now or timezone.now()
    slack = timedelta(seconds=max(60, settings.SEGMENT_WEBHOOK_TIMEOUT_SECONDS * 2))
    due = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.RETRYING, next_attempt_at__lte=now - slack
    ).order_by("next_attempt_at")
    return list(due.values_list("pk", flat=True)[:limit])


def segment_deliveries(*, segment: Segment, limit: int = 20) -> list[WebhookDelivery]:
    """The latest deliveries of a segment's webhooks (the delivery log on its page)."""
    return list(WebhookDelivery.objects.filter(webhook__segment=segment).select_related("webhook")[:limit])
