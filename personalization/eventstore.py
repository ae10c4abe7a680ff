"""The statements of the ingestion hot path, written once per backend.

Why not the ORM here: for a 500-event batch, ``bulk_create`` spends most of its time
preparing values field by field, and on PostgreSQL psycopg's client-side binding re-parses
and quotes every long ``VALUES``/``IN`` list in Python. So on PostgreSQL each statement is
short and takes whole arrays as parameters (``= ANY(%s)``, ``unnest(...)``) through a
server-side-binding cursor (binary arrays); on SQLite, multi-row ``VALUES`` lists of up to
2,000 rows. The importer writes events with ``COPY`` on PostgreSQL (``events_copy``).

Inserts say which rows they stored (``RETURNING``): that, not a read before the write, is
what decides "duplicate", so concurrent replays cannot both count.

Every statement is recorded like Django's own, so ``assertNumQueries`` sees them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import connection

from .models import AnonymousId, Event, Interaction, Profile, Source

EVENT = Event._meta.db_table
PROFILE = Profile._meta.db_table
ANONYMOUS = AnonymousId._meta.db_table
INTERACTION = Interaction._meta.db_table
ITEM = "catalog_item"
SOURCE = Source._meta.db_table
EVENT_COLUMNS = (
    "source_id, message_id, name, type, profile_id, item_id, value, properties, timestamp, received_at"
)
# Properties travel as the JSON text already made (text COPY: the server parses it as jsonb).
COPY_TYPES = ("int8", "text", "text", "text", "int8", "int8", "float8", "text", "timestamptz", "timestamptz")
CHUNK = 2000  # rows per SQLite statement with a VALUES list (SQLite allows 32,766 parameters)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _run(sql: str, params: Sequence = (), *, many: bool = False, fetch: bool = False) -> list:
    """Execute on the right cursor and record the statement in Django's query log."""
    start = time.monotonic()
    if _postgres():
        import psycopg

        connection.ensure_connection()
        # Server-side binding: parameters travel separately; arrays are dumped in C.
        with psycopg.Cursor(connection.connection) as cursor:
            # Binary parameters: no text quoting or escaping of array elements.
            cursor.execute(sql.replace("%s", "%b"), params)
            rows = cursor.fetchall() if fetch else []
    else:
        with connection.cursor() as cursor:
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            rows = cursor.fetchall() if fetch else []
    if connection.queries_logged and _postgres():
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - start:.3f}"})
    return rows


def _in(column: str, values: list) -> tuple[str, list]:
    if _postgres():
        return f"{column} = ANY(%s)", [values]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", values


