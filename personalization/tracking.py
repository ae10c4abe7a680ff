"""Event ingestion (Segment tracking spec): write keys, validation, vocabulary, clock skew,
de-duplication, and the bulk write path shared by the API and the importer.

The hot path is hand-written: one pass of plain-Python validation per message, then a
handful of queries per batch whatever its size (pinned by tests/personalization/
test_tracking_queries.py). Nothing here needs the Celery broker.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import Item
from recsite.services import audit_record

from . import eventstore, identity, interactions, profiles
from .models import AnonymousId, Event, ImportCheckpoint, Profile, Source, WriteKey

logger = logging.getLogger(__name__)

KEY_PREFIX = "rs_wk_"
# last_used_at is written at most this often per key, to keep the hot path read-only.
LAST_USED_GRANULARITY = timedelta(seconds=60)
FUTURE_TOLERANCE = timedelta(hours=24)
KINDS = {"track", "page", "screen", "identify", "alias"}
CANONICAL_TYPES = frozenset(Event.Type.values) - {"identify", "alias"}
VALUE_PROPERTIES = ("value", "rating", "revenue", "price")
MAX_NAME_LENGTH = 200


# --- Write keys ---------------------------------------------------------------------------


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write_key_create(*, source_name: str, created_by: AbstractBaseUser | None = None) -> tuple[WriteKey, str]:
    """A new key for the named source (created if missing). The clear key is returned once
    and never stored."""
    source_name = source_name.strip()
    if not source_name:
        raise ValueError("A source name is required.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        source, _ = Source.objects.get_or_create(name=source_name[:100])
        write_key = WriteKey.objects.create(
            source=source,
            prefix=key[: len(KEY_PREFIX) + 6],
            key_hash=key_hash(key),
            created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        )
        audit_record(actor=created_by, action="write_key.create", target=write_key)
    return write_key, key


def write_key_revoke(*, write_key: WriteKey, revoked_by: AbstractBaseUser | None = None) -> bool:
    """Revoke a key (conditional: revoking twice is a no-op). Effective on the next request."""
    revoked = (
        WriteKey.objects.filter(pk=write_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        == 1
    )
    if revoked:
        audit_record(actor=revoked_by, action="write_key.revoke", target=write_key)
    return revoked


def write_key_authenticate(*, authorization: str, now: datetime | None = None) -> WriteKey | None:
    """The active key named by an HTTP Basic header (key as user name, empty password)."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    key = decoded.partition(":")[0]
    if not key:
        return None
    write_key = (
        WriteKey.objects.select_related("source")
        .filter(key_hash=key_hash(key), revoked_at__isnull=True)
        .first()
    )
    if write_key is None:
        return None
    now = now or timezone.now()
    if write_key.last_used_at is None or now - write_key.last_used_at >= LAST_USED_GRANULARITY:
        WriteKey.objects.filter(pk=write_key.pk).update(last_used_at=now)
        write_key.last_used_at = now
    return write_key


# --- Validation -------------------------------------------------------------------------------


class Rejected(Exception):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class Message:
    index: int
    kind: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    name: str
    event_type: str
    properties: dict
    traits: dict
    timestamp: datetime
    item_ref: str | None = None
    value: float | None = None
    previous_id: str | None = None
    properties_json: str = "{}"
    profile_id: int | None = None
    item_id: int | None = None


@dataclass
class Limits:
    """Settings read once per batch (settings look-ups are slow on a per-event path)."""

    max_event_bytes: int
    check_event_size: bool
    item_properties: tuple[str, ...] = ()
    name_map: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _name_map(items: tuple[tuple[str, str], ...]) -> dict[str, str]:
    mapped = {name.lower(): kind for name, kind in items}
    mapped.update({kind: kind for kind in CANONICAL_TYPES})
    return mapped


def event_type_for(name: str, mapping: Mapping[str, str] | None = None) -> str:
    """The canonical type of an incoming event name ("other" when unmapped)."""
    if mapping is None:
        mapping = _name_map(tuple(settings.EVENT_NAME_MAP.items()))
    kind = mapping.get(name) or mapping.get(name.lower())
    return kind if kind in CANONICAL_TYPES else "other"


