"""The set-based CSV import (``csvimport``) stores exactly what the row-by-row path stores.

Every test imports the same file twice, once with the set-based path refused for every
chunk (``CsvImport._store_plain`` raising ``_NotPlain``, so that each chunk goes through
``tracking.rows_parse`` and ``messages_store``) and once as it comes, and compares what the
database holds afterwards: events, interactions, profiles, anonymous ids, placeholder items
and the import reports. ``CsvImport.store`` is wrapped to record which chunks went
set-based, so that a comparison cannot pass by both runs taking the row path.

PostgreSQL only: elsewhere ``events_import`` never reaches ``csvimport``.
"""

from __future__ import annotations

import csv
import io
import json
import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from catalog.models import Item
from personalization import csvimport, tracking
from personalization.eventstore import ANONYMOUS, EVENT, INTERACTION, ITEM, PROFILE
from personalization.models import ImportCheckpoint

pytestmark = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="the set-based CSV import runs only on PostgreSQL (csvimport); other databases take the row path",
)

BASE = ("user_id", "item_id", "event", "value", "timestamp")
FULL = (*BASE, "anonymous_id", "properties", "message_id")
KNOWN_ITEMS = ("m1", "m2")
NOW = datetime.now(UTC).replace(microsecond=0)
SOON = (NOW + timedelta(hours=1)).isoformat()
LATER = (NOW + timedelta(hours=48)).isoformat()
LATER_UNIX = str(int((NOW + timedelta(hours=48)).timestamp()))


@pytest.fixture
def catalog(transactional_db):
    # Committed for real: the import's writer threads have their own connections.
    if connection.vendor != "postgresql":
        pytest.skip("the set-based CSV import runs only on PostgreSQL")
    Item.objects.bulk_create([Item(external_id=ref, title=ref.upper()) for ref in KNOWN_ITEMS])


# --- Running both paths -------------------------------------------------------------------


def _refuse(self, chunk):
    raise csvimport._NotPlain


def import_once(monkeypatch, path, *, row_path: bool, hold=None, chunks=None, **kwargs):
    """One ``events_import`` of ``path``; returns (report, [(first line, fast)], window).
    ``chunks`` collects the (first line, fast) pairs as they come."""
    chunks = [] if chunks is None else chunks
    lock = threading.Lock()
    real_store = csvimport.CsvImport.store

    def store(self, chunk, **options):
        if hold is not None:
            hold(chunk)
        result = real_store(self, chunk, **options)
        with lock:
            chunks.append((chunk.first, result.fast))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(csvimport.CsvImport, "store", store)
        if row_path:
            patch.setattr(csvimport.CsvImport, "_store_plain", _refuse)
        started = datetime.now(UTC)
        report = tracking.events_import(path=path, **kwargs)
        ended = datetime.now(UTC)
    return report, sorted(chunks), (started, ended)


