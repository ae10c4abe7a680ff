"""Bulk import of events from CSV and NDJSON: bad rows, strictness, resuming."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Item
from personalization import tracking
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
def catalog(db):
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


def test_a_csv_without_the_required_columns_is_refused(db, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,thing\nu1,x\n")
    with pytest.raises(CommandError, match="Missing CSV columns"):
        call_command("import_events", str(path))