def parse_time(value: object, field: str) -> datetime | None:
    """ISO 8601 (naive means UTC) or Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise Rejected(f"{field} is not an ISO 8601 date-time.", field) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            parsed = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise Rejected(f"{field} is out of range.", field) from None
    else:
        raise Rejected(f"{field} must be an ISO 8601 string.", field)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def event_time(
    *,
    timestamp: datetime | None,
    original: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> tuple[datetime, dict]:
    """When the event happened, corrected for the device's clock skew, and flags to store.

    ``receivedAt - (sentAt - originalTimestamp)`` when the client sent both device times
    (Segment's rule); else the given timestamp; else receipt. More than 24 h in the future
    is clamped to receipt and flagged.
    """
    flags: dict = {}
    if original is not None and sent_at is not None:
        when = received_at - (sent_at - original)
    else:
        when = timestamp or original or received_at
    if when > received_at + FUTURE_TOLERANCE:
        flags["$timestamp_clamped"] = when.isoformat()
        when = received_at
    return when, flags


def _string(
    value: object, field: str, *, required: bool = False, max_length: int = MAX_NAME_LENGTH
) -> str | None:
    if value is None or value == "":
        if required:
            raise Rejected(f"{field} is required.", field)
        return None
    if not isinstance(value, str):
        raise Rejected(f"{field} must be a string.", field)
    if len(value) > max_length:
        raise Rejected(f"{field} is longer than {max_length} characters.", field)
    return value


def _object(value: object, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(f"{field} must be a JSON object.", field)
    return value


def _ids(raw: Mapping) -> tuple[str | None, str | None]:
    try:
        user_id = identity.id_clean(raw.get("userId"), field="userId")
        anonymous_id = identity.id_clean(raw.get("anonymousId"), field="anonymousId")
    except identity.IdentityError as exc:
        raise Rejected(str(exc), exc.field) from None
    return user_id, anonymous_id


def _properties_finish(properties: dict, limits: Limits) -> tuple[str | None, float | None, str]:
    """The item reference, the numeric value and the JSON text of an event's properties;
    raises Rejected for a bad item id, an oversize event or a NUL character."""
    item_ref = None
    for key in limits.item_properties:
        ref = properties.get(key)
        if ref is not None and ref != "":
            if isinstance(ref, int) and not isinstance(ref, bool):
                ref = str(ref)
            if not isinstance(ref, str) or len(ref) > MAX_NAME_LENGTH:
                raise Rejected(f"properties.{key} must be a string id.", f"properties.{key}")
            item_ref = ref
            break
    value = None
    for key in VALUE_PROPERTIES:
        candidate = properties.get(key)
        if isinstance(candidate, int | float) and not isinstance(candidate, bool):
            value = float(candidate)
            break
    # Serialised once, here: the size check and the INSERT both use it.
    try:
        properties_json = json.dumps(properties, separators=(",", ":"))
    except RecursionError:
        raise Rejected("properties are nested too deeply.", "properties") from None
    if limits.check_event_size and len(properties_json) > limits.max_event_bytes:
        raise Rejected(f"The event is larger than {limits.max_event_bytes} bytes.", "properties")
    if "\\u0000" in properties_json:
        raise Rejected("NUL characters are not allowed in properties.", "properties")
    return item_ref, value, properties_json


def message_parse(
    raw: object,
    *,
    index: int,
    kind: str | None,
    received_at: datetime,
    limits: Limits,
    defaults: Mapping | None = None,
) -> Message:
    """Validate and normalise one Segment message; raises Rejected naming the field."""
    if not isinstance(raw, dict):
        raise Rejected("Each event must be a JSON object.")
    declared = raw.get("type")
    kind = kind or declared
    if kind not in KINDS:
        raise Rejected("type must be one of track, identify, page, screen, alias.", "type")
    if kind == "screen":
        kind = "page"
    message_id = raw.get("messageId")
    if message_id is None or message_id == "":
        message_id = str(uuid.uuid4())
    elif isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)
    else:
        message_id = _string(message_id, "messageId")
    user_id, anonymous_id = _ids(raw)
    previous_id = None
    if kind == "alias":
        try:
            previous_id = identity.id_clean(raw.get("previousId"), field="previousId")
        except identity.IdentityError as exc:
            raise Rejected(str(exc), exc.field) from None
        if previous_id is None:
            raise Rejected("previousId is required.", "previousId")
        if user_id is None:
            raise Rejected("userId is required.", "userId")
    elif user_id is None and anonymous_id is None:
        raise Rejected("userId or anonymousId is required.", "userId")
    properties = _object(raw.get("properties"), "properties")
    traits = _object(raw.get("traits"), "traits")
    context = _object(raw.get("context"), "context")
    if kind == "track":
        name = _string(raw.get("event"), "event", required=True)
        event_type = event_type_for(name, limits.name_map or None)
    elif kind == "page":
        name = _string(raw.get("name"), "name") or properties.get("name") or "page"
        name = name if isinstance(name, str) else "page"
        event_type = "page"
    else:
        name = event_type = kind
    defaults = defaults or {}
    timestamp, flags = event_time(
        timestamp=parse_time(raw.get("timestamp"), "timestamp"),
        original=parse_time(raw.get("originalTimestamp"), "originalTimestamp"),
        sent_at=parse_time(raw.get("sentAt") or defaults.get("sentAt"), "sentAt"),
        received_at=received_at,
    )
    if flags or context:
        properties = {**properties, **flags}
        if context:
            properties["$context"] = context
    if kind == "identify" and traits:
        properties = {**properties, "traits": traits}
    elif kind == "alias":
        properties = {**properties, "previousId": previous_id}
    if not traits and kind == "identify":
        traits = _object(context.get("traits"), "context.traits")
    item_ref, value, properties_json = _properties_finish(properties, limits)
    return Message(
        index=index, kind=kind, message_id=message_id, user_id=user_id, anonymous_id=anonymous_id,
        name=name, event_type=event_type, properties=properties, traits=traits, timestamp=timestamp,
        item_ref=item_ref, value=value, previous_id=previous_id, properties_json=properties_json,
    )  # fmt: skip


# --- Ingestion -----------------------------------------------------------------------------------


@dataclass
class IngestReport:
    results: list[dict]
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    profiles_created: int = 0
    items_created: int = 0
    merges: int = 0
    messages: list[Message] = field(default_factory=list, repr=False)


def limits_load(*, body_bytes: int = 0) -> Limits:
    """The settings one batch needs, read once (settings look-ups are slow per event). A body
    no larger than one event's limit cannot hold an oversize event: the check is skipped."""
    return Limits(
        max_event_bytes=settings.TRACKING_MAX_EVENT_BYTES,
        check_event_size=body_bytes == 0 or body_bytes > settings.TRACKING_MAX_EVENT_BYTES,
        item_properties=tuple(settings.TRACKING_ITEM_PROPERTIES),
        name_map=_name_map(tuple(settings.EVENT_NAME_MAP.items())),
    )


def events_ingest(
    *,
    source: Source,
    messages: Sequence[object],
    received_at: datetime | None = None,
    kind: str | None = None,
    body_bytes: int = 0,
    defaults: Mapping | None = None,
) -> IngestReport:
    """Validate, de-duplicate and store a batch of Segment messages; one result per message
    in input order. Everything is committed before this returns."""
    received_at = received_at or timezone.now()
    limits = limits_load(body_bytes=body_bytes)
    report = IngestReport(results=[None] * len(messages))
    parsed: list[Message] = []
    for index, raw in enumerate(messages):
        try:
            parsed.append(
                message_parse(
                    raw, index=index, kind=kind, received_at=received_at, limits=limits, defaults=defaults
                )
            )
        except Rejected as exc:
            message_id = raw.get("messageId") if isinstance(raw, dict) else None
            report.results[index] = _rejected(index, message_id, str(exc), exc.field)
            report.rejected += 1
    messages_store(source=source, parsed=parsed, received_at=received_at, report=report)
    return report


def messages_store(
    *, source: Source, parsed: list[Message], received_at: datetime, report: IngestReport, bulk: bool = False
) -> None:
    """Store validated messages (``report.results`` already sized, indexed by
    ``Message.index``) in one transaction: a message id repeated in the batch or already
    stored for the source is a duplicate. ``bulk`` (the importer) writes events with COPY
    on PostgreSQL."""
    results = report.results
    seen: set[str] = set()
    unique: list[Message] = []
    for message in parsed:
        if message.message_id in seen:
            results[message.index] = {
                "index": message.index, "messageId": message.message_id, "status": "duplicate"
            }  # fmt: skip
            report.duplicates += 1
            continue
        seen.add(message.message_id)
        unique.append(message)
    if unique:
        with transaction.atomic():
            _store(source=source, parsed=unique, received_at=received_at, results=results, report=report,
                   bulk=bulk)  # fmt: skip
    report.messages = unique


def _rejected(index: int, message_id: object, error: str, field: str | None) -> dict:
    if not isinstance(message_id, str | int) or isinstance(message_id, bool):
        message_id = None
    return {"index": index, "messageId": message_id, "status": "rejected", "error": error, "field": field}


def _store(
    *,
    source: Source,
    parsed: list[Message],
    received_at: datetime,
    results: list,
    report: IngestReport,
    bulk: bool = False,
) -> None:
    # Duplicates are found by the INSERT itself (ON CONFLICT DO NOTHING RETURNING), which
    # probes the unique index anyway. Only messages that may change identity (merge, link,
    # traits) are checked first, so that a replay does not apply them again.
    existing = eventstore.existing_message_ids(
        source.pk,
        [m.message_id for m in parsed if m.kind in ("identify", "alias") or (m.user_id and m.anonymous_id)],
    )
    fresh: list[Message] = []
    for m in parsed:
        if m.message_id in existing:
            results[m.index] = {"index": m.index, "messageId": m.message_id, "status": "duplicate"}
            report.duplicates += 1
        else:
            fresh.append(m)
    if not fresh:
        return
    ids = _ProfileIds(fresh)
    # Messages that change identity go one by one (rare); then everything else in bulk.
    for m in fresh:
        if not ids.needs_identity_work(m):
            continue
        try:
            if m.kind == "alias":
                profile, merged = identity.profile_alias(
                    previous_id=m.previous_id, user_id=m.user_id, at=m.timestamp
                )
            else:
                profile, merged = identity.profile_identify(
                    user_id=m.user_id, anonymous_id=m.anonymous_id, at=m.timestamp
                )
        except identity.IdentityError as exc:
            results[m.index] = _rejected(m.index, m.message_id, str(exc), exc.field)
            report.rejected += 1
            m.profile_id = -1
            continue
        if m.kind == "identify" and m.traits:
            profiles.traits_apply(profile=profile, traits=m.traits)
        report.merges += merged
        if merged:
            ids.load(fresh)
        m.profile_id = profile.pk
        ids.remember(m, profile.pk)
    fresh = [m for m in fresh if m.profile_id != -1]
    if report.merges:
        # A merge deleted profiles that earlier messages may point at: resolve all by id again.
        ids.load(fresh)
        for m in fresh:
            m.profile_id = None
    report.profiles_created += ids.create_missing(fresh)
    for m in fresh:
        m.profile_id = ids.profile_for(m)
    report.items_created += _items_resolve(fresh)

    rows = [
        (source.pk, m.message_id, m.name, m.event_type, m.profile_id, m.item_id, m.value,
         m.properties_json, m.timestamp, received_at)
        for m in fresh
    ]  # fmt: skip
    inserted = eventstore.events_copy(rows) if bulk else None
    if inserted is None:
        inserted = eventstore.events_insert(rows)
    if len(inserted) < len(fresh):
        # A concurrent request committed these message ids after our duplicate check: they
        # are duplicates, and must not add to the interaction strengths a second time.
        lost = [m for m in fresh if m.message_id not in inserted]
        for m in lost:
            results[m.index] = {"index": m.index, "messageId": m.message_id, "status": "duplicate"}
        report.duplicates += len(lost)
        fresh = [m for m in fresh if m.message_id in inserted]
    for m in fresh:
        results[m.index] = {"index": m.index, "messageId": m.message_id, "status": "stored"}
    report.stored += len(fresh)

    weights = interactions.interaction_weights()
    interactions.interactions_add(
        deltas=interactions.deltas_collect(
            (
                m.profile_id,
                m.item_id,
                interactions.event_weight(
                    event_type=m.event_type, value=m.value, properties=m.properties, weights=weights
                ),
                m.timestamp,
            )
            for m in fresh
            if m.item_id is not None and m.event_type in weights
        )
    )
    _profiles_seen(fresh)


class _ProfileIds:
    """Profile ids of a batch's user ids and anonymous ids: two queries, then lookups."""

    def __init__(self, messages: list[Message]):
        self.users: dict[str, int] = {}
        self.anons: dict[str, tuple[int, str | None]] = {}
        self.load(messages)

    def load(self, messages: list[Message]) -> None:
        user_ids = {m.user_id for m in messages if m.user_id}
        anon_ids = {m.anonymous_id for m in messages if m.anonymous_id}
        self.users = eventstore.profiles_by_user_id(list(user_ids))
        self.anons = eventstore.anonymous_owners(list(anon_ids))

    def needs_identity_work(self, m: Message) -> bool:
        if m.kind in ("identify", "alias"):
            return True
        if m.user_id and m.anonymous_id:
            user = self.users.get(m.user_id)
            anon = self.anons.get(m.anonymous_id)
            return user is None or anon is None or anon[0] != user
        return False

    def remember(self, m: Message, profile_id: int) -> None:
        if m.user_id:
            self.users[m.user_id] = profile_id
        if m.anonymous_id and m.kind != "alias":
            self.anons[m.anonymous_id] = (profile_id, m.user_id)

    def profile_for(self, m: Message) -> int:
        if m.profile_id is not None:
            return m.profile_id
        if m.user_id:
            return self.users[m.user_id]
        return self.anons[m.anonymous_id][0]

    def create_missing(self, messages: list[Message]) -> int:
        """Bulk-create profiles for unseen user ids and unseen anonymous ids."""
        first: dict[str, datetime] = {}
        new_users: dict[str, datetime] = {}
        for m in messages:
            if m.profile_id is not None:
                continue
            if m.user_id:
                if m.user_id not in self.users:
                    new_users[m.user_id] = min(m.timestamp, new_users.get(m.user_id, m.timestamp))
            elif m.anonymous_id not in self.anons:
                first[m.anonymous_id] = min(m.timestamp, first.get(m.anonymous_id, m.timestamp))
        created = 0
        if new_users:
            eventstore.profiles_create(sorted(new_users.items()), now=timezone.now())
            self.users.update(eventstore.profiles_by_user_id(list(new_users)))
            created += len(new_users)
        if first:
            first = dict(sorted(first.items()))
            made = eventstore.profiles_create([(None, at) for at in first.values()], now=timezone.now())
            AnonymousId.objects.bulk_create(
                [AnonymousId(anonymous_id=a, profile_id=pk) for a, pk in zip(first, made, strict=True)],
                ignore_conflicts=True,
            )
            owners = dict(
                AnonymousId.objects.filter(anonymous_id__in=list(first)).values_list(
                    "anonymous_id", "profile_id"
                )
            )
            # Lost a race for an anonymous id: drop the empty profile made for it.
            orphans = [pk for a, pk in zip(first, made, strict=True) if owners[a] != pk]
            if orphans:
                Profile.objects.filter(pk__in=orphans).delete()
            for anon, pk in owners.items():
                self.anons[anon] = (pk, None)
            created += len(made) - len(orphans)
        return created


def _items_resolve(messages: list[Message]) -> int:
    """Set ``item_id`` from item references; unknown ids become placeholders or are dropped."""
    refs = {m.item_ref for m in messages if m.item_ref}
    if not refs:
        return 0
    known = eventstore.items_by_external_id(list(refs))
    created = 0
    missing = refs - known.keys()
    if missing and settings.TRACKING_UNKNOWN_ITEMS == "placeholder":
        titles: dict[str, str] = {}
        for m in messages:
            if m.item_ref in missing and m.item_ref not in titles:
                title = m.properties.get("title") or m.properties.get("name")
                titles[m.item_ref] = title[:500] if isinstance(title, str) and title else m.item_ref
        Item.objects.bulk_create(
            [
                Item(external_id=ref, title=title, active=False, metadata={"placeholder": True})
                for ref, title in sorted(titles.items())
            ],
            ignore_conflicts=True,
        )
        known.update(eventstore.items_by_external_id(list(missing)))
        created = len(missing)
    for m in messages:
        if m.item_ref:
            m.item_id = known.get(m.item_ref)
    return created


def _profiles_seen(messages: list[Message]) -> None:
    """first_seen/last_seen of every touched profile, in one statement."""
    span: dict[int, tuple[datetime, datetime]] = {}
    for m in messages:
        lo_hi = span.get(m.profile_id)
        if lo_hi is None:
            span[m.profile_id] = (m.timestamp, m.timestamp)
        elif m.timestamp < lo_hi[0] or m.timestamp > lo_hi[1]:
            span[m.profile_id] = (min(lo_hi[0], m.timestamp), max(lo_hi[1], m.timestamp))
    eventstore.profiles_seen([(pk, lo, hi) for pk, (lo, hi) in span.items()])


# --- Request bodies --------------------------------------------------------------------------------


class BodyError(Exception):
    def __init__(self, message: str, status: int, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


def body_load(*, raw: bytes | Callable[[], bytes], content_length: int | None) -> tuple[object, int]:
    """The decoded JSON body and its size; BodyError(413) over the limit, (400) when malformed."""
    limit = settings.TRACKING_MAX_REQUEST_BYTES
    if content_length is not None and content_length > limit:
        raise BodyError(f"The request is larger than {limit} bytes.", 413)
    body = raw() if callable(raw) else raw
    if len(body) > limit:
        raise BodyError(f"The request is larger than {limit} bytes.", 413)
    try:
        return json.loads(body), len(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(f"Malformed JSON: {exc}", 400) from None
    except RecursionError:
        raise BodyError("Malformed JSON: nested too deeply.", 400) from None


# --- Bulk import ---------------------------------------------------------------------------------


@dataclass
class ImportReport:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    resumed_from: int = 0


class ImportFailed(Exception):
    """A strict import stopped at a bad row; earlier chunks are committed."""


CSV_COLUMNS = ("user_id", "item_id", "event", "value", "timestamp")


def _csv_parse(
    row: dict, *, index: int, line: int, prefix: str, limits: Limits, received_at: datetime
) -> Message:
    """One CSV row as a track message: the rules of ``message_parse`` without building a
    Segment dict first (the importer's per-row cost)."""
    message_id = _string(row.get("message_id") or None, "messageId") or f"{prefix}:{line}"
    user_id, anonymous_id = _ids({"userId": row.get("user_id") or None,
                                  "anonymousId": row.get("anonymous_id") or None})  # fmt: skip
    if user_id is None and anonymous_id is None:
        raise Rejected("userId or anonymousId is required.", "userId")
    properties: dict = {}
    if row.get("properties"):
        try:
            properties = json.loads(row["properties"])
        except ValueError:
            raise Rejected("properties is not valid JSON.", "properties") from None
        except RecursionError:
            raise Rejected("properties are nested too deeply.", "properties") from None
        if not isinstance(properties, dict):
            raise Rejected("properties must be a JSON object.", "properties")
    if row.get("item_id"):
        properties[limits.item_properties[0]] = row["item_id"]
    if row.get("value"):
        try:
            properties["value"] = float(row["value"])
        except ValueError:
            raise Rejected(f"value {row['value']!r} is not a number.", "value") from None
    name = _string(row.get("event"), "event", required=True)
    timestamp: object = row.get("timestamp") or None
    if isinstance(timestamp, str) and timestamp.replace(".", "", 1).isdigit():
        timestamp = float(timestamp)
    when, flags = event_time(
        timestamp=parse_time(timestamp, "timestamp"), original=None, sent_at=None, received_at=received_at
    )
    if flags:
        properties.update(flags)
    item_ref, value, properties_json = _properties_finish(properties, limits)
    return Message(
        index=index, kind="track", message_id=message_id, user_id=user_id, anonymous_id=anonymous_id,
        name=name, event_type=event_type_for(name, limits.name_map or None), properties=properties,
        traits={}, timestamp=when, item_ref=item_ref, value=value, properties_json=properties_json,
    )  # fmt: skip


def _import_rows(path: Path, fmt: str, prefix: str):
    """(line number, CSV row dict, Segment message or Rejected) for each data line. A file that
    is not UTF-8 or not CSV at all stops the import with a clear error instead of a traceback."""
    try:
        yield from _import_rows_read(path, fmt, prefix)
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            f"The file is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8."
        ) from None
    except csv.Error as exc:
        raise ImportFailed(f"Malformed CSV: {exc}.") from None


def _import_rows_read(path: Path, fmt: str, prefix: str):
    with path.open(newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ImportFailed(f"Missing CSV columns: {', '.join(sorted(missing))}.")
            for row in reader:
                yield reader.line_num, row
        else:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    message = json.loads(text)
                except ValueError as exc:
                    yield number, Rejected(f"Malformed JSON: {exc}")
                    continue
                except RecursionError:
                    yield number, Rejected("Malformed JSON: nested too deeply.")
                    continue
                if isinstance(message, dict):
                    message.setdefault("type", "track")
                    message.setdefault("messageId", f"{prefix}:{number}")
                yield number, message


def events_import(
    *,
    path: str | Path,
    source_name: str = "import",
    fmt: str | None = None,
    strict: bool = False,
    restart: bool = False,
    chunk_size: int = 20_000,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import a CSV (user_id,item_id,event,value,timestamp[,anonymous_id,properties]) or
    NDJSON (Segment messages) file in chunks. Each chunk commits with a checkpoint of its
    last line, so a rerun resumes after it; message ids default to "<file>:<line>", so
    re-importing a line is a duplicate, not a second event.

    Same rules as the API (validation, identity, items, de-duplication, interaction
    strengths), with the bulk write path: events are COPYed on PostgreSQL and each chunk
    commits asynchronously (see ``eventstore.commit_asynchronous``)."""
    path = Path(path).resolve()
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    source, _ = Source.objects.get_or_create(name=source_name)
    key = f"{source.pk}:{path}"
    checkpoint, _ = ImportCheckpoint.objects.get_or_create(key=key[:500])
    if restart:
        checkpoint.line, checkpoint.stored = 0, 0
        checkpoint.save(update_fields=["line", "stored", "updated_at"])
    report = ImportReport(resumed_from=checkpoint.line)
    prefix = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    limits = limits_load()
    chunk: list[tuple[int, object]] = []

    def flush() -> None:
        if not chunk:
            return
        received_at = timezone.now()
        lines = [n for n, _ in chunk]
        bad: list[tuple[int, str]] = []
        parsed: list[Message] = []
        for index, (number, payload) in enumerate(chunk):
            try:
                if isinstance(payload, Rejected):
                    raise payload
                if fmt == "csv":
                    message = _csv_parse(payload, index=index, line=number, prefix=prefix, limits=limits,
                                         received_at=received_at)  # fmt: skip
                else:
                    message = message_parse(payload, index=index, kind=None, received_at=received_at,
                                            limits=limits)  # fmt: skip
            except Rejected as exc:
                bad.append((number, str(exc)))
                continue
            parsed.append(message)
        if strict and bad:
            raise ImportFailed(f"line {bad[0][0]}: {bad[0][1]}")
        result = IngestReport(results=[None] * len(chunk))
        with transaction.atomic():
            eventstore.commit_asynchronous()
            messages_store(source=source, parsed=parsed, received_at=received_at, report=result, bulk=True)
            rejected = [
                (lines[r["index"]], r["error"]) for r in result.results if r and r["status"] == "rejected"
            ]
            if strict and rejected:
                raise ImportFailed(f"line {rejected[0][0]}: {rejected[0][1]}")
            ImportCheckpoint.objects.filter(pk=checkpoint.pk).update(
                line=lines[-1], stored=F("stored") + result.stored, updated_at=timezone.now()
            )
        report.errors.extend(sorted(bad + rejected))
        report.stored += result.stored
        report.duplicates += result.duplicates
        report.rejected += len(bad) + len(rejected)
        report.lines = lines[-1]
        chunk.clear()
        if progress:
            progress(report)

    for number, payload in _import_rows(path, fmt, prefix):
        if number <= checkpoint.line:
            report.skipped += 1
            continue
        chunk.append((number, payload))
        if len(chunk) >= chunk_size:
            flush()
    flush()
    return report