def reset() -> None:
    """Forget every import (the catalog's own items stay)."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {EVENT}, {INTERACTION}, {ANONYMOUS}, {PROFILE} CASCADE")
    ImportCheckpoint.objects.all().delete()
    Item.objects.exclude(external_id__in=KNOWN_ITEMS).delete()


def _time(epoch: Decimal | None, text: str | None, windows) -> str | None:
    """A stored time, or "received" for one taken from the clock during an import."""
    if epoch is None:
        return None
    for started, ended in windows:
        if Decimal(str(started.timestamp())) - 1 <= epoch <= Decimal(str(ended.timestamp())) + 1:
            return "received"
    return text


def snapshot(windows) -> dict:
    """What the imports left in the database, keyed by external ids and message ids."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT anonymous_id, profile_id FROM {ANONYMOUS}")
        anons: dict[int, list[str]] = {}
        anon_rows = cursor.fetchall()
        for anon, pk in anon_rows:
            anons.setdefault(pk, []).append(anon)
        cursor.execute(
            f"SELECT id, external_id, extract(epoch FROM first_seen), first_seen::text, "
            f"extract(epoch FROM last_seen), last_seen::text FROM {PROFILE}"
        )
        keys: dict[int, str] = {}
        profiles: dict[str, tuple] = {}
        for pk, external, lo, lo_text, hi, hi_text in cursor.fetchall():
            key = external if external is not None else "anon:" + ",".join(sorted(anons.get(pk, ["?"])))
            keys[pk] = key
            profiles[key] = (_time(lo, lo_text, windows), _time(hi, hi_text, windows))
        cursor.execute(
            f"SELECT e.message_id, e.name, e.type, e.profile_id, i.external_id, e.value, e.properties::text, "
            f"extract(epoch FROM e.timestamp), e.timestamp::text, e.received_at::text "
            f"FROM {EVENT} e LEFT JOIN {ITEM} i ON i.id = e.item_id"
        )
        events = {}
        for message_id, name, kind, pk, item, value, properties, epoch, text, received in cursor.fetchall():
            parsed = json.loads(properties)
            when = "received" if text == received else _time(epoch, text, windows)
            events[message_id] = {
                "name": name, "type": kind, "profile": keys.get(pk, f"missing profile {pk}"), "item": item,
                "value": value, "properties": parsed, "properties_json": json.dumps(parsed, sort_keys=True),
                "timestamp": when,
            }  # fmt: skip
        cursor.execute(
            f"SELECT n.profile_id, i.external_id, n.strength, n.count, extract(epoch FROM n.last_at), "
            f"n.last_at::text FROM {INTERACTION} n LEFT JOIN {ITEM} i ON i.id = n.item_id"
        )
        strengths = {
            (keys.get(pk, f"missing profile {pk}"), item): (strength, count, _time(epoch, text, windows))
            for pk, item, strength, count, epoch, text in cursor.fetchall()
        }
    items = {
        i.external_id: (i.title, i.active, i.metadata)
        for i in Item.objects.exclude(external_id__in=KNOWN_ITEMS)
    }
    return {
        "events": events,
        "interactions": strengths,
        "profiles": profiles,
        "anonymous_ids": {anon: keys.get(pk) for anon, pk in anon_rows},
        "items": items,
    }


def _report(report: tracking.ImportReport) -> dict:
    return {
        "stored": report.stored, "duplicates": report.duplicates, "rejected": report.rejected,
        "skipped": report.skipped, "lines": report.lines, "errors": sorted(report.errors),
    }  # fmt: skip


def both_paths(monkeypatch, path, *, runs=({},), hold=None, **kwargs):
    """Import ``path`` (once per entry of ``runs``, extra arguments each) by the row path
    alone, then from scratch as it comes. Returns {"rows": ..., "set": ...}: the reports,
    the database snapshot and the chunks' (first line, fast) pairs."""
    out = {}
    for label, row_path in (("rows", True), ("set", False)):
        reset()
        reports, chunks, windows = [], [], []
        for extra in runs:
            report, fast, window = import_once(
                monkeypatch, path, row_path=row_path, hold=None if row_path else hold, **kwargs, **extra
            )
            reports.append(_report(report))
            chunks.append(fast)
            windows.append(window)
        out[label] = {"reports": reports, "db": snapshot(windows), "chunks": chunks}
    assert not any(fast for run in out["rows"]["chunks"] for _, fast in run)
    return out


def _diff(name: str, rows: dict, fast: dict) -> list[str]:
    lines = []
    for key in sorted(rows.keys() | fast.keys(), key=repr):
        a, b = rows.get(key, "<absent>"), fast.get(key, "<absent>")
        if a != b:
            lines.append(f"{name}[{key!r}]: row path {a!r} / set-based {b!r}")
    return lines


def assert_same(out: dict) -> None:
    rows, fast = out["rows"], out["set"]
    problems = [
        f"reports: row path {a} / set-based {b}"
        for a, b in zip(rows["reports"], fast["reports"], strict=True)
        if a != b
    ]
    for name in ("events", "profiles", "anonymous_ids", "items"):
        problems += _diff(name, rows["db"][name], fast["db"][name])
    a, b = rows["db"]["interactions"], fast["db"]["interactions"]
    problems += _diff(
        "interactions", {k: (v[1], v[2]) for k, v in a.items()}, {k: (v[1], v[2]) for k, v in b.items()}
    )
    problems += [
        f"interactions[{k!r}] strength: row path {a[k][0]} / set-based {b[k][0]}"
        for k in a.keys() & b.keys()
        if a[k][0] != pytest.approx(b[k][0], rel=1e-9, abs=1e-9)
    ]
    assert not problems, "\n".join(problems[:40])


