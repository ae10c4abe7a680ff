"""Hostile uploads: malformed CSV and JSON, wrong encodings (UTF-16, Latin-1, Windows-1252),
very long lines, huge files and binary garbage, for the three ways files come in: catalog
imports, static segment uploads and ``manage.py import_events``.

Each must end with a clear error (a form error, a CommandError) or a correct import, never a
500 or a traceback, and a refused file must leave nothing half-written.
"""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from catalog.models import ImportJob, Item
from personalization.models import Event, Profile, Segment, SegmentMembership

LONG = "x" * 300_000  # beyond the csv module's default field limit (131072)

# name -> (file name, bytes)
HOSTILE = {
    "utf16": ("items.csv", "external_id,title\nm1,Été\n".encode("utf-16")),
    "utf16-no-bom": ("items.csv", "external_id,title\nm1,Ete\n".encode("utf-16-le")),
    "cp1252": ("items.csv", "external_id,title\nm1,\u201cQuoted\u201d\n".encode("cp1252")),
    "binary": ("items.csv", bytes(range(256)) * 64),
    "empty": ("items.csv", b""),
    "unbalanced-quote": ("items.csv", b'external_id,title\nm1,"never closed\nm2,Two\n'),
    "ragged": ("items.csv", b"external_id,title\nm1\nm2,Two,extra,fields\n"),
    "long-line": ("items.csv", f"external_id,title\nm1,{LONG}\n".encode()),
    "long-unquoted-field": ("items.csv", f'external_id,title\nm1,"{LONG}"\n'.encode()),
    "json-truncated": ("items.json", b'[{"external_id": "m1", "title": "One"'),
    "json-not-objects": ("items.json", b"[1, 2, [3]]"),
    "json-scalar": ("items.json", b'"just a string"'),
    "json-deep": ("items.json", b"[" * 100_000 + b"]" * 100_000),
    "header-only": ("items.csv", b"external_id,title\n"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_catalog_imports_refuse_hostile_files_clearly_and_write_nothing(client_as, case):
    name, data = HOSTILE[case]
    client = client_as("editor")
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile(name, data)})
    assert response.status_code < 500
    jobs = list(ImportJob.objects.all())
    if response.status_code == 400:
        assert response.context["form"].errors, "a refused file says why"
        assert not jobs
    else:
        # Accepted for preview: the preview lists the problems; applying imports nothing bad.
        assert response.status_code == 302 and len(jobs) == 1
        applied = client.post(f"/catalog/import/{jobs[0].pk}/apply/")
        assert applied.status_code < 500
    assert not Item.objects.exclude(external_id__in=["m1", "m2"]).exists()
    for item in Item.objects.all():
        assert len(item.title) <= Item._meta.get_field("title").max_length


def test_a_latin1_catalog_file_imports_with_its_accents(client_as):
    client = client_as("editor")
    data = "external_id,title\nm1,Été à Paris\n".encode("latin-1")
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile("items.csv", data)})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.summary.get("encoding") == "latin-1"


def test_an_import_over_the_size_limit_is_refused_before_reading(client_as, settings):
    settings.CATALOG_IMPORT_MAX_BYTES = 1024
    data = b"external_id,title\n" + b"m1,One\n" * 1000
    response = client_as("editor").post("/catalog/import/", {"file": SimpleUploadedFile("items.csv", data)})
    assert response.status_code == 400
    assert "limit" in str(response.context["form"].errors["file"])
    assert not ImportJob.objects.exists()


# --- Static segment uploads ----------------------------------------------------------------------

SEGMENT_CASES = {
    "utf16": "user_id\nu001\n".encode("utf-16"),
    "cp1252": "user_id\n\u201cu001\u201d\n".encode("cp1252"),
    "binary": bytes(range(256)) * 64,
    "long-line": f"user_id\n{LONG}\n".encode(),
    "unbalanced-quote": b'user_id\n"u001\nu002\n',
    "json-instead-of-csv": json.dumps({"user_ids": ["u001"]}).encode(),
}


@pytest.mark.parametrize("case", sorted(SEGMENT_CASES))
def test_static_segment_uploads_refuse_hostile_files_without_a_half_saved_segment(client_as, case):
    Profile.objects.bulk_create([Profile(external_id=f"u{i:03d}") for i in range(3)])
    client = client_as("marketer")
    form = {"name": "Upload", "key": f"upload-{case}", "kind": "static", "description": ""}
    response = client.post(
        "/segments/new/", {**form, "upload": SimpleUploadedFile("ids.csv", SEGMENT_CASES[case])}
    )
    assert response.status_code < 500
    segment = Segment.objects.filter(key=f"upload-{case}").first()
    if response.status_code == 302:
        # Accepted: whatever matched is a member; nothing else was invented.
        assert segment is not None
        assert not Profile.objects.exclude(external_id__in=["u000", "u001", "u002"]).exists()
    else:
        assert response.context["form"].errors.get("upload"), "the upload field says what is wrong"
        assert segment is None, "a refused upload leaves no half-saved segment"
        assert not SegmentMembership.objects.exists()


def test_a_latin1_segment_upload_matches_its_ids(client_as):
    Profile.objects.create(external_id="josé")
    form = {"name": "Latin", "key": "latin", "kind": "static", "description": ""}
    data = "user_id\njosé\n".encode("latin-1")
    response = client_as("marketer").post(
        "/segments/new/", {**form, "upload": SimpleUploadedFile("ids.csv", data)}
    )
    assert response.status_code == 302
    assert SegmentMembership.objects.filter(segment__key="latin", profile__external_id="josé").exists()


# --- import_events ------------------------------------------------------------------------------------

GOOD_ROW = "u1,m1,Video Playback Started,,2026-01-01T00:00:00Z\n"
EVENT_CASES = {
    "utf16.csv": ("user_id,item_id,event,value,timestamp\n" + GOOD_ROW).encode("utf-16"),
    "latin1.csv": ("user_id,item_id,event,value,timestamp\n" + GOOD_ROW.replace("u1", "josé")).encode(
        "latin-1"
    ),
    "long-field.csv": f"user_id,item_id,event,value,timestamp\nu1,m1,{LONG},,\n".encode(),
    "missing-columns.csv": b"user,thing\nu1,m1\n",
    "binary.ndjson": bytes(range(256)) * 64,
    "truncated.ndjson": b'{"type": "track", "userId": "u1", "event": "Play"',
    "deep.ndjson": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "not-objects.ndjson": b"[1, 2]\n42\n",
}


@pytest.mark.parametrize("case", sorted(EVENT_CASES))
def test_import_events_refuses_hostile_files_with_a_command_error_not_a_traceback(db, tmp_path, case):
    path = tmp_path / case
    path.write_bytes(EVENT_CASES[case])
    try:
        call_command("import_events", str(path), "--strict", stdout=_Sink(), stderr=_Sink())
    except CommandError as exc:
        assert str(exc), "the error says what is wrong"
        assert Event.objects.count() == 0, "a strict import that fails on its first chunk writes nothing"
    else:
        assert case == "latin1.csv" or Event.objects.count() == 0


class _Sink:
    def write(self, text):
        pass

    def flush(self):
        pass
