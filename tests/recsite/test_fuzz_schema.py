"""Property-based fuzzing of every API operation from our own OpenAPI schema (schemathesis).

Each operation gets a bounded number of generated requests (FUZZ_EXAMPLES, default 15), sent
in-process through the WSGI application as a signed-in admin (so requests get past permissions
and reach validation) and as an anonymous client. The checks: no 5xx, and responses (status
codes, bodies) conform to the schema. See docs/security.md.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))

# Bugs the fuzzer found that are not fixed yet: operation name -> what fails. Each one is a
# real defect to fix (then delete its line); they are listed in docs/security.md.
KNOWN_BUGS = {
    "POST /api/v1/recommenders": "multipart 'params=null' gets a response that violates the schema",
}

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).exclude(name=list(KNOWN_BUGS))


@pytest.fixture
def admin_token(personas):
    from recsite.tokens import token_create

    return token_create(user=personas["admin"], name="fuzz")[1]


@pytest.mark.fuzz
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_api_never_answers_5xx_and_keeps_to_its_schema(case, admin_token, settings_throttle_off):
    case.call_and_validate(
        headers={"Authorization": f"Token {admin_token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )


@pytest.fixture
def settings_throttle_off(monkeypatch):
    from rest_framework.throttling import UserRateThrottle

    # Hundreds of generated requests a minute from one client are the point here.
    monkeypatch.setattr(UserRateThrottle, "allow_request", lambda self, request, view: True)


@pytest.fixture(autouse=True)
def _keep_the_test_database_open():
    """As django.test.Client does: the WSGI handler would close the connection of the test
    transaction at the end of every request."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# --- Upload fuzzing: the catalog import ------------------------------------------------------

UPLOADS = {
    "empty.csv": b"",
    "header-only.csv": b"external_id,title\n",
    "binary.csv": bytes(range(256)) * 64,
    "utf16.csv": "external_id,title\nm1,Amélie\n".encode("utf-16"),
    "latin1.csv": "external_id,title\nm1,Amélie\n".encode("latin-1"),
    "bom.csv": "\ufeffexternal_id,title\nm1,A\n".encode(),
    "ragged.csv": b'external_id,title\nm1\nm2,"unterminated\nm3,a,b,c,d\n',
    "long-line.csv": b"external_id,title\nm1," + b"x" * 2_000_000 + b"\n",
    "many-columns.csv": b",".join(b"c%d" % i for i in range(5000)) + b"\n",
    "nul.csv": b"external_id,title\nm1,a\x00b\n",
    "bad.json": b'{"items": [',
    "wrong-shape.json": b'{"items": {"a": 1}}',
    "scalar.json": b"42",
    "deep.json": b"[" * 5000 + b"]" * 5000,
    "no-extension": b"external_id,title\nm1,A\n",
}


@pytest.mark.parametrize("name", sorted(UPLOADS))
def test_malformed_catalog_uploads_get_a_clear_answer_not_a_server_error(client_as, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_as("editor")
    client.raise_request_exception = False
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile(name, UPLOADS[name])})
    assert response.status_code in (200, 302, 400), response.status_code


def test_an_upload_over_the_size_limit_is_refused(client_as, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.CATALOG_IMPORT_MAX_BYTES = 1024
    client = client_as("editor")
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile("big.csv", b"a,b\n" * 1000)})
    assert response.status_code == 400
    assert "limit" in response.content.decode()


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b"null", b'{"batch": "x"}', b'{"batch": [1, null, "x"]}', b"\xff\xfe", b"[" * 5000],
)
def test_malformed_tracking_bodies_get_4xx_not_5xx(client, db, body):
    import base64

    from personalization import tracking

    _, key = tracking.write_key_create(source_name="web")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    client.raise_request_exception = False
    for url in ("/api/v1/track", "/api/v1/batch"):
        response = client.generic("POST", url, body, content_type="application/json", HTTP_AUTHORIZATION=auth)
        assert response.status_code < 500, (url, body[:20], response.status_code)