def fast_lines(out: dict, run: int = 0) -> set[int]:
    """First lines of the chunks the set-based run stored set-based."""
    return {first for first, fast in out["set"]["chunks"][run] if fast}


def write_csv(path, header, rows, *, newline: str = "\n") -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header] if isinstance(row, dict) else row)
    path.write_bytes(buffer.getvalue().encode())


# --- One row per case ----------------------------------------------------------------------

PLAIN = {"user_id": "u1", "item_id": "m1", "event": "play", "value": "", "timestamp": "2026-11-01T10:00:00Z"}

# (field, value, whether such a row is plain: the set-based path must take it)
CASES = [
    ("timestamp", "", True),
    ("timestamp", "1761991200", True),
    ("timestamp", "0", True),
    ("timestamp", "1761991200.5", True),
    ("timestamp", "1761991200.12", True),
    ("timestamp", "1761991200.123", True),
    ("timestamp", "1000000000.999", True),
    ("timestamp", "1761991200.1234", False),
    ("timestamp", "1761991200.123456", False),
    ("timestamp", "1.", False),
    ("timestamp", ".5", False),
    ("timestamp", "2026-11-01", True),
    ("timestamp", "2026-11-01T10:00:00", True),
    ("timestamp", "2026-11-01 10:00:00", True),
    ("timestamp", "2026-11-01T10:00", True),
    ("timestamp", "2026-11-01 10:00Z", True),
    ("timestamp", "2026-11-01T10:00:00.1", True),
    ("timestamp", "2026-11-01T10:00:00.12Z", True),
    ("timestamp", "2026-11-01T10:00:00.123+01:00", True),
    ("timestamp", "2026-11-01T10:00:00.1234Z", True),
    ("timestamp", "2026-11-01T10:00:00.12345", True),
    ("timestamp", "2026-11-01T10:00:00.123456-05:30", True),
    ("timestamp", "2026-11-01T10:00:00.1234567Z", False),
    ("timestamp", "2026-11-01T10:00:00+01:00", True),
    ("timestamp", "2026-11-01T10:00:00-05:30", True),
    ("timestamp", "2026-11-01T10:00:00+14:00", True),
    ("timestamp", "2026-11-01T10:00:00-00:00", True),
    ("timestamp", "2026-11-01T10:00:00+15:00", False),
    ("timestamp", "2026-11-01T10:00:00+0530", False),
    ("timestamp", "2026-11-01T10:00:00+05", False),
    ("timestamp", "2026-02-30", False),
    ("timestamp", "2024-02-29", True),
    ("timestamp", "1900-02-29", False),
    ("timestamp", "2000-02-29T12:00:00Z", True),
    ("timestamp", "2026-04-31T00:00:00", False),
    ("timestamp", "2026-13-01", False),
    ("timestamp", "2026-11-01T24:00:00", False),
    ("timestamp", "2026-11-01T10:60:00", False),
    ("timestamp", "2026-11-01T10:00:60", False),
    ("timestamp", "0000-01-01", False),
    ("timestamp", "0001-01-01T00:00:00+01:00", True),
    ("timestamp", "0099-06-01T00:00:00Z", True),
    ("timestamp", "2026-11-01t10:00:00", False),
    ("timestamp", "2026-11-01T10", False),
    ("timestamp", "20261101T100000Z", False),
    ("timestamp", " 2026-11-01T10:00:00Z", False),
    ("timestamp", "2026-11-01T10:00:00Z ", False),
    ("timestamp", SOON, True),
    ("timestamp", LATER, False),
    ("timestamp", LATER_UNIX, False),
    ("timestamp", "9999999999", False),
    ("timestamp", "yesterday", False),
    ("timestamp", "1e9", False),
    ("value", "4", True),
    ("value", "4.50", True),
    ("value", "-0", True),
    ("value", "0012", True),
    ("value", "12345678901234", True),
    ("value", "99999999999999.999999999", True),
    ("value", "0.000001", True),
    ("value", "0.00001", True),
    ("value", "0.1", True),
    ("value", "-2.5", True),
    ("value", "1e3", False),
    ("value", "nan", False),
    ("value", "inf", False),
    ("value", " 4", False),
    ("value", "1_000", False),
    ("value", "123456789012345", False),
    ("value", "abc", False),
    ("user_id", " u1 ", False),
    ("user_id", "u2", True),
    ("user_id", "undefined", False),
    ("user_id", "NULL", False),
    ("user_id", "0", False),
    ("user_id", "Anonymous", False),
    ("user_id", "x" * 200, True),
    ("user_id", "y" * 201, False),
    ("user_id", "ünï 😀", True),
    ("user_id", "", False),
    ("user_id", " ", False),
    ("event", "Video Playback Completed", True),
    ("event", "video playback COMPLETED", True),
    ("event", "PLAY", True),
    ("event", "rate", True),
    ("event", "Something Else", True),
    ("event", "e" * 200, True),
    ("event", "e" * 201, False),
    ("event", "", False),
    ("item_id", "m2", True),
    ("item_id", "new-item", True),
    ("item_id", " m1 ", True),
    ("item_id", "", True),
    ("item_id", "i" * 200, True),
    ("item_id", "i" * 201, False),
]


