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
import math
import queue
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from recsite.tokens import key_hash, key_lookup  # one lookup for write keys and API tokens

from . import eventstore, identity, interactions, profiles
from .models import AnonymousId, Event, ImportCheckpoint, Profile, Source, WriteKey

logger = logging.getLogger(__name__)

KEY_PREFIX = "rs_wk_"
# last_used_at is written at most this often per key, to keep the hot path read-only.
FUTURE_TOLERANCE = timedelta(hours=24)
KINDS = {"track", "page", "screen", "identify", "alias"}
CANONICAL_TYPES = frozenset(Event.Type.values) - {"identify", "alias"}
VALUE_PROPERTIES = ("value", "rating", "revenue", "price")
MAX_NAME_LENGTH = 200
# One encoder for every event: json.dumps with non-default separators builds a new one per call.
# NaN and Infinity are refused: they are not JSON, and PostgreSQL's jsonb rejects them.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


# --- Write keys ---------------------------------------------------------------------------


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
    return key_lookup(WriteKey.objects.select_related("source"), key_hash=key_hash(key), now=now)


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
        properties_json = _JSON.encode(properties)
    except RecursionError:
        raise Rejected("properties are nested too deeply.", "properties") from None
    except ValueError:
        raise Rejected("properties must not contain NaN or Infinity.", "properties") from None
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
            eventstore.source_lock(source.pk)
            stored, created = _store(source=source, parsed=unique, received_at=received_at,
                                     results=results, report=report, bulk=bulk)  # fmt: skip
        # After the events' commit (when this is the outermost transaction): the UPDATE's row
        # locks would otherwise queue every other batch of the same profiles until then.
        _profiles_seen(stored, created=created)
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
) -> tuple[list[Message], set[int]]:
    """Store ``parsed`` (unique message ids); returns the messages actually stored and the
    profiles created for them."""
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
        return [], set()
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
    report.profiles_created += _profiles_hold(fresh, ids)
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

    interactions.interactions_add(deltas=_deltas(fresh))
    return fresh, ids.created


def _profiles_hold(messages: list[Message], ids: _ProfileIds) -> int:
    """Make sure every profile the batch writes to exists and stays until commit.

    Events and interactions have no database foreign key to their profile (a check per row at
    commit): profiles found by the look-ups are locked there
    (``FOR KEY SHARE``), those made by this batch are ours, and the few others (from identity
    resolution) are locked here. One deleted or merged away meanwhile makes the batch resolve
    its ids again, as if it had arrived after. Returns the profiles created on the way."""
    created = 0
    for _ in range(3):
        unlocked = {m.profile_id for m in messages} - ids.locked
        if not unlocked:
            return created
        gone = unlocked - eventstore.profiles_lock(list(unlocked))
        ids.locked |= unlocked - gone
        if not gone:
            return created
        logger.info("profiles %s went away during ingestion; resolving again", sorted(gone))
        ids.load(messages)
        for m in messages:
            m.profile_id = None
        created += ids.create_missing(messages)
        for m in messages:
            m.profile_id = ids.profile_for(m)
    raise RuntimeError("Profiles kept disappearing during ingestion; the batch was not stored.")