def _sqlite_time(value: datetime) -> str:
    """Django's SQLite storage format: naive UTC, ``str()`` of the datetime."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return str(value.replace(tzinfo=None))


def existing_message_ids(source_id: int, message_ids: list[str]) -> set[str]:
    if not message_ids:
        return set()
    clause, params = _in("message_id", message_ids)
    rows = _run(
        f"SELECT message_id FROM {EVENT} WHERE source_id = %s AND {clause}", [source_id, *params], fetch=True
    )
    return {r[0] for r in rows}


def _key_share(of: str = "") -> str:
    """Row locks that stand in for the foreign-key check of event and interaction rows
    (PostgreSQL): a profile locked here cannot be deleted or merged away until this
    transaction ends, and one deleted meanwhile is not returned. SQLite runs one writer at a
    time, so it needs none."""
    if not _postgres():
        return ""
    return f" FOR KEY SHARE OF {of}" if of else " FOR KEY SHARE"


def profiles_by_user_id(user_ids: list[str], *, lock: bool = True) -> dict[str, int]:
    """Profile ids by user id, locked against deletion and merges (``_key_share``) unless
    ``lock`` is false (the importer's look-ahead, which locks in the writing transaction)."""
    if not user_ids:
        return {}
    clause, params = _in("external_id", user_ids)
    sql = f"SELECT external_id, id FROM {PROFILE} WHERE {clause}{_key_share() if lock else ''}"
    return dict(_run(sql, params, fetch=True))


def anonymous_owners(anonymous_ids: list[str], *, lock: bool = True) -> dict[str, tuple[int, str | None]]:
    """(profile id, its user id) by anonymous id; the profiles are locked (``_key_share``)
    unless ``lock`` is false."""
    if not anonymous_ids:
        return {}
    clause, params = _in("a.anonymous_id", anonymous_ids)
    rows = _run(
        f"SELECT a.anonymous_id, a.profile_id, p.external_id FROM {ANONYMOUS} a "
        f"JOIN {PROFILE} p ON p.id = a.profile_id WHERE {clause}{_key_share('p') if lock else ''}",
        params,
        fetch=True,
    )
    return {anon: (pk, ext) for anon, pk, ext in rows}


class SourceGone(Exception):
    """The events' source was deleted while they were being stored."""


def source_lock(source_id: int) -> None:
    """Lock the source like the profiles (events have no database constraint to it either):
    deleting it waits for this transaction (and then finds the events, which protect it).
    Raises SourceGone when it was deleted first."""
    if not _run(f"SELECT id FROM {SOURCE} WHERE id = %s{_key_share()}", [source_id], fetch=True):
        raise SourceGone(f"Source {source_id} was deleted; the events were not stored.")


def profiles_lock(profile_ids: list[int]) -> set[int]:
    """Lock these profiles like the look-ups above do; returns those that still exist."""
    if not profile_ids:
        return set()
    clause, params = _in("id", sorted(profile_ids))
    return {r[0] for r in _run(f"SELECT id FROM {PROFILE} WHERE {clause}{_key_share()}", params, fetch=True)}


def items_by_external_id(external_ids: list[str], *, lock: bool = True) -> dict[str, int]:
    """Item ids by external id, locked against deletion like profiles (``_key_share``:
    events and interactions have no database foreign key to their item either) unless
    ``lock`` is false."""
    if not external_ids:
        return {}
    clause, params = _in("external_id", external_ids)
    sql = f"SELECT external_id, id FROM {ITEM} WHERE {clause}{_key_share() if lock else ''}"
    return dict(_run(sql, params, fetch=True))


def items_lock(item_ids: list[int]) -> set[int]:
    """Lock these items like ``items_by_external_id`` does; returns those that still exist."""
    if not item_ids:
        return set()
    clause, params = _in("id", sorted(item_ids))
    return {r[0] for r in _run(f"SELECT id FROM {ITEM} WHERE {clause}{_key_share()}", params, fetch=True)}


def events_insert(rows: list[tuple]) -> set[str]:
    """Insert event rows (EVENT_COLUMNS order, properties as JSON text) and return the message
    ids actually inserted: one that already exists for the source is skipped, including one
    committed by a concurrent request after our duplicate check (the caller must then treat
    it as a duplicate, or a replay would count twice in the interaction strengths).

    Rows are inserted in message-id order, so two batches sharing message ids take their
    unique-index locks in one order and cannot deadlock.
    """
    if not rows:
        return set()
    rows = sorted(rows, key=lambda r: r[1])
    if _postgres():
        columns = list(zip(*rows, strict=True))
        returned = _run(
            f"INSERT INTO {EVENT} ({EVENT_COLUMNS}) "
            "SELECT s, m, n, t, p, i, v, j::jsonb, ts, r FROM unnest("
            "%s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], "
            "%s::float8[], %s::text[], %s::timestamptz[], %s::timestamptz[]) "
            "AS x(s, m, n, t, p, i, v, j, ts, r) "
            "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id",
            [list(c) for c in columns],
            fetch=True,
        )
        return {r[0] for r in returned}
    inserted: set[str] = set()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params: list = []
        for r in chunk:
            params += [*r[:8], _sqlite_time(r[8]), _sqlite_time(r[9])]
        returned = _run(
            f"INSERT INTO {EVENT} ({EVENT_COLUMNS}) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            + " ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id",
            params,
            fetch=True,
        )
        inserted.update(r[0] for r in returned)
    return inserted


def events_copy(rows: list[tuple]) -> set[str] | None:
    """Bulk path of the importer on PostgreSQL: ``COPY`` the rows straight into the table
    inside a savepoint. Returns the inserted message ids, or None when a message id already
    existed (a concurrent writer got there after the duplicate check): the savepoint is then
    rolled back and the caller falls back to ``events_insert``, which skips such rows."""
    if not rows:
        return set()
    if not _postgres():
        return events_insert(rows)
    import psycopg
    from django.db import transaction

    rows = sorted(rows, key=lambda r: r[1])
    start = time.monotonic()
    try:
        sql = f"COPY {EVENT} ({EVENT_COLUMNS}) FROM STDIN"
        with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor, cursor.copy(sql) as copy:
            # Declared types: psycopg then skips choosing a dumper for every value.
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        return None
    finally:
        if connection.queries_logged:
            connection.queries_log.append({"sql": f"COPY {EVENT}", "time": f"{time.monotonic() - start:.3f}"})
    return {r[1] for r in rows}


def profiles_create(rows: list[tuple[str | None, datetime, datetime]], *, now: datetime) -> list[int]:
    """Create profiles from (external id or None, first seen, last seen) rows, skipping
    external ids that exist; returns the new ids in row order (anonymous profiles need them
    to link their anonymous ids). The ORM's bulk_create spent ~0.3 ms per row preparing
    values."""
    if not rows:
        return []
    created: list[int] = []
    if _postgres():
        ext, first, last = (list(c) for c in zip(*rows, strict=True))
        returned = _run(
            f"INSERT INTO {PROFILE} (external_id, traits, first_seen, last_seen, created_at) "
            "SELECT e, '{}'::jsonb, f, l, %s FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) "
            "WITH ORDINALITY AS x(e, f, l, n) ORDER BY n "
            "ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING id",
            [now, ext, first, last],
            fetch=True,
        )
        return [r[0] for r in returned]
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params: list = []
        for external_id, first, last in chunk:
            params += [external_id, _sqlite_time(first), _sqlite_time(last), _sqlite_time(now)]
        returned = _run(
            f"INSERT INTO {PROFILE} (external_id, traits, first_seen, last_seen, created_at) VALUES "
            + ", ".join(["(%s, '{}', %s, %s, %s)"] * len(chunk))
            + " ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING id",
            params,
            fetch=True,
        )
        created += [r[0] for r in returned]
    return created


def commit_asynchronous() -> None:
    """Let this transaction's COMMIT return before its WAL is flushed (PostgreSQL only).

    For the importer only: a crash can lose the last chunks, but their checkpoint rolls back
    with them, so a rerun imports them again. The API keeps synchronous commits: its answer
    promises the events are stored."""
    if _postgres():
        _run("SET LOCAL synchronous_commit TO OFF")


def interactions_add(rows: list[tuple[int, int, float, int, datetime]]) -> None:
    """Add (profile_id, item_id, strength, count, last_at) to the table (additive upsert).
    Rows must be unique per pair and sorted, so concurrent batches lock in one order."""
    if not rows:
        return
    update = (
        f"ON CONFLICT (profile_id, item_id) DO UPDATE SET "
        f"strength = {INTERACTION}.strength + excluded.strength, "
        f"count = {INTERACTION}.count + excluded.count, "
    )
    if _postgres():
        columns = list(zip(*rows, strict=True))
        _run(
            f"INSERT INTO {INTERACTION} (profile_id, item_id, strength, count, last_at) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::int[], %s::timestamptz[]) "
            f"{update}last_at = GREATEST({INTERACTION}.last_at, excluded.last_at)",
            [list(c) for c in columns],
        )
        return
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params: list = []
        for profile_id, item_id, strength, count, last_at in chunk:
            params += [profile_id, item_id, strength, count, _sqlite_time(last_at)]
        _run(
            f"INSERT INTO {INTERACTION} (profile_id, item_id, strength, count, last_at) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            + f" {update}last_at = MAX({INTERACTION}.last_at, excluded.last_at)",
            params,
        )


# Only rows whose span grows are rewritten (replays and backfills leave profiles alone).
WIDENS = (
    f"({PROFILE}.first_seen IS NULL OR {PROFILE}.last_seen IS NULL "
    f"OR {PROFILE}.first_seen > s.lo OR {PROFILE}.last_seen < s.hi)"
)


def profiles_seen(rows: list[tuple[int, datetime, datetime]]) -> None:
    """Widen first_seen/last_seen of (profile_id, earliest, latest) rows; monotonic in SQL so
    concurrent batches cannot move them backwards. Sorted: one lock order for everyone."""
    if not rows:
        return
    rows = sorted(rows)
    if _postgres():
        columns = list(zip(*rows, strict=True))
        _run(
            f"UPDATE {PROFILE} SET first_seen = LEAST(COALESCE({PROFILE}.first_seen, s.lo), s.lo), "
            f"last_seen = GREATEST(COALESCE({PROFILE}.last_seen, s.hi), s.hi) "
            "FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS s(id, lo, hi) "
            f"WHERE {PROFILE}.id = s.id AND {WIDENS}",
            [list(c) for c in columns],
        )
        return
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params: list = []
        for pk, lo, hi in chunk:
            params += [pk, _sqlite_time(lo), _sqlite_time(hi)]
        _run(
            "WITH s (id, lo, hi) AS (VALUES " + ", ".join(["(%s, %s, %s)"] * len(chunk)) + ") "
            f"UPDATE {PROFILE} SET first_seen = MIN(COALESCE({PROFILE}.first_seen, s.lo), s.lo), "
            f"last_seen = MAX(COALESCE({PROFILE}.last_seen, s.hi), s.hi) "
            f"FROM s WHERE {PROFILE}.id = s.id AND {WIDENS}",
            params,
        )