def _case_rows() -> list[dict]:
    rows = []
    for field, value, _ in CASES:
        row = {**PLAIN, field: value}
        if field == "value":
            row["event"] = "rate"
        rows.append(row)
    # Ratings, so that strengths are not all one weight.
    rows += [{**PLAIN, "event": "Item Rated", "value": "5", "item_id": "m2"}, {**PLAIN, "event": "rate"}]
    return rows


@pytest.mark.parametrize("header", [BASE, FULL], ids=["required-columns", "all-columns"])
def test_a_row_per_case_is_stored_by_the_set_based_path_as_by_the_row_path(
    catalog, tmp_path, monkeypatch, header
):
    path = tmp_path / "cases.csv"
    write_csv(path, header, _case_rows())
    out = both_paths(monkeypatch, path, chunk_size=1)
    assert_same(out)
    plain = {line for line, (_, _, expected) in enumerate(CASES, start=2) if expected}
    assert fast_lines(out) - {len(CASES) + 2, len(CASES) + 3} == plain


def test_the_rows_of_one_chunk_are_stored_alike_whether_the_chunk_is_plain_or_not(
    catalog, tmp_path, monkeypatch
):
    path = tmp_path / "cases.csv"
    write_csv(path, BASE, _case_rows())
    out = both_paths(monkeypatch, path, chunk_size=7, writers=1)
    assert_same(out)
    assert fast_lines(out)  # some chunks of seven plain rows


def test_optional_columns_are_taken_by_the_row_path_only_when_filled(catalog, tmp_path, monkeypatch):
    rows = [
        {**PLAIN, "message_id": ""},
        {**PLAIN, "message_id": "own-1"},
        {**PLAIN, "message_id": "m" * 200},
        {**PLAIN, "message_id": "m" * 201},
        {**PLAIN, "user_id": "", "anonymous_id": "dev-1"},
        {**PLAIN, "user_id": "u7", "anonymous_id": "dev-1"},
        {**PLAIN, "user_id": "", "anonymous_id": "dev-2", "item_id": "m2"},
        {**PLAIN, "user_id": "u8", "anonymous_id": "undefined"},
        {**PLAIN, "properties": '{"device": "tv", "progress": 10}', "event": "Video Playback Exited"},
        {**PLAIN, "properties": '{"product_id": "p9", "title": "Nine"}', "item_id": ""},
        {**PLAIN, "properties": '{"value": 4, "rating": 2}', "event": "rate"},
        {**PLAIN, "properties": "{bad"},
        {**PLAIN, "properties": "[1, 2]"},
        {**PLAIN, "properties": '{"x": NaN}'},
        {**PLAIN, "user_id": "u9", "timestamp": "2026-11-02T10:00:00Z"},
    ]
    path = tmp_path / "optional.csv"
    write_csv(path, FULL, rows)
    out = both_paths(monkeypatch, path, chunk_size=1)
    assert_same(out)
    assert fast_lines(out) == {2, 3, 4, 16}


# --- Duplicates, reruns, restarts -------------------------------------------------------------