class _ProfileIds:
    """Profile ids of a batch's user ids and anonymous ids: two queries, then lookups."""

    def __init__(self, messages: list[Message], *, lock: bool = True):
        # lock=False: the importer's look-ahead, outside the writing transaction; the
        # writer locks every profile of the chunk itself (``_profiles_hold``).
        self.lock = lock
        self.users: dict[str, int] = {}
        self.anons: dict[str, tuple[int, str | None]] = {}
        # Profiles that cannot be deleted before this transaction ends: locked by a look-up,
        # or created by it (see _profiles_hold).
        self.locked: set[int] = set()
        self.created: set[int] = set()
        self.load(messages)

    def load(self, messages: list[Message]) -> None:
        user_ids = {m.user_id for m in messages if m.user_id}
        anon_ids = {m.anonymous_id for m in messages if m.anonymous_id}
        self.users = eventstore.profiles_by_user_id(list(user_ids), lock=self.lock)
        self.anons = eventstore.anonymous_owners(list(anon_ids), lock=self.lock)
        if self.lock:
            self.locked.update(self.users.values())
            self.locked.update(pk for pk, _ in self.anons.values())

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
        """Bulk-create profiles for unseen user ids and unseen anonymous ids, already spanning
        their messages' times (so first/last seen need not rewrite them)."""
        first: dict[str, tuple[datetime, datetime]] = {}
        new_users: dict[str, tuple[datetime, datetime]] = {}
        for m in messages:
            if m.profile_id is not None:
                continue
            if m.user_id:
                if m.user_id not in self.users:
                    _widen(new_users, m.user_id, m.timestamp)
            elif m.anonymous_id not in self.anons:
                _widen(first, m.anonymous_id, m.timestamp)
        created = 0
        if new_users:
            made = eventstore.profiles_create(
                [(user, lo, hi) for user, (lo, hi) in sorted(new_users.items())], now=timezone.now()
            )
            self.created.update(made)
            # Ours, or made meanwhile by a concurrent batch (locked by the look-up).
            found = eventstore.profiles_by_user_id(list(new_users), lock=self.lock)
            self.users.update(found)
            if self.lock:
                self.locked.update(found.values())
            created += len(new_users)
        if first:
            first = dict(sorted(first.items()))
            made = eventstore.profiles_create(
                [(None, lo, hi) for lo, hi in first.values()], now=timezone.now()
            )
            AnonymousId.objects.bulk_create(
                [AnonymousId(anonymous_id=a, profile_id=pk) for a, pk in zip(first, made, strict=True)],
                ignore_conflicts=True,
            )
            owners = eventstore.anonymous_owners(list(first), lock=self.lock)
            # Lost a race for an anonymous id: drop the empty profile made for it.
            orphans = [pk for a, pk in zip(first, made, strict=True) if owners.get(a, (None,))[0] != pk]
            if orphans:
                Profile.objects.filter(pk__in=orphans).delete()
            self.anons.update(owners)
            if self.lock:
                self.locked.update(pk for pk, _ in owners.values())
            self.created.update(set(made) - set(orphans))
            created += len(made) - len(orphans)
        return created


def _widen(spans: dict, key: object, at: datetime) -> None:
    lo_hi = spans.get(key)
    if lo_hi is None:
        spans[key] = (at, at)
    elif at < lo_hi[0] or at > lo_hi[1]:
        spans[key] = (min(lo_hi[0], at), max(lo_hi[1], at))


def _items_resolve(messages: list[Message], *, lock: bool = True) -> int:
    """Set ``item_id`` from item references; unknown ids become placeholders or are dropped.
    The items are locked until the transaction ends (no database foreign key guards events
    and interactions against an item deleted meanwhile), unless ``lock`` is false (the
    importer's look-ahead: its writer locks them, ``_import_write``)."""
    titles: dict[str, str] = {}
    for m in messages:
        if m.item_ref and m.item_ref not in titles:
            title = m.properties.get("title") or m.properties.get("name")
            titles[m.item_ref] = title[:500] if isinstance(title, str) and title else m.item_ref
    if not titles:
        return 0
    known, created = items_for_refs(titles, lock=lock)
    for m in messages:
        if m.item_ref:
            m.item_id = known.get(m.item_ref)
    return created


