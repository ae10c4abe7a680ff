"""Set-based CSV import on PostgreSQL: ``import_events`` for CSV files.

The row-by-row importer (``tracking.events_import``'s pipeline) spends about 40 us of Python
per event, and Python's global lock keeps that on one core: near 25,000 events/s on two
cores whatever the database does. Here the rows go to the server as they are and the
server does the per-row work, in a few statements per chunk, on several connections at once:

1. The main thread cuts the file into chunks of whole lines (no parsing: it only follows
   quotes, so that a quoted line break never splits a record) and hands them to writers,
   each a thread with its own connection.
2. A writer COPYs the chunk's bytes into a temporary table (one text column per CSV column,
   plus a row number that gives each row its line number) and checks in one pass that every
   row is *plain*: a user id and no anonymous id or properties, an event name, an item id,
   a value that is a plain decimal, a timestamp that is empty, Unix seconds or a plain
   ISO 8601 date-time and not in the future. For such rows the API's rules reduce to a few
   SQL expressions; the checks that need Python's own definitions (placeholder user ids,
   the event vocabulary) run once per distinct user id and event name.
3. Missing profiles (spanning their rows' times) and placeholder items are created in a
   short transaction of their own, so that the other writers never wait for this chunk to
   see them. Then, in the chunk's transaction: the source and items are locked
   (``FOR KEY SHARE``, as in ``tracking._store``), and one statement locks the profiles,
   inserts the events (plainly, or with ``ON CONFLICT DO NOTHING`` when a message id is
   stored already: a duplicate), adds the interaction strengths of the inserted ones and
   notes each profile's time span. The checkpoint advances in the same transaction.
4. After the commit, first/last seen of the chunk's profiles are widened.

A chunk with any other row (a bad one, an anonymous id, properties, a date in another
format, a quoted line break, a quote inside an unquoted field or a line "\\." -- which
PostgreSQL's CSV reads differently from Python's csv module -- or a message id repeated in
the chunk) is not half-handled: the attempt is rolled back and the chunk
goes through the row-by-row path (``tracking.rows_parse`` and ``messages_store``), after
every earlier chunk has committed, so its rejections, identity work and line numbers are
exactly the API's. tests/personalization/test_csv_import.py compares both paths.

Writers commit chunks out of order: the checkpoint keeps the committed line ranges beyond
its ``line`` (``ImportCheckpoint.pending``), so a rerun skips exactly what is stored. A file
with a ``message_id`` column, and ``--strict``, use one writer (file order matters there).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import eventstore, identity, interactions, tracking
from .eventstore import EVENT, INTERACTION, PROFILE, WIDENS, _run
from .models import ImportCheckpoint, Source

logger = logging.getLogger(__name__)

OPTIONAL_COLUMNS = ("anonymous_id", "properties", "message_id")
STAGE = "recsite_import_stage"
SEEN = "recsite_import_seen"
# Plain values: what both Python's and PostgreSQL's parsers read the same way.
ISO = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
OFFSET = r"[+-][0-9]{2}:[0-9]{2}$"


def _decimal(column: str, *, whole: int, fraction: int, sign: bool = False) -> str:
    """SQL: ``column`` is digits with an optional fraction, at most ``whole`` and
    ``fraction`` digits (PostgreSQL's regular expressions are slow with bounded repeats)."""
    pattern = r"^-?[0-9]+(\.[0-9]+)?$" if sign else r"^[0-9]+(\.[0-9]+)?$"
    digits = f"ltrim({column}, '-')" if sign else column
    return (
        f"({column} ~ '{pattern}' AND length(split_part({digits}, '.', 1)) <= {whole} "
        f"AND length(split_part({column}, '.', 2)) <= {fraction})"
    )


RETRIES = 3
USERS_REMEMBERED = 1_000_000  # valid user ids kept per import (a set of short strings: ~100 MB)
# A line whose fields are each unquoted without quotes, or wholly quoted: read alike by
# PostgreSQL's COPY and Python's csv module.
_FIELDS = re.compile(rb'(?:[^",\r\n]*|"(?:[^"]|"")*")(?:,(?:[^",\r\n]*|"(?:[^"]|"")*"))*\r?\n?')


@dataclass
class RawChunk:
    seq: int
    first: int  # file line number of the chunk's first line
    last: int
    data: bytes
    plain_lines: bool  # one record per line: no quoted line breaks
    skipped: int = 0  # lines skipped just before it (committed by an earlier run)


@dataclass
class ChunkResult:
    chunk: RawChunk
    stored: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    fast: bool = True


class _ProfilesGone(Exception):
    """A profile of the chunk was deleted or merged away since it was made or looked up."""


class _NotPlain(Exception):
    """The chunk has a row the set-based path does not take: roll back, go row by row."""


def header_read(handle) -> list[str]:
    """The CSV header (first line); ImportFailed when a required column is missing."""
    first = handle.readline()
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise tracking.ImportFailed(_not_utf8(exc)) from None
    try:
        header = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise tracking.ImportFailed(f"Malformed CSV: {exc}.") from None
    missing = set(tracking.CSV_COLUMNS) - set(header)
    if missing:
        raise tracking.ImportFailed(f"Missing CSV columns: {', '.join(sorted(missing))}.")
    return header


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"The file is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8."


def raw_chunks(handle, *, chunk_size: int, line: int, pending: list) -> Iterator[RawChunk]:
    """The data lines (the header read) in chunks of about ``chunk_size`` whole records,
    skipping lines up to ``line`` and in the ``pending`` ranges (committed by an earlier run;
    such ranges start and end with records). Lines are taken in blocks (``islice``): only a
    block holding a quote or a backslash is looked at line by line."""
    ranges = sorted((a, b) for a, b in pending if b > line)
    number, seq, skipped = 1, 0, 0  # number: the last line read (1, the header)
    if line > 1:
        skipped = sum(1 for _ in itertools.islice(handle, line - 1))
        number += skipped
    while True:
        while ranges and ranges[0][0] <= number + 1:  # a committed range starts here: skip it
            _, last = ranges.pop(0)
            count = sum(1 for _ in itertools.islice(handle, max(last - number, 0)))
            number, skipped = number + count, skipped + count
        limit = chunk_size if not ranges else min(chunk_size, ranges[0][0] - number - 1)
        block = list(itertools.islice(handle, limit))
        if not block:
            break
        first, number = number + 1, number + len(block)
        plain = True
        data = b"".join(block)
        if b'"' in data or b"\\" in data:
            plain, extra = _lines_check(block, handle)
            if extra:
                number += len(extra)
                data += b"".join(extra)
        yield RawChunk(seq, first, number, data, plain, skipped)
        seq, skipped = seq + 1, 0
    if skipped:
        yield RawChunk(seq, number, number, b"", True, skipped)


def _lines_check(block: list[bytes], handle) -> tuple[bool, list[bytes]]:
    """Whether each line of ``block`` is one record read alike by PostgreSQL's COPY and
    Python's csv module; and the lines read on to finish a quoted field left open."""
    plain, in_quotes = True, False
    extra: list[bytes] = []
    for text in block:
        in_quotes, plain = _line_check(text, in_quotes, plain)
    while in_quotes:
        text = handle.readline()
        if not text:
            break
        extra.append(text)
        in_quotes, plain = _line_check(text, in_quotes, plain)
    return plain, extra


def _line_check(text: bytes, in_quotes: bool, plain: bool) -> tuple[bool, bool]:
    if b'"' in text:
        if text.count(b'"') % 2:  # a quoted field goes on to the next line
            return not in_quotes, False
        if not _FIELDS.fullmatch(text):
            # PostgreSQL's CSV reads a quote inside an unquoted field as the start of a quoted
            # part (Python's csv does not).
            return in_quotes, False
    elif text.rstrip(b"\r\n") == b"\\.":  # a line "\." ends COPY's data
        return in_quotes, False
    return in_quotes, plain


def checkpoint_merge(line: int, pending: list, first: int, last: int) -> tuple[int, list]:
    """Add the committed range [first, last]: ``line`` advances over every range that now
    follows it without a gap (line 1, the header, counts as done)."""
    ranges = sorted([*([a, b] for a, b in pending), [first, last]])
    done = max(line, 1)
    rest = []
    for a, b in ranges:
        if a <= done + 1:
            done = max(done, b)
        else:
            rest.append([a, b])
    return (done if done > 1 else line), rest


class CsvImport:
    """One import of a CSV file on PostgreSQL (see the module's docstring)."""

    def __init__(self, *, source: Source, checkpoint: ImportCheckpoint, header: list[str], prefix: str,
                 strict: bool):  # fmt: skip
        self.source, self.checkpoint, self.header = source, checkpoint, header
        self.prefix, self.strict = prefix, strict
        self.limits = tracking.limits_load()
        self.weights = interactions.interaction_weights()
        # dict(zip(header, row)): the last of repeated column names wins, as in the row path.
        index = {name: i for i, name in enumerate(header)}
        self.columns = [f"c{i}" for i in range(len(header))]
        col = {name: f"s.c{i}" for name, i in index.items()}
        self.set_based = bool(self.limits.item_properties) and settings.INTERACTION_HALF_LIFE_DAYS <= 0
        self.sql = self._statements(col)
        self.users_valid: set[str] = set()  # user ids that passed identity.id_clean unchanged
        # Chunks finished (committed or failed), for the row-by-row path's ordering.
        self.finished: set[int] = set()
        self.lowest_open = 0
        self.failed = False
        self.state = threading.Condition()

    # --- SQL ------------------------------------------------------------------------------

    def _statements(self, col: dict[str, str]) -> dict[str, str]:
        u, i, e, v, t = col["user_id"], col["item_id"], col["event"], col["value"], col["timestamp"]
        m = col.get("message_id")
        absent = [f"{col[name]} IS NULL" for name in ("anonymous_id", "properties") if name in col]
        year, month = f"substr({t}, 1, 4)::int", f"substr({t}, 6, 2)::int"
        leap = f"mod({year}, 4) = 0 AND (mod({year}, 100) <> 0 OR mod({year}, 400) = 0)"
        days = (
            f"CASE WHEN {month} = 2 THEN CASE WHEN {leap} THEN 29 ELSE 28 END "
            f"WHEN {month} IN (4, 6, 9, 11) THEN 30 ELSE 31 END"
        )
        iso_fields = (
            f"substr({t}, 1, 4)::int >= 1 AND substr({t}, 6, 2)::int BETWEEN 1 AND 12 "
            f"AND substr({t}, 9, 2)::int BETWEEN 1 AND {days} "
            f"AND (length({t}) = 10 OR (substr({t}, 12, 2)::int <= 23 AND substr({t}, 15, 2)::int <= 59 "
            f"AND (substr({t}, 17, 1) <> ':' OR substr({t}, 18, 2)::int <= 59) "
            f"AND ({t} !~ '{OFFSET}' OR (substr(right({t}, 5), 1, 2)::int <= 14 "
            f"AND substr(right({t}, 5), 4, 2)::int <= 59))))"
        )
        # Evaluated only where the row is plain (CASE: no cast sees a malformed string).
        ts = (
            f"CASE WHEN {t} IS NULL THEN %(received)s::timestamptz "
            f"WHEN strpos({t}, '-') = 0 THEN to_timestamp({t}::float8) ELSE {t}::timestamptz END"
        )
        plain_ts = (
            f"CASE WHEN {t} IS NULL THEN true "
            f"WHEN {_decimal(t, whole=10, fraction=3)} THEN to_timestamp({t}::float8) <= %(latest)s "
            f"WHEN {t} ~ '{ISO}' THEN CASE WHEN {iso_fields} "
            f"THEN {t}::timestamptz <= %(latest)s ELSE false END "
            "ELSE false END"
        )
        plain = " AND ".join(
            [
                *absent,
                f"{u} IS NOT NULL",
                f"{e} IS NOT NULL AND char_length({e}) <= {tracking.MAX_NAME_LENGTH}",
                f"({i} IS NULL OR char_length({i}) <= {tracking.MAX_NAME_LENGTH})",
                f"({v} IS NULL OR {_decimal(v, whole=14, fraction=15, sign=True)})",
                *([f"({m} IS NULL OR char_length({m}) <= {tracking.MAX_NAME_LENGTH})"] if m else []),
                f"({plain_ts})",
            ]
        )
        message_id = "%(prefix)s || (%(first)s::bigint + s.n - 1)::text"
        # Two rows of a chunk with one message id go row by row: that path drops the second
        # before anything (its profile, item or time) is used.
        repeated = "0"
        if m:
            message_id = f"COALESCE({m}, {message_id})"
            repeated = f'count(*) - count(DISTINCT {message_id} COLLATE "C")'
        check = (
            f"SELECT count(*), count(*) FILTER (WHERE ({plain}) IS NOT TRUE) + {repeated}, "
            f'array_agg(DISTINCT {u} COLLATE "C"), array_agg(DISTINCT {e} COLLATE "C"), '
            f'array_agg(DISTINCT {i} COLLATE "C") FILTER (WHERE {i} IS NOT NULL) '
            f"FROM {STAGE} s"
        )
        profiles = (
            f"INSERT INTO {PROFILE} (external_id, traits, first_seen, last_seen, created_at) "
            f"SELECT {u}, '{{}}'::jsonb, min({ts}), max({ts}), %(now)s FROM {STAGE} s "
            f"WHERE {u} = ANY(%(missing)s::text[]) GROUP BY {u} ORDER BY {u} "
            "ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING"
        )
        # The value as Python's float repr would write it in JSON: "4" is 4.0.
        value_text = f"({v}::float8)::text"
        value_json = (
            f"(CASE WHEN strpos({value_text}, '.') + strpos({value_text}, 'e') = 0 "
            f"THEN {value_text} || '.0' ELSE {value_text} END)::jsonb"
        )
        properties = (
            f"(CASE WHEN {i} IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object(%(item_key)s::text, {i}) END "
            f"|| CASE WHEN {v} IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('value', {value_json}) END)"
        )
        # Rows go in profile order: the profile index takes them page by page.
        order = "u.pid, s.n"
        write = (
            # The chunk's profiles, locked against deletion and merges until it commits (as
            # tracking._store does); one deleted since phase 2 shows in the count (see _write).
            f"WITH u AS (SELECT external_id AS ext, id AS pid FROM {PROFILE} "
            "WHERE external_id = ANY(%(users)s::text[]) FOR KEY SHARE), "
            "it AS (SELECT * FROM unnest(%(refs)s::text[], %(items)s::bigint[]) AS it(ref, iid)), "
            "nm AS (SELECT * FROM unnest(%(names)s::text[], %(types)s::text[]) AS nm(name, type)), "
            "w AS (SELECT * FROM unnest(%(weighted)s::text[], %(weights)s::float8[]) AS w(type, weight)), "
            f"ins AS (INSERT INTO {EVENT} ({eventstore.EVENT_COLUMNS}) "
            f"SELECT %(source)s, {message_id}, {e}, nm.type, u.pid, it.iid, {v}::float8, {properties}, {ts}, "
            "%(received)s::timestamptz "
            f'FROM {STAGE} s JOIN u ON u.ext = {u} COLLATE "C" JOIN nm ON nm.name = {e} COLLATE "C" '
            f'LEFT JOIN it ON it.ref = {i} COLLATE "C" '
            f"ORDER BY {order} ON CONFLICT (source_id, message_id) DO NOTHING "
            "RETURNING profile_id, item_id, type, value, timestamp), "
            f"strengths AS (INSERT INTO {INTERACTION} (profile_id, item_id, strength, count, last_at) "
            "SELECT ins.profile_id, ins.item_id, sum(CASE WHEN ins.type = 'rate' "
            "THEN COALESCE(w.weight * (ins.value - %(midpoint)s), 0) ELSE w.weight END), count(*), "
            "max(ins.timestamp) FROM ins JOIN w ON w.type = ins.type WHERE ins.item_id IS NOT NULL "
            "GROUP BY 1, 2 ORDER BY 1, 2 "
            "ON CONFLICT (profile_id, item_id) DO UPDATE SET "
            f"strength = {INTERACTION}.strength + excluded.strength, "
            f"count = {INTERACTION}.count + excluded.count, "
            f"last_at = GREATEST({INTERACTION}.last_at, excluded.last_at)), "
            f"seen AS (INSERT INTO {SEEN} (id, lo, hi) "
            "SELECT profile_id, min(timestamp), max(timestamp) FROM ins GROUP BY 1) "
            "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM u)"
        )
        # First without ON CONFLICT: a plain insert costs a tenth less than the speculative
        # one, and a new chunk has no stored message id (if it has, the unique index refuses
        # the statement and the chunk is written again with ON CONFLICT, see _write).
        fresh = write.replace(" ON CONFLICT (source_id, message_id) DO NOTHING", "")
        return {"check": check, "profiles": profiles, "write": write, "write_fresh": fresh}

    def _params(self, sql: str, params: dict) -> tuple[str, list]:
        """Named parameters (``%(name)s``) as the positional ones ``eventstore._run`` binds."""
        names: list[str] = []

        def take(match) -> str:
            names.append(match.group(1))
            return "%s"

        return re.sub(r"%\((\w+)\)s", take, sql), [params[n] for n in names]

    # --- One chunk ------------------------------------------------------------------------

    def prepare_connection(self) -> None:
        """The temporary tables of this connection (kept for the session)."""
        columns = ", ".join(f"{c} text" for c in self.columns)
        _run(f"DROP TABLE IF EXISTS pg_temp.{STAGE}")
        _run(f"CREATE TEMPORARY TABLE {STAGE} (n bigint GENERATED ALWAYS AS IDENTITY, {columns})")
        _run(f"DROP TABLE IF EXISTS pg_temp.{SEEN}")
        _run(f"CREATE TEMPORARY TABLE {SEEN} (id bigint, lo timestamptz, hi timestamptz)")

    def store(self, chunk: RawChunk, *, own_transaction: bool) -> ChunkResult:
        """Store one chunk: set-based if every row is plain, else row by row."""

        def write() -> ChunkResult:
            if self.set_based and chunk.plain_lines and chunk.data:
                try:
                    return self._store_plain(chunk)
                except _NotPlain:
                    pass
            self._wait_for_earlier(chunk.seq)
            return self._store_rows(chunk)

        result = _retried(write, own_transaction=own_transaction, what=f"import chunk at line {chunk.first}")
        if result.fast:  # the row-by-row path widened them in its transaction
            _retried(self._seen_widen, own_transaction=own_transaction, what="first/last seen update")
        return result

    def _store_plain(self, chunk: RawChunk) -> ChunkResult:
        """Three transactions: stage and check the rows; create missing profiles and
        placeholder items (committed at once, so that other writers never wait for this
        chunk to see them); then lock what the chunk refers to and write it."""
        received = timezone.now()
        params = {"received": received, "latest": received + tracking.FUTURE_TOLERANCE}
        with transaction.atomic():
            eventstore.commit_asynchronous()
            _run(f"TRUNCATE {STAGE}, {SEEN} RESTART IDENTITY")
            try:
                with transaction.atomic():  # a savepoint: a refused COPY leaves the chunk usable
                    self._copy(chunk.data)
            except psycopg.Error:
                raise _NotPlain from None
            sql, args = self._params(
                self.sql["check"], {**params, "prefix": f"{self.prefix}:", "first": chunk.first}
            )
            (rows, not_plain, users, names, refs), = _run(sql, args, fetch=True)  # fmt: skip
        if not_plain or not users:
            raise _NotPlain
        for user in users:
            if user in self.users_valid:
                continue
            try:
                if identity.id_clean(user, field="userId") != user:
                    raise _NotPlain
            except identity.IdentityError:
                raise _NotPlain from None
            if len(self.users_valid) < USERS_REMEMBERED:
                self.users_valid.add(user)
        types = [tracking.event_type_for(name, self.limits.name_map or None) for name in names]
        refs = sorted(refs or [])
        titles = {ref: ref for ref in refs}
        with transaction.atomic():
            eventstore.commit_asynchronous()
            tracking.items_for_refs(titles, lock=False)
            self._profiles_create(users, received)
        with transaction.atomic():
            eventstore.commit_asynchronous()
            eventstore.source_lock(self.source.pk)
            known, _ = tracking.items_for_refs(titles, lock=True)
            weighted = sorted(self.weights)
            params.update(
                source=self.source.pk, prefix=f"{self.prefix}:", first=chunk.first, users=users,
                refs=[r for r in refs if r in known], items=[known[r] for r in refs if r in known],
                names=names, types=types, weighted=weighted, weights=[self.weights[k] for k in weighted],
                midpoint=settings.INTERACTION_RATING_MIDPOINT, item_key=self.limits.item_properties[0],
            )  # fmt: skip
            for _ in range(RETRIES):
                stored = self._write(params, users=len(users))
                if stored is not None:
                    break
                logger.info("profiles went away during an import chunk; making them again")
                self._profiles_create(users, received)
            else:
                raise RuntimeError("Profiles kept disappearing during the import; the chunk was not stored.")
            self._checkpoint(chunk, stored)
        return ChunkResult(chunk, stored=stored, duplicates=rows - stored)

    def _write(self, params: dict, *, users: int) -> int | None:
        """The chunk's events, strengths and spans; how many events were stored. None (and
        nothing written) when a profile of the chunk was deleted since it was looked up."""
        for statement in ("write_fresh", "write"):
            sql, args = self._params(self.sql[statement], params)
            try:
                with transaction.atomic():  # a savepoint: a refused statement leaves the chunk usable
                    (stored, found), = _run(sql, args, fetch=True)  # fmt: skip
                    if found < users:
                        raise _ProfilesGone
                return stored
            except psycopg.errors.UniqueViolation:
                continue  # some message ids are stored already (a rerun, a file imported twice)
            except _ProfilesGone:
                return None
        raise AssertionError("the ON CONFLICT statement cannot refuse a message id")

    def _copy(self, data: bytes) -> None:
        columns = ", ".join(self.columns)
        sql = (
            f"COPY {STAGE} ({columns}) FROM STDIN WITH (FORMAT csv, ENCODING 'UTF8', FORCE_NULL ({columns}))"
        )
        with psycopg.Cursor(connection.connection) as cursor, cursor.copy(sql) as copy:
            copy.write(data)

    def _profiles_create(self, users: list[str], received: datetime) -> None:
        """Create profiles for the user ids without one, spanning their rows' times."""
        (missing,), = _run(
            "SELECT array_agg(x) FROM unnest(%s::text[]) AS x "
            f"WHERE NOT EXISTS (SELECT 1 FROM {PROFILE} p WHERE p.external_id = x)",
            [users],
            fetch=True,
        )  # fmt: skip
        if missing:
            sql, args = self._params(
                self.sql["profiles"], {"received": received, "now": timezone.now(), "missing": missing}
            )
            _run(sql, args)

    def _store_rows(self, chunk: RawChunk) -> ChunkResult:
        """The row-by-row path (the API's rules, message by message) for one chunk."""
        rows = list(self._rows(chunk))
        parsed = tracking.rows_parse(rows, fmt="csv", prefix=self.prefix, limits=self.limits)
        result = ChunkResult(chunk, fast=False)
        if self.strict and parsed.bad:
            line, error = parsed.bad[0]
            raise tracking.ImportFailed(f"line {line}: {error}")
        with transaction.atomic():
            eventstore.commit_asynchronous()
            report = tracking.IngestReport(results=[None] * len(parsed.lines))
            if parsed.parsed:
                tracking.messages_store(source=self.source, parsed=parsed.parsed,
                                        received_at=parsed.received_at, report=report, bulk=True)  # fmt: skip
            rejected = [
                (parsed.lines[r["index"]], r["error"])
                for r in report.results
                if r and r["status"] == "rejected"
            ]
            if self.strict and rejected:
                raise tracking.ImportFailed(f"line {rejected[0][0]}: {rejected[0][1]}")
            self._checkpoint(chunk, report.stored)
        result.stored, result.duplicates = report.stored, report.duplicates
        result.errors = sorted(parsed.bad + rejected)
        return result

    def _rows(self, chunk: RawChunk) -> Iterator[tuple[int, dict]]:
        try:
            text = chunk.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise tracking.ImportFailed(_not_utf8(exc)) from None
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            for row in reader:
                if row:
                    yield chunk.first - 1 + reader.line_num, dict(zip(self.header, row, strict=False))
        except csv.Error as exc:
            raise tracking.ImportFailed(f"Malformed CSV: {exc}.") from None

    def _checkpoint(self, chunk: RawChunk, stored: int) -> None:
        """In the chunk's transaction: the checkpoint advances only if the chunk commits."""
        row = ImportCheckpoint.objects.select_for_update().get(pk=self.checkpoint.pk)
        row.line, row.pending = checkpoint_merge(row.line, row.pending, chunk.first, chunk.last)
        row.stored += stored
        row.save(update_fields=["line", "pending", "stored", "updated_at"])

    def _seen_widen(self) -> None:
        """Widen first/last seen of the chunk's profiles: after its commit when the chunk had
        its own transaction (row locks held until then would queue the other writers). Two
        writers updating shared profiles in different orders can deadlock: PostgreSQL then
        aborts one statement, which is run again (it only widens, so repeating is harmless)."""
        with transaction.atomic():
            _run(
                f"UPDATE {PROFILE} SET first_seen = LEAST(COALESCE({PROFILE}.first_seen, s.lo), s.lo), "
                f"last_seen = GREATEST(COALESCE({PROFILE}.last_seen, s.hi), s.hi) "
                f"FROM {SEEN} s WHERE {PROFILE}.id = s.id AND {WIDENS}"
            )

    # --- Order between chunks -------------------------------------------------------------

    def _wait_for_earlier(self, seq: int) -> None:
        """Row-by-row chunks run after every earlier chunk has finished: identity work (an
        anonymous id with a user id) must see what came before it in the file."""
        with self.state:
            while self.lowest_open < seq and not self.failed:
                self.state.wait(0.1)
            if self.failed:
                raise _Stopped

    def finish(self, seq: int, *, failed: bool = False) -> None:
        with self.state:
            self.finished.add(seq)
            self.failed |= failed
            while self.lowest_open in self.finished:
                self.finished.discard(self.lowest_open)
                self.lowest_open += 1
            self.state.notify_all()


def _retryable(exc: BaseException) -> bool:
    """A deadlock or serialisation failure (raw from psycopg, or wrapped by Django)."""
    retry = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
    return isinstance(exc, retry) or isinstance(exc.__cause__, retry)


def _retried(action: Callable, *, own_transaction: bool, what: str):
    """``action()``, run again (up to RETRIES times in all) when PostgreSQL aborted it to
    break a deadlock; only when it has its own transaction (inside a caller's, the abort
    has undone more than ``action``)."""
    for attempt in range(RETRIES):
        try:
            return action()
        except Exception as exc:
            if not own_transaction or attempt == RETRIES - 1 or not _retryable(exc):
                raise
            logger.info("%s retried after %s", what, exc)
    raise AssertionError("unreachable")


class _Stopped(Exception):
    """Another chunk failed first: this one is not stored."""


def import_csv(
    *,
    path: Path,
    source: Source,
    checkpoint: ImportCheckpoint,
    prefix: str,
    strict: bool,
    chunk_size: int,
    writers: int,
    report: tracking.ImportReport,
    account: Callable[[ChunkResult], None],
) -> None:
    """Import ``path`` (CSV) on PostgreSQL with ``writers`` connections in parallel (one, on
    the caller's connection, inside a transaction). ``account`` gets each chunk's result
    in file order."""
    threaded = not connection.in_atomic_block
    with path.open("rb") as handle:
        header = header_read(handle)
        job = CsvImport(source=source, checkpoint=checkpoint, header=header, prefix=prefix, strict=strict)
        chunks = raw_chunks(handle, chunk_size=chunk_size, line=checkpoint.line, pending=checkpoint.pending)
        if not threaded:
            job.prepare_connection()
            seq = 0
            for chunk in chunks:
                report.skipped += chunk.skipped
                if chunk.data:
                    chunk.seq, seq = seq, seq + 1
                    account(job.store(chunk, own_transaction=False))
                    job.finish(chunk.seq)
            return
        # One writer, in file order: with --strict (nothing after the first bad row may be
        # committed), and for files that bring message ids (of two lines with one id, the
        # earlier must be stored; ids made from line numbers cannot repeat).
        if strict or "message_id" in header:
            writers = 1
        _run_writers(job, chunks, writers=max(1, writers), report=report, account=account)


def _run_writers(job: CsvImport, chunks: Iterator[RawChunk], *, writers: int, report: tracking.ImportReport,
                 account: Callable[[ChunkResult], None]) -> None:  # fmt: skip
    """Hand chunks to ``writers`` threads and report their results in file order. The first
    failure stops the hand-out; the error of the earliest failed chunk is raised once every
    writer has stopped (chunks committed meanwhile stay, recorded in the checkpoint)."""
    tasks: queue.Queue = queue.Queue(maxsize=writers)
    results: dict[int, ChunkResult | BaseException] = {}
    lock = threading.Lock()

    def work() -> None:
        from django.db import connection as own

        broken: BaseException | None = None
        try:
            job.prepare_connection()
        except BaseException as exc:  # reported with the first chunk this writer takes
            broken = exc
        try:
            while (chunk := tasks.get()) is not None:
                try:
                    if broken is not None:
                        raise broken
                    if job.failed:
                        raise _Stopped
                    outcome: ChunkResult | BaseException = job.store(chunk, own_transaction=True)
                except BaseException as exc:  # reported by the caller, in order
                    outcome = exc
                with lock:
                    results[chunk.seq] = outcome
                job.finish(chunk.seq, failed=isinstance(outcome, BaseException))
        finally:
            own.close()

    threads = [threading.Thread(target=work, name=f"import-writer-{n}", daemon=True) for n in range(writers)]
    for thread in threads:
        thread.start()
    reported = 0
    error: BaseException | None = None

    def collect() -> None:
        nonlocal reported, error
        with lock:
            while reported in results:
                outcome = results.pop(reported)
                reported += 1
                if isinstance(outcome, BaseException):
                    if error is None and not isinstance(outcome, _Stopped):
                        error = outcome
                elif error is None:
                    account(outcome)

    try:
        seq = 0
        for chunk in chunks:
            report.skipped += chunk.skipped
            if not chunk.data:
                continue
            chunk.seq, seq = seq, seq + 1
            while not job.failed:
                collect()
                try:
                    tasks.put(chunk, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if job.failed:
                break
    finally:
        for _ in threads:
            tasks.put(None)
        for thread in threads:
            thread.join()
    collect()
    if error is None:
        # A failure that is not the earliest unfinished chunk's (that one stopped instead).
        error = next(
            (v for _, v in sorted(results.items()) if not isinstance(v, ChunkResult | _Stopped)), None
        )
    if error is not None:
        raise error