def test_exact_duplicate_lines_count_alike_within_and_across_chunks(catalog, tmp_path, monkeypatch):
    line = {**PLAIN, "message_id": "same", "event": "rate", "value": "5"}
    rows = [line, {**PLAIN, "message_id": "other"}, line, {**PLAIN, "user_id": "u2"}, line, line]
    path = tmp_path / "duplicates.csv"
    write_csv(path, FULL, rows)
    out = both_paths(monkeypatch, path, chunk_size=2, writers=1)
    assert_same(out)
    # A repeat of a stored line goes set-based; a repeat within its chunk row by row.
    assert fast_lines(out) == {2, 4}
    assert out["set"]["reports"][0]["duplicates"] == 3


def test_a_rerun_and_a_restart_store_nothing_new_and_leave_the_strengths_alone(
    catalog, tmp_path, monkeypatch
):
    path = tmp_path / "cases.csv"
    write_csv(path, BASE, _case_rows())
    runs = ({}, {}, {"restart": True})
    out = both_paths(monkeypatch, path, chunk_size=5, runs=runs, writers=2)
    assert_same(out)
    reports = out["set"]["reports"]
    assert reports[1]["stored"] == reports[2]["stored"] == 0
    assert reports[1]["skipped"] == len(_case_rows())
    assert reports[2]["duplicates"] == reports[0]["stored"]
    assert fast_lines(out, 2)  # the restart's plain chunks meet their rows set-based


def test_a_file_grown_since_the_last_import_resumes_alike(catalog, tmp_path, monkeypatch):
    path = tmp_path / "grown.csv"
    rows = _case_rows()
    out = {}
    for label, row_path in (("rows", True), ("set", False)):
        reset()
        write_csv(path, BASE, rows[:40])
        first = import_once(monkeypatch, path, row_path=row_path, chunk_size=6)
        write_csv(path, BASE, rows)
        second = import_once(monkeypatch, path, row_path=row_path, chunk_size=6)
        out[label] = {
            "reports": [_report(first[0]), _report(second[0])],
            "db": snapshot([first[2], second[2]]),
            "chunks": [first[1], second[1]],
        }
    assert_same(out)


# --- File shapes ---------------------------------------------------------------------------


def _shape(text: str) -> bytes:
    return text.encode()


