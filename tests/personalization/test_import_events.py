"""Bulk import of events from CSV and NDJSON: bad rows, strictness, resuming."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from catalog.models import Item
from personalization import csvimport, tracking
from personalization.models import Event, ImportCheckpoint, Interaction, Profile

CSV = """user_id,item_id,event,value,timestamp,anonymous_id,properties
u1,m1,Video Playback Completed,,2026-11-01T10:00:00Z,,
u1,m2,rate,4.5,1761991200,,
,m1,Product Viewed,,2026-11-02T10:00:00+01:00,dev-1,"{""device"": ""tv""}"
u2,m1,play,abc,2026-11-03T10:00:00Z,,
undefined,m1,play,,2026-11-03T10:00:00Z,,
u2,m2,play,,2026-11-03T10:00:00Z,,{bad
u3,m2,add_to_list,,2026-11-04T10:00:00Z,,
"""


@pytest.fixture
def catalog(transactional_db):
    # Committed for real: on PostgreSQL the importer's writer thread has its own connection,
    # which would not see rows of a test transaction (inside one the import runs on the
    # caller's connection, see events_import).
    Item.objects.bulk_create([Item(external_id="m1", title="M1"), Item(external_id="m2", title="M2")])


def test_a_csv_import_stores_good_rows_and_reports_bad_ones_by_line(catalog, tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    call_command("import_events", str(path), "--chunk-size", "3")
    out, err = capsys.readouterr()
    assert "Done: 4 stored, 0 duplicates, 3 rejected" in out
    assert "line 5: value 'abc' is not a number." in err
    assert "line 6: userId 'undefined' is a placeholder" in err
    assert "line 7: properties is not valid JSON." in err
    if connection.vendor == "postgresql":  # chunks of 3 lines: only the last (line 8) is plain
        assert "2 of 3 chunks went row by row" in out
    assert Event.objects.count() == 4
    rate = Event.objects.get(type="rate")
    assert (rate.value, rate.timestamp) == (4.5, datetime(2025, 11, 1, 10, tzinfo=UTC))
    view = Event.objects.get(type="view")
    assert view.properties["device"] == "tv" and view.profile.anonymous_ids.get().anonymous_id == "dev-1"
    assert Interaction.objects.filter(profile__external_id="u1").count() == 2
    assert ImportCheckpoint.objects.get().line == 8


def test_a_rerun_resumes_after_the_checkpoint_and_a_restart_finds_only_duplicates(catalog, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    tracking.events_import(path=path, chunk_size=2)
    again = tracking.events_import(path=path)
    assert (again.stored, again.skipped, again.resumed_from) == (0, 7, 8)
    strengths = sorted(Interaction.objects.values_list("profile_id", "item_id", "strength", "count"))
    # Every line again: the bulk COPY meets existing message ids, falls back to the
    # insert that skips them, and nothing counts twice.
    restarted = tracking.events_import(path=path, restart=True)
    assert (restarted.stored, restarted.duplicates) == (0, 4)
    assert Event.objects.count() == 4
    assert sorted(Interaction.objects.values_list("profile_id", "item_id", "strength", "count")) == strengths


def test_a_chunk_mixing_new_and_already_imported_lines_stores_only_the_new(catalog, tmp_path):
    path = tmp_path / "events.csv"
    lines = CSV.splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    tracking.events_import(path=path)
    path.write_text(CSV)
    report = tracking.events_import(path=path, restart=True)
    assert (report.stored, report.duplicates, report.rejected) == (2, 2, 3)
    assert Event.objects.count() == 4
    assert Interaction.objects.get(profile__external_id="u1", item__external_id="m1").count == 1


@pytest.mark.parametrize(
    "row",
    [
        {"user_id": "u1", "item_id": "m1", "event": "Video Playback Completed", "value": "",
         "timestamp": "2026-11-01T10:00:00Z"},
        {"user_id": "", "anonymous_id": "dev-1", "item_id": "", "event": "rate", "value": "4",
         "timestamp": "1761991200.5", "properties": '{"product_id": "m2", "device": "tv"}'},
        {"user_id": "u2", "item_id": "m2", "event": "Something Else", "value": "",
         "timestamp": "2099-01-01T00:00:00", "message_id": "own-id"},
    ],
)  # fmt: skip
def test_the_csv_fast_path_parses_a_row_as_the_api_parses_the_same_message(row):
    """The importer skips building Segment dicts; it must not differ from the API's rules."""
    received_at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    limits = tracking.limits_load()
    fast = tracking._csv_parse(dict(row), index=0, line=2, prefix="f", limits=limits, received_at=received_at)
    properties = json.loads(row.get("properties") or "{}")
    if row["item_id"]:
        properties["item_id"] = row["item_id"]
    if row["value"]:
        properties["value"] = float(row["value"])
    timestamp = row["timestamp"]
    message = {
        "type": "track", "event": row["event"], "userId": row["user_id"] or None,
        "anonymousId": row.get("anonymous_id") or None, "messageId": row.get("message_id") or "f:2",
        "properties": properties,
        "timestamp": float(timestamp) if timestamp[0].isdigit() and ":" not in timestamp else timestamp,
    }  # fmt: skip
    slow = tracking.message_parse(message, index=0, kind=None, received_at=received_at, limits=limits)
    assert fast == slow


def test_a_strict_import_stops_at_the_first_bad_row_keeping_earlier_chunks(catalog, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    with pytest.raises(CommandError, match="line 5: value 'abc'"):
        call_command("import_events", str(path), "--strict", "--chunk-size", "2")
    assert Event.objects.count() == 2  # lines 2-3 committed; the chunk with line 5 is not
    assert ImportCheckpoint.objects.get().line == 3


def test_an_ndjson_import_takes_segment_messages(catalog, tmp_path):
    path = tmp_path / "events.ndjson"
    lines = [
        {"type": "identify", "userId": "u9", "traits": {"plan": "pro"}},
        {"event": "Order Completed", "userId": "u9", "properties": {"product_id": "m2", "revenue": 9.5}},
        "not json",
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    report = tracking.events_import(path=path)
    assert (report.stored, report.rejected) == (2, 1)
    assert report.errors[0][0] == 3
    assert Profile.objects.get(external_id="u9").traits == {"plan": "pro"}
    assert Event.objects.get(type="purchase").value == 9.5


def test_a_csv_without_the_required_columns_is_refused(transactional_db, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,thing\nu1,x\n")
    with pytest.raises(CommandError, match="Missing CSV columns"):
        call_command("import_events", str(path))


def test_a_value_that_is_not_a_finite_number_is_rejected_not_stored(catalog, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event,value,timestamp\n"
        "u1,m1,rate,nan,2026-11-01T10:00:00Z\nu1,m1,rate,inf,2026-11-01T10:00:00Z\n"
        "u1,m1,rate,4,2026-11-01T10:00:00Z\n"
    )
    report = tracking.events_import(path=path)
    assert (report.stored, report.rejected) == (1, 2)
    assert report.errors == [(2, "value 'nan' is not a number."), (3, "value 'inf' is not a number.")]


def test_the_parser_thread_reports_a_file_that_is_not_utf8_after_the_chunks_before_it(catalog, tmp_path):
    path = tmp_path / "events.csv"
    # Past the first 8 KB that the reader decodes at once, so that whole chunks come before.
    path.write_bytes(
        b"user_id,item_id,event,value,timestamp\n"
        + b"".join(b"u%03d,m1,play,,2026-11-01T10:00:00Z\n" % n for n in range(400))
        + b"u9,m1,\xff\xfe,,2026-11-01T10:00:00Z\n"
    )
    with pytest.raises(tracking.ImportFailed, match="not UTF-8"):
        tracking.events_import(path=path, chunk_size=100)
    stored = Event.objects.count()
    assert stored > 0 and stored % 100 == 0
    assert ImportCheckpoint.objects.get().line == stored + 1


def _many_users_csv(path, *, rows: int, users: int) -> None:
    path.write_text(
        "user_id,item_id,event,value,timestamp\n"
        + "".join(f"u{n % users},m{1 + n % 2},play,,2026-11-01T10:{n % 60:02d}:00Z\n" for n in range(rows))
    )


def _many_users(tmp_path, fmt: str, *, rows: int, users: int):
    """The same events as CSV (set-based on PostgreSQL) or NDJSON (the row-by-row pipeline)."""
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        _many_users_csv(path, rows=rows, users=users)
    else:
        messages = (
            {"userId": f"u{n % users}", "event": "play", "properties": {"item_id": f"m{1 + n % 2}"},
             "timestamp": f"2026-11-01T10:{n % 60:02d}:00Z"}
            for n in range(rows)
        )  # fmt: skip
        path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def test_chunks_sharing_user_ids_resolve_to_one_profile_each_across_the_writer_pipeline(catalog, tmp_path):
    """Chunk N+1 is resolved while chunk N is written: a user first seen in chunk N must not
    get a second profile in N+1, and every event must count once in the strengths."""
    path = tmp_path / "events.csv"
    _many_users_csv(path, rows=300, users=7)
    report = tracking.events_import(path=path, chunk_size=10)
    assert (report.stored, report.duplicates, report.rejected, report.lines) == (300, 0, 0, 301)
    assert Profile.objects.count() == 7
    assert Event.objects.count() == 300
    assert sum(Interaction.objects.values_list("count", flat=True)) == 300
    checkpoint = ImportCheckpoint.objects.get()
    assert (checkpoint.line, checkpoint.stored) == (301, 300)


def _write_hook(fmt: str) -> tuple[object, str]:
    """A function called inside each chunk's transaction, after its events are written."""
    if fmt == "csv" and connection.vendor == "postgresql":
        return csvimport.CsvImport, "_checkpoint"
    return tracking.interactions, "interactions_add"


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_failing_write_stops_the_import_with_earlier_chunks_committed_and_a_rerun_completes(
    catalog, tmp_path, monkeypatch, fmt
):
    path = _many_users(tmp_path, fmt, rows=100, users=5)
    target, name = _write_hook(fmt)
    real = getattr(target, name)
    calls: list[str] = []

    def failing_third(*args, **kwargs):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing_third)
    with pytest.raises(RuntimeError, match="disk full"):
        tracking.events_import(path=path, chunk_size=10, writers=1)
    # On PostgreSQL the chunks are written by a writer thread, on SQLite by the caller.
    if connection.vendor != "postgresql":
        assert set(calls) == {"MainThread"}
    else:
        assert set(calls) == {"import-writer-0" if fmt == "csv" else "import-writer"}
    # Chunks 1-2 committed with their checkpoint; nothing of chunk 3 or later.
    assert Event.objects.count() == 20
    last = 21 if fmt == "csv" else 20  # a CSV file's line 1 is its header
    assert ImportCheckpoint.objects.get().line == last
    monkeypatch.setattr(target, name, real)
    again = tracking.events_import(path=path, chunk_size=10)
    assert (again.stored, again.resumed_from) == (80, last)
    assert Event.objects.count() == 100
    assert sum(Interaction.objects.values_list("count", flat=True)) == 100
    assert Profile.objects.count() == 5


def test_parallel_writers_commit_out_of_order_and_a_rerun_stores_exactly_the_rest(
    catalog, tmp_path, monkeypatch
):
    """With two writers a later chunk may commit while an earlier one fails: the checkpoint
    keeps it as a committed range, and the rerun skips it instead of counting it again."""
    _postgres_only()
    path = _many_users(tmp_path, "csv", rows=100, users=5)
    real = csvimport.CsvImport._checkpoint
    failed: list[int] = []

    def fail_third_chunk_once(self, chunk, stored):
        if chunk.first == 22 and not failed:
            failed.append(chunk.first)
            raise RuntimeError("disk full")
        return real(self, chunk, stored)

    monkeypatch.setattr(csvimport.CsvImport, "_checkpoint", fail_third_chunk_once)
    with pytest.raises(RuntimeError, match="disk full"):
        tracking.events_import(path=path, chunk_size=10, writers=2)
    checkpoint = ImportCheckpoint.objects.get()
    assert checkpoint.line == 21
    assert all(first > 31 for first, _ in checkpoint.pending)
    committed = Event.objects.count()
    assert committed == 20 + 10 * len(checkpoint.pending)
    again = tracking.events_import(path=path, chunk_size=10, writers=2)
    assert (again.stored, again.duplicates) == (100 - committed, 0)
    assert again.skipped == 20 + 10 * len(checkpoint.pending)
    assert Event.objects.count() == 100
    assert sum(Interaction.objects.values_list("count", flat=True)) == 100
    checkpoint.refresh_from_db()
    assert (checkpoint.line, checkpoint.pending, checkpoint.stored) == (101, [], 100)


def item_orphans() -> tuple[int, int]:
    """(events, interactions) whose item does not exist (no database constraint checks it)."""
    known = Item.objects.values("pk")
    return (
        Event.objects.filter(item__isnull=False).exclude(item_id__in=known).count(),
        Interaction.objects.exclude(item_id__in=known).count(),
    )


def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the writer thread; SQLite serialises write transactions)")


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_an_item_deleted_while_an_import_chunk_is_written_takes_its_rows_with_it(
    catalog, tmp_path, monkeypatch, fmt
):
    """The writer has locked the chunk's items and not committed; a deletion of one of them
    waits for the chunk, then clears it from the chunk's events and drops its interactions."""
    _postgres_only()
    path = _many_users(tmp_path, fmt, rows=20, users=3)
    written, release = threading.Event(), threading.Event()
    target, name = _write_hook(fmt)
    real = getattr(target, name)
    errors: list[BaseException] = []
    deleter_pid: list[int] = []

    def hold(*args, **kwargs):
        written.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, hold)

    def run(target):
        def body():
            try:
                target()
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    def delete():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            deleter_pid.append(cursor.fetchone()[0])
        Item.objects.filter(external_id="m1").delete()

    importer = run(lambda: tracking.events_import(path=path, chunk_size=100))
    assert written.wait(30)
    deleter = run(delete)
    while not deleter_pid and deleter.is_alive():
        threading.Event().wait(0.01)
    _wait_until_blocked(deleter_pid[0])
    release.set()
    importer.join(30)
    deleter.join(30)
    assert not errors
    assert item_orphans() == (0, 0)
    assert Event.objects.count() == 20
    assert Event.objects.filter(item__isnull=True).count() == 10  # the m1 events, cleared
    assert set(Interaction.objects.values_list("item__external_id", flat=True)) == {"m2"}


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_an_item_deleted_between_the_look_ahead_and_the_write_is_resolved_again(
    catalog, tmp_path, monkeypatch, fmt
):
    """The look-ahead (NDJSON) or the creation step (CSV) resolved the items and committed;
    an item deleted before the writing transaction locks it is resolved again there."""
    _postgres_only()
    path = _many_users(tmp_path, fmt, rows=20, users=3)
    target, name = (
        (csvimport.CsvImport, "_profiles_create") if fmt == "csv" else (tracking, "_import_prepare")
    )
    real = getattr(target, name)

    def then_delete(*args, **kwargs):
        outcome = real(*args, **kwargs)
        Item.objects.filter(external_id="m1").delete()  # committed before the writer locks
        return outcome

    monkeypatch.setattr(target, name, then_delete)
    report = tracking.events_import(path=path, chunk_size=100)
    assert report.stored == 20
    assert item_orphans() == (0, 0)
    # Resolved again as an unknown item: a placeholder, or no item (TRACKING_UNKNOWN_ITEMS).
    m1 = Item.objects.filter(external_id="m1").first()
    assert (
        Event.objects.filter(item=m1).count() == 10 if m1 else Event.objects.filter(item=None).count() == 10
    )
    assert sum(Interaction.objects.values_list("count", flat=True)) == (20 if m1 else 10)


def _wait_until_blocked(pid: int) -> None:
    """Poll (bounded) until the backend ``pid`` waits for a lock."""
    with connections["default"].cursor() as cursor:
        for _ in range(2000):
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
            threading.Event().wait(0.01)
    raise AssertionError("the deletion never waited for the import's lock")


def test_a_profile_deleted_between_its_creation_and_the_chunk_write_is_made_again(
    catalog, tmp_path, monkeypatch
):
    """The set-based path creates missing profiles in a transaction of its own; one deleted
    before the chunk's write locks it is noticed there (nothing is written) and made again."""
    _postgres_only()
    path = _many_users(tmp_path, "csv", rows=20, users=3)
    real = csvimport.CsvImport._profiles_create
    deleted: list[int] = []

    def create_then_delete(self, users, received):
        real(self, users, received)
        if not deleted:
            victim = Profile.objects.get(external_id="u1")
            deleted.append(victim.pk)
            victim.delete()

    monkeypatch.setattr(csvimport.CsvImport, "_profiles_create", create_then_delete)
    report = tracking.events_import(path=path, chunk_size=100)
    assert report.stored == 20 and report.chunks_set_based == 1
    u1 = Profile.objects.get(external_id="u1")
    assert u1.pk != deleted[0]
    assert Event.objects.filter(profile=u1).count() == 7
    assert Event.objects.exclude(profile_id__in=Profile.objects.values("pk")).count() == 0
    assert sum(Interaction.objects.values_list("count", flat=True)) == 20


def test_the_chunker_skips_committed_ranges_and_never_splits_a_quoted_line_break(tmp_path):
    path = tmp_path / "lines.csv"
    rows = [f"u{n},m1,play,,{n}\n" for n in range(2, 12)]  # lines 2-11
    rows[4] = 'u6,m1,play,,6,"two\nlines"\n'  # line 6 holds a record that ends on line 7
    path.write_text("user_id,item_id,event,value,timestamp\n" + "".join(rows))
    with path.open("rb") as handle:
        csvimport.header_read(handle)
        chunks = list(csvimport.raw_chunks(handle, chunk_size=3, line=3, pending=[[9, 10]]))
    assert [(c.first, c.last, c.plain_lines, c.skipped) for c in chunks] == [
        (4, 7, False, 2),  # lines 2-3 skipped; read on to close the quoted field
        (8, 8, True, 0),  # up to the committed range 9-10
        (11, 12, True, 2),
    ]
    assert chunks[0].data.count(b"\n") == 4


@pytest.mark.parametrize("option", ["--writers", "--chunk-size"])
def test_a_count_below_one_is_refused_with_a_command_error(transactional_db, tmp_path, option):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event,value,timestamp\nu1,m1,play,,\n")
    with pytest.raises(CommandError, match=f"{option} must be at least 1"):
        call_command("import_events", str(path), option, "0")
    assert Event.objects.count() == 0