def items_for_refs(titles: Mapping[str, str], *, lock: bool = True) -> tuple[dict[str, int], int]:
    """Item ids by external id for the references ``titles`` (reference -> placeholder title),
    creating placeholders for unknown ones (TRACKING_UNKNOWN_ITEMS); locked as in
    ``_items_resolve``. Returns the ids found or made and how many were made."""
    known = eventstore.items_by_external_id(list(titles), lock=lock)
    missing = titles.keys() - known.keys()
    if not missing or settings.TRACKING_UNKNOWN_ITEMS != "placeholder":
        return known, 0
    Item.objects.bulk_create(
        [
            Item(external_id=ref, title=titles[ref], active=False, metadata={"placeholder": True})
            for ref in sorted(missing)
        ],
        ignore_conflicts=True,
    )
    known.update(eventstore.items_by_external_id(list(missing), lock=lock))
    return known, len(missing)


def _profiles_seen(messages: list[Message], *, created: set[int]) -> None:
    """first_seen/last_seen of every touched profile, in one statement (profiles the batch
    created already span its messages)."""
    eventstore.profiles_seen(_seen_rows(messages, created=created))


def _seen_rows(messages: list[Message], *, created: set[int]) -> list[tuple[int, datetime, datetime]]:
    span: dict[int, tuple[datetime, datetime]] = {}
    for m in messages:
        if m.profile_id not in created:
            _widen(span, m.profile_id, m.timestamp)
    return [(pk, lo, hi) for pk, (lo, hi) in span.items()]


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
    chunks: int = 0
    chunks_set_based: int = 0  # CSV on PostgreSQL: chunks whose rows were all plain


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
            value = float(row["value"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise Rejected(f"value {row['value']!r} is not a number.", "value") from None
        properties["value"] = value
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
            # csv.reader and zip: DictReader's per-row Python cost was a tenth of the import.
            reader = csv.reader(handle)
            header = next(reader, [])
            missing = set(CSV_COLUMNS) - set(header)
            if missing:
                raise ImportFailed(f"Missing CSV columns: {', '.join(sorted(missing))}.")
            for row in reader:
                if row:
                    # A short row lacks the last columns (read as empty), as with DictReader.
                    yield reader.line_num, dict(zip(header, row, strict=False))
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


@dataclass
class _ParsedChunk:
    lines: list[int]
    parsed: list[Message]
    bad: list[tuple[int, str]]
    skipped: int
    received_at: datetime


def rows_parse(
    chunk: list[tuple[int, object]], *, fmt: str, prefix: str, limits: Limits, skipped: int = 0
) -> _ParsedChunk:
    """(line number, CSV row dict or Segment message or Rejected) pairs as a parsed chunk:
    valid messages, and (line, reason) for the rest. No database access."""
    received_at = timezone.now()
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
    return _ParsedChunk([n for n, _ in chunk], parsed, bad, skipped, received_at)


def _import_chunks(
    *, path: Path, fmt: str, prefix: str, after_line: int, chunk_size: int, limits: Limits
) -> Iterator[_ParsedChunk]:
    """The file's lines after ``after_line``, parsed, in chunks. No database access: this
    runs in the parser thread."""
    skipped = 0
    chunk: list[tuple[int, object]] = []
    for number, payload in _import_rows(path, fmt, prefix):
        if number <= after_line:
            skipped += 1
            continue
        chunk.append((number, payload))
        if len(chunk) >= chunk_size:
            yield rows_parse(chunk, fmt=fmt, prefix=prefix, limits=limits, skipped=skipped)
            chunk, skipped = [], 0
    if chunk or skipped:
        yield rows_parse(chunk, fmt=fmt, prefix=prefix, limits=limits, skipped=skipped)


def _read_ahead(items: Iterator[_ParsedChunk]) -> Iterator[_ParsedChunk]:
    """Produce ``items`` in a thread, one ahead of the consumer: the next chunk is read and
    parsed while the database writes this one (psycopg releases the GIL while it waits).
    The producer's exceptions are raised here, in order."""
    slot: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                slot.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="import-parser", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slot.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


@dataclass
class _Prepared:
    """A chunk resolved by the look-ahead (``_import_prepare``), ready for the writer."""

    chunk: _ParsedChunk
    result: IngestReport
    fresh: list[Message]
    ids: _ProfileIds
    rows: list[tuple]
    deltas: dict
    seen: list[tuple]


def _event_rows(source: Source, messages: list[Message], received_at: datetime) -> list[tuple]:
    return [
        (source.pk, m.message_id, m.name, m.event_type, m.profile_id, m.item_id, m.value,
         m.properties_json, m.timestamp, received_at)
        for m in messages
    ]  # fmt: skip


def _deltas(messages: list[Message]) -> dict:
    weights = interactions.interaction_weights()
    return interactions.deltas_collect(
        (
            m.profile_id,
            m.item_id,
            interactions.event_weight(
                event_type=m.event_type, value=m.value, properties=m.properties, weights=weights
            ),
            m.timestamp,
        )
        for m in messages
        if m.item_id is not None and m.event_type in weights
    )


def _import_prepare(source: Source, chunk: _ParsedChunk) -> _Prepared | None:
    """Resolve a chunk ahead of the writer, on this thread's connection in autocommit: its
    profiles and placeholder items are created and committed now (so the next chunk's
    look-ups see them), the event rows and interaction deltas are built. None when a message
    needs identity work (identify, alias, a user id with an anonymous id): such a chunk is
    stored whole by the writer, in order (``messages_store``).

    Nothing is locked here: the writer locks every profile of the chunk in its transaction
    and resolves again any that was deleted or merged away meanwhile (``_profiles_hold``)."""
    if any(m.kind in ("identify", "alias") or (m.user_id and m.anonymous_id) for m in chunk.parsed):
        return None
    result = IngestReport(results=[None] * len(chunk.lines))
    seen: set[str] = set()
    fresh: list[Message] = []
    for m in chunk.parsed:
        if m.message_id in seen:
            result.results[m.index] = {"index": m.index, "messageId": m.message_id, "status": "duplicate"}
            result.duplicates += 1
            continue
        seen.add(m.message_id)
        fresh.append(m)
    ids = _ProfileIds(fresh, lock=False)
    result.profiles_created += ids.create_missing(fresh)
    for m in fresh:
        m.profile_id = ids.profile_for(m)
    result.items_created += _items_resolve(fresh, lock=False)
    rows = _event_rows(source, fresh, chunk.received_at)
    return _Prepared(chunk, result, fresh, ids, rows, _deltas(fresh), _seen_rows(fresh, created=ids.created))


def _import_write(source: Source, prepared: _Prepared) -> None:
    """The writer's part of a prepared chunk, inside its transaction: lock the profiles and
    items, COPY the events, add the interaction strengths, widen first/last seen."""
    fresh, ids, result = prepared.fresh, prepared.ids, prepared.result
    eventstore.source_lock(source.pk)
    ids.lock = True
    resolved = [(m.profile_id, m.item_id) for m in fresh]
    result.profiles_created += _profiles_hold(fresh, ids)
    item_ids = {m.item_id for m in fresh if m.item_id is not None}
    if eventstore.items_lock(list(item_ids)) != item_ids:
        # An item was deleted after the look-ahead: resolve the references again (locked).
        result.items_created += _items_resolve(fresh)
    # Built by the look-ahead; again only if the chunk had to be resolved again.
    rows, deltas, seen = prepared.rows, prepared.deltas, prepared.seen
    if [(m.profile_id, m.item_id) for m in fresh] != resolved:
        rows, deltas = _event_rows(source, fresh, prepared.chunk.received_at), _deltas(fresh)
        seen = _seen_rows(fresh, created=ids.created)
    inserted = eventstore.events_copy(rows)
    if inserted is None:
        inserted = eventstore.events_insert(rows)
    if len(inserted) < len(fresh):
        # Already imported (a rerun with --restart): duplicates, not counted again.
        lost = [m for m in fresh if m.message_id not in inserted]
        for m in lost:
            result.results[m.index] = {"index": m.index, "messageId": m.message_id, "status": "duplicate"}
        result.duplicates += len(lost)
        fresh = [m for m in fresh if m.message_id in inserted]
        deltas, seen = _deltas(fresh), _seen_rows(fresh, created=ids.created)
    for m in fresh:
        result.results[m.index] = {"index": m.index, "messageId": m.message_id, "status": "stored"}
    result.stored += len(fresh)
    interactions.interactions_add(deltas=deltas)
    eventstore.profiles_seen(seen)
    result.messages = fresh


class _ImportWriter:
    """The import's database writer: a thread with its own connection that stores chunks in
    order, one transaction each (events, strengths, checkpoint), while the caller resolves
    the next chunk. A bounded queue keeps at most ``depth`` chunks waiting. The first error
    stops the writer; the chunks committed before it stay, and ``collect``/``close`` raise it.

    ``threaded=False`` (SQLite, which allows one writer; or a caller inside a transaction,
    whose uncommitted rows another connection could not see): every chunk is stored on the
    caller's connection when it is submitted."""

    def __init__(self, *, source: Source, checkpoint: ImportCheckpoint, strict: bool, threaded: bool,
                 depth: int = 1):  # fmt: skip
        self.source, self.checkpoint, self.strict, self.threaded = source, checkpoint, strict, threaded
        self.tasks: queue.Queue = queue.Queue(maxsize=depth)
        self.done: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.failed = threading.Event()
        self.idle = threading.Condition()
        self.pending = 0
        self.thread: threading.Thread | None = None
        if threaded:
            self.thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
            self.thread.start()

    def _store(self, task: _Prepared | _ParsedChunk) -> None:
        chunk = task.chunk if isinstance(task, _Prepared) else task
        lines = chunk.lines
        with transaction.atomic():
            eventstore.commit_asynchronous()
            if isinstance(task, _Prepared):
                result = task.result
                _import_write(self.source, task)
            else:
                result = IngestReport(results=[None] * len(lines))
                messages_store(source=self.source, parsed=chunk.parsed, received_at=chunk.received_at,
                               report=result, bulk=True)  # fmt: skip
            rejected = [
                (lines[r["index"]], r["error"]) for r in result.results if r and r["status"] == "rejected"
            ]
            if self.strict and rejected:
                raise ImportFailed(f"line {rejected[0][0]}: {rejected[0][1]}")
            # In the chunk's transaction: the checkpoint advances only if the chunk commits.
            ImportCheckpoint.objects.filter(pk=self.checkpoint.pk).update(
                line=lines[-1], stored=F("stored") + result.stored, updated_at=timezone.now()
            )
        self.done.put((chunk, result, rejected))

    def _run(self) -> None:
        from django.db import connection

        try:
            while True:
                task = self.tasks.get()
                if task is None:
                    return
                try:
                    if not self.failed.is_set():
                        self._store(task)
                except BaseException as exc:  # raised by the caller, in order
                    self.error = exc
                    self.failed.set()
                finally:
                    with self.idle:
                        self.pending -= 1
                        self.idle.notify_all()
        finally:
            connection.close()  # the thread's own connection

    def submit(self, task: _Prepared | _ParsedChunk) -> None:
        if not self.threaded:
            self._store(task)
            return
        with self.idle:
            self.pending += 1
        while True:
            if self.failed.is_set():
                with self.idle:
                    self.pending -= 1
                return
            try:
                self.tasks.put(task, timeout=0.1)
                return
            except queue.Full:
                continue

    def wait_idle(self) -> None:
        """Until every submitted chunk is committed (or the writer failed)."""
        with self.idle:
            while self.pending and not self.failed.is_set():
                self.idle.wait(0.1)

    def collect(self) -> Iterator[tuple[_ParsedChunk, IngestReport, list]]:
        """The chunks committed since the last call, in order; then the writer's error."""
        while True:
            try:
                yield self.done.get_nowait()
            except queue.Empty:
                break
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def close(self) -> None:
        """Let the submitted chunks finish (a failed writer skips them), stop the thread."""
        if self.thread is not None:
            self.tasks.put(None)
            self.thread.join()
            self.thread = None


def events_import(
    *,
    path: str | Path,
    source_name: str = "import",
    fmt: str | None = None,
    strict: bool = False,
    restart: bool = False,
    chunk_size: int = 20_000,
    progress: Callable[[ImportReport], None] | None = None,
    writers: int | None = None,
) -> ImportReport:
    """Import a CSV (user_id,item_id,event,value,timestamp[,anonymous_id,properties]) or
    NDJSON (Segment messages) file in chunks. Each chunk commits with a checkpoint of its
    last line, so a rerun resumes after it; message ids default to "<file>:<line>", so
    re-importing a line is a duplicate, not a second event.

    Same rules as the API (validation, identity, items, de-duplication, interaction
    strengths). CSV on PostgreSQL goes set-based, on ``writers`` connections in parallel
    (``csvimport``). Otherwise the bulk write path, in three threads on PostgreSQL: one reads and
    parses, this one resolves profiles and items and builds the rows (``_import_prepare``),
    and a writer with its own connection stores the chunk before (``_ImportWriter``); events
    are COPYed and each chunk commits asynchronously (see ``eventstore.commit_asynchronous``)."""
    from django.db import connection

    path = Path(path).resolve()
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    if not path.is_file():
        raise FileNotFoundError(path)
    source, _ = Source.objects.get_or_create(name=source_name)
    key = f"{source.pk}:{path}"
    checkpoint, _ = ImportCheckpoint.objects.get_or_create(key=key[:500])
    if restart:
        checkpoint.line, checkpoint.stored = 0, 0
        checkpoint.save(update_fields=["line", "stored", "updated_at"])
    if restart:
        checkpoint.pending = []
        checkpoint.save(update_fields=["pending", "updated_at"])
    report = ImportReport(resumed_from=checkpoint.line)
    prefix = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if fmt == "csv" and connection.vendor == "postgresql":
        from . import csvimport

        def account_csv(result: csvimport.ChunkResult) -> None:
            report.errors.extend(result.errors)
            report.stored += result.stored
            report.duplicates += result.duplicates
            report.rejected += len(result.errors)
            report.lines = result.chunk.last
            report.chunks += 1
            report.chunks_set_based += result.fast
            if progress:
                progress(report)

        csvimport.import_csv(
            path=path, source=source, checkpoint=checkpoint, prefix=prefix, strict=strict,
            chunk_size=chunk_size, writers=writers or settings.IMPORT_WRITERS, report=report,
            account=account_csv,
        )  # fmt: skip
        return report
    chunks = _import_chunks(
        path=path, fmt=fmt, prefix=prefix, after_line=checkpoint.line, chunk_size=chunk_size,
        limits=limits_load(),
    )  # fmt: skip
    threaded = connection.vendor == "postgresql" and not connection.in_atomic_block
    writer = _ImportWriter(source=source, checkpoint=checkpoint, strict=strict, threaded=threaded)

    def account() -> None:
        for chunk, result, rejected in writer.collect():
            report.errors.extend(sorted(chunk.bad + rejected))
            report.stored += result.stored
            report.duplicates += result.duplicates
            report.rejected += len(chunk.bad) + len(rejected)
            report.lines = chunk.lines[-1]
            if progress:
                progress(report)

    try:
        for chunk in _read_ahead(chunks):
            report.skipped += chunk.skipped
            account()
            if not chunk.lines:
                continue
            if strict and chunk.bad:
                writer.close()
                account()
                raise ImportFailed(f"line {chunk.bad[0][0]}: {chunk.bad[0][1]}")
            prepared = _import_prepare(source, chunk) if threaded else None
            if prepared is not None:
                writer.submit(prepared)
            else:
                # Identity work reads what the chunks before wrote: after their commit.
                writer.wait_idle()
                writer.submit(chunk)
                writer.wait_idle()
        writer.close()
        account()
    finally:
        writer.close()
    return report