HEADER = "user_id,item_id,event,value,timestamp\n"
P = "u1,m1,play,,2026-11-01T10:00:00Z"
SHAPES = {
    "crlf": _shape((HEADER + f"{P}\n" * 4 + "u2,m2,rate,4,1761991200\n").replace("\n", "\r\n")),
    "quoted-line-break": _shape(HEADER + f'{P}\n"u\n3",m1,play,,2026-11-01T10:00:00Z\n{P}\n'),
    "doubled-quotes": _shape(HEADER + f'{P}\n"u""4",m1,"Product ""Viewed""",,2026-11-01T10:00:00Z\n{P}\n'),
    "quoted-plain-fields": _shape(
        HEADER + '"u5","m1","play","4","2026-11-01T10:00:00Z"\n"u5","","rate","",""\n'
    ),
    "quoted-comma": _shape(HEADER + '"u,6",m1,"Added to List",,2026-11-01\n'),
    "blank-lines": _shape(HEADER + f"{P}\n\n{P}\n\n\n{P}\n"),
    "no-final-newline": _shape(HEADER + f"{P}\nu2,m2,play,,1761991200"),
    "too-few-columns": _shape(HEADER + f"{P}\nu1,m1,play\nu1,m1\n{P}\n"),
    "too-many-columns": _shape(HEADER + f"{P}\n{P},extra\n{P}\n"),
    "repeated-column": _shape(
        "user_id,item_id,event,value,timestamp,user_id\n"
        "u1,m1,play,,2026-11-01T10:00:00Z,u2\nu1,m1,play,,2026-11-01T10:00:00Z,\n"
    ),
    "extra-column": _shape("note,user_id,item_id,event,value,timestamp\nhi,u1,m1,play,,2026-11-01\n"),
    "column-order": _shape("timestamp,value,event,item_id,user_id\n1761991200,2,rate,m2,u3\n"),
    "text-after-closing-quote": _shape(HEADER + '"u1"x,"m1"2,play,,2026-11-01T10:00:00Z\n'),
    "header-only": _shape(HEADER),
    "unicode": _shape(HEADER + "ü😀,m1,Ünïcode,,2026-11-01T10:00:00+01:00\n"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("chunk_size", [1, 50])
def test_a_file_shape_is_read_alike_by_both_paths(catalog, tmp_path, monkeypatch, shape, chunk_size):
    path = tmp_path / "shape.csv"
    path.write_bytes(SHAPES[shape])
    out = both_paths(monkeypatch, path, chunk_size=chunk_size, writers=1)
    assert_same(out)


def test_a_plain_file_goes_set_based_whole(catalog, tmp_path, monkeypatch):
    path = tmp_path / "plain.csv"
    path.write_bytes(SHAPES["crlf"])
    out = both_paths(monkeypatch, path, chunk_size=50)
    assert fast_lines(out) == {2}
    assert_same(out)


def test_a_strict_import_stops_at_the_same_line_with_the_same_rows_stored(catalog, tmp_path, monkeypatch):
    rows = [PLAIN] * 9 + [{**PLAIN, "user_id": "u2", "item_id": "new-item"}, {**PLAIN, "value": "abc"}, PLAIN]
    path = tmp_path / "strict.csv"
    write_csv(path, BASE, rows)
    out = {}
    for label, row_path in (("rows", True), ("set", False)):
        reset()
        chunks: list = []
        with pytest.raises(tracking.ImportFailed) as failed:
            import_once(monkeypatch, path, row_path=row_path, chunks=chunks, chunk_size=3, strict=True)
        checkpoint = ImportCheckpoint.objects.get()
        out[label] = {
            "reports": [{"error": str(failed.value), "checkpoint": (checkpoint.line, checkpoint.stored)}],
            "db": snapshot([(NOW - timedelta(days=1), datetime.now(UTC))]),
            "chunks": [sorted(chunks)],
        }
    assert fast_lines(out) == {2, 5, 8}
    assert out["set"]["reports"][0] == {
        "error": "line 12: value 'abc' is not a number.",
        "checkpoint": (10, 9),
    }
    assert_same(out)


# --- Random mixes -------------------------------------------------------------------------------

POOLS = {
    "user_id": (["u1", "u2", "u3", "u4", "u5", "ü6"], [" u1", "undefined", "Null", "", "z" * 201]),
    "item_id": (["m1", "m2", "p1", "p2", "", "p3"], ["i" * 201]),
    "event": (["play", "Video Playback Completed", "product viewed", "rate", "Item Rated", "Odd One"],
              ["", "e" * 201]),
    "value": (["", "", "", "4", "1.5", "5", "-0", "0.25"], ["abc", "nan", "1e3", " 2"]),
    "timestamp": (
        ["", "1761991200", "1761991200.25", "2026-11-01T10:00:00Z", "2026-11-02 11:30", "2026-10-30",
         "2026-11-03T10:00:00.123456+02:00", "2026-11-04T10:00:00-05:30", SOON],
        ["2026-02-30", LATER, "2026-11-01T10:00:00+0530", "garbage", "1761991200.5555", "2026-11-01T25:00"],
    ),
    "anonymous_id": ([""] * 12, ["d1", "d2", "d3"]),
    "properties": ([""] * 12, ['{"device": "tv"}', "{bad", "[1]", '{"product_id": "p4", "title": "Four"}']),
    "message_id": ([""] * 6 + ["x"] * 4, []),  # "x": an id drawn from 2,000 (random_rows)
}  # fmt: skip


def random_rows(seed: int, count: int, *, odd: float) -> list[dict]:
    """Rows mostly plain; each field is not plain with probability ``odd``. An explicit
    message id always comes with the same row (a chunk repeating one goes row by row, see
    the tests at the end)."""
    rng = random.Random(seed)
    by_message: dict[str, dict] = {}
    rows = []
    for _ in range(count):
        row = {}
        for name, (plain, other) in POOLS.items():
            row[name] = rng.choice(other if other and rng.random() < odd else plain)
        if row["message_id"]:
            row["message_id"] = f"x-{rng.randrange(2000)}"
            row = by_message.setdefault(row["message_id"], row)
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    ("seed", "count", "chunk_size", "writers", "odd"),
    [
        (1, 700, 7, 1, 0.01),
        (2, 700, 7, 2, 0.01),
        (3, 1500, 50, 2, 0.002),
        (4, 400, 7, 2, 0.05),
    ],
)
def test_a_random_mix_of_rows_is_stored_alike_by_both_paths(
    catalog, tmp_path, monkeypatch, seed, count, chunk_size, writers, odd
):
    path = tmp_path / "random.csv"
    write_csv(path, FULL, random_rows(seed, count, odd=odd))
    out = both_paths(monkeypatch, path, chunk_size=chunk_size, writers=writers)
    assert_same(out)
    chunks = out["set"]["chunks"][0]
    assert any(fast for _, fast in chunks) and not all(fast for _, fast in chunks)


def test_a_random_mix_without_optional_columns_is_stored_alike_and_rerun_alike(
    catalog, tmp_path, monkeypatch
):
    path = tmp_path / "random.csv"
    write_csv(path, BASE, random_rows(5, 600, odd=0.01))
    out = both_paths(monkeypatch, path, chunk_size=7, writers=2, runs=({}, {"restart": True}))
    assert_same(out)
    assert fast_lines(out) and fast_lines(out, 1)


def test_unknown_items_ignored_by_setting_are_dropped_alike(catalog, tmp_path, monkeypatch, settings):
    settings.TRACKING_UNKNOWN_ITEMS = "ignore"
    path = tmp_path / "random.csv"
    write_csv(path, BASE, random_rows(6, 300, odd=0.01))
    out = both_paths(monkeypatch, path, chunk_size=7, writers=2)
    assert_same(out)
    assert fast_lines(out) and not out["set"]["db"]["items"]


def _hold_until_done(first: int, then: int):
    """A ``hold`` and a ``_store_plain``/``_store_rows`` wrapper: chunk ``first`` starts only
    once chunk ``then`` has been stored (a slow writer, forced)."""
    done = threading.Event()

    def hold(chunk):
        if chunk.seq == first:
            done.wait(10)

    def after(real):
        def wrapped(self, chunk):
            try:
                return real(self, chunk)
            finally:
                if chunk.seq == then:
                    done.set()

        return wrapped

    return hold, after


def test_first_and_last_seen_span_the_stored_rows_of_new_and_known_profiles(catalog, tmp_path, monkeypatch):
    rows = [
        # chunk 1: u1 and u2 new
        {**PLAIN, "timestamp": "2026-11-05T10:00:00Z"},
        {**PLAIN, "user_id": "u2", "timestamp": "2026-11-05T10:00:00Z"},
        {**PLAIN, "user_id": "u2", "timestamp": "2026-11-06T10:00:00Z"},
        # chunk 2: both known, earlier and later times
        {**PLAIN, "timestamp": "2026-11-10T10:00:00Z"},
        {**PLAIN, "timestamp": "2026-11-01T10:00:00Z"},
        {**PLAIN, "user_id": "u2", "timestamp": "2026-11-07T10:00:00Z"},
        # chunk 3: not plain (a bad row), times outside again
        {**PLAIN, "timestamp": "2026-10-01T10:00:00Z"},
        {**PLAIN, "user_id": "u2", "timestamp": "2026-12-01T10:00:00Z"},
        {**PLAIN, "value": "abc"},
        # chunk 4: a new user among known ones, inside their spans
        {**PLAIN, "user_id": "u3", "timestamp": "2026-11-03T10:00:00Z"},
        {**PLAIN, "user_id": "u3", "timestamp": "1761991200"},
        {**PLAIN, "timestamp": "2026-11-02T10:00:00Z"},
    ]
    path = tmp_path / "spans.csv"
    write_csv(path, BASE, rows)
    for writers in (1, 2):
        out = both_paths(monkeypatch, path, chunk_size=3, writers=writers)
        assert fast_lines(out) == {2, 5, 11}
        assert_same(out)
        assert out["set"]["db"]["profiles"]["u1"] == ("2026-10-01 10:00:00+00", "2026-11-10 10:00:00+00")


def test_a_later_plain_chunk_stored_before_an_earlier_identity_chunk_ends_alike(
    catalog, tmp_path, monkeypatch
):
    """Row-by-row chunks wait for the chunks before them, set-based ones do not: a user id
    first claimed by an anonymous profile (line 3) may meet a profile made by a later plain
    chunk (line 4) first."""
    rows = [
        {**PLAIN, "user_id": "", "anonymous_id": "d9", "timestamp": "2026-11-01T10:00:00Z"},
        {**PLAIN, "user_id": "u5", "anonymous_id": "d9", "timestamp": "2026-11-02T10:00:00Z"},
        {**PLAIN, "user_id": "u5", "item_id": "m2", "timestamp": "2026-11-03T10:00:00Z"},
    ]
    path = tmp_path / "identity.csv"
    write_csv(path, FULL, rows)
    hold, after = _hold_until_done(1, 2)
    monkeypatch.setattr(csvimport.CsvImport, "_store_plain", after(csvimport.CsvImport._store_plain))
    out = both_paths(monkeypatch, path, chunk_size=1, writers=2, hold=hold)
    assert fast_lines(out) == {4}
    assert_same(out)


# --- Where PostgreSQL's CSV and Python's csv differ: such chunks go row by row --------------------


@pytest.mark.parametrize("field", ['m"1"x', ' "m1"'], ids=["quote-inside", "space-before-quote"])
def test_a_quote_inside_an_unquoted_field_sends_its_chunk_row_by_row(catalog, tmp_path, monkeypatch, field):
    """PostgreSQL's COPY opens a quoted part at a quote anywhere in a field, Python's csv
    only at the start: m"1"x would be m1x set-based."""
    path = tmp_path / "quotes.csv"
    path.write_text(f"{HEADER}u1,{field},play,,2026-11-01T10:00:00Z\n{P}\n")
    out = both_paths(monkeypatch, path, chunk_size=1)
    assert fast_lines(out) == {3}
    assert_same(out)
    assert out["set"]["reports"][0]["stored"] == 2


def test_a_line_holding_only_backslash_dot_does_not_end_the_chunk(catalog, tmp_path, monkeypatch):
    """A line "\\." ends COPY's data: the chunk's later lines would be lost."""
    path = tmp_path / "eod.csv"
    path.write_text(f"{HEADER}{P}\n\\.\nu2,m2,play,,2026-11-01T10:00:00Z\n")
    out = both_paths(monkeypatch, path, chunk_size=10)
    assert out["set"]["reports"][0]["stored"] == 2
    assert fast_lines(out) == set()
    assert_same(out)


@pytest.mark.parametrize(
    "second",
    [
        {"user_id": "u2"},
        {"timestamp": "2026-11-05T10:00:00Z"},
        {"item_id": "new-item"},
    ],
    ids=["other-user", "later-time", "unknown-item"],
)
def test_a_repeated_message_id_within_a_chunk_leaves_no_trace(catalog, tmp_path, monkeypatch, second):
    """The row path drops the repeat before making its profile or item or widening a span:
    such a chunk goes row by row."""
    path = tmp_path / "repeated.csv"
    rows = [{**PLAIN, "message_id": "same"}, {**PLAIN, "message_id": "same", **second}]
    write_csv(path, FULL, rows)
    out = both_paths(monkeypatch, path, chunk_size=10)
    assert fast_lines(out) == set()
    assert_same(out)


def test_a_file_with_message_ids_is_written_in_file_order_by_one_writer(catalog, tmp_path, monkeypatch):
    """Of two lines with one message id in different chunks the earlier is stored, so such a
    file is not spread over parallel writers (which commit out of order)."""
    path = tmp_path / "repeated.csv"
    rows = [{**PLAIN, "message_id": "same"}, {**PLAIN, "message_id": "same", "user_id": "u2"}]
    write_csv(path, FULL, rows)
    threads: set[str] = set()
    real = csvimport.CsvImport._store_plain

    def store_plain(self, chunk):
        threads.add(threading.current_thread().name)
        return real(self, chunk)

    monkeypatch.setattr(csvimport.CsvImport, "_store_plain", store_plain)
    out = both_paths(monkeypatch, path, chunk_size=1, writers=2)
    assert threads == {"import-writer-0"}
    assert fast_lines(out) == {2, 3}
    assert_same(out)
    assert out["set"]["reports"][0]["duplicates"] == 1
