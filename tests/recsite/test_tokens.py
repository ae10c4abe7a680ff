"""Hashed keys: the lookup shared by API tokens and tracking write keys, and the per-process
memory of checked API tokens (SERVING_CACHE_SECONDS) that every API endpoint uses."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from personalization import tracking
from recsite import tokens
from recsite.models import ApiToken

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    settings.SERVING_CACHE_SECONDS = 60
    fake = Clock()
    monkeypatch.setattr(tokens.time, "monotonic", fake)
    tokens.token_cache_clear()
    yield fake
    tokens.token_cache_clear()


def token_queries(ctx) -> int:
    return sum(ApiToken._meta.db_table in q["sql"] for q in ctx.captured_queries)


def test_the_key_lookup_finds_active_keys_and_notes_their_use_once_a_minute(
    personas, django_assert_num_queries
):
    token, key = tokens.token_create(user=personas["analyst"], name="script")
    queryset = ApiToken.objects.select_related("user")
    with django_assert_num_queries(2):  # the token with its user, then last_used_at
        found = tokens.key_lookup(queryset, key_hash=tokens.key_hash(key), now=NOW)
    assert found == token and found.user == personas["analyst"] and found.last_used_at == NOW
    with django_assert_num_queries(1):
        tokens.key_lookup(queryset, key_hash=tokens.key_hash(key), now=NOW + timedelta(seconds=59))
    later = NOW + timedelta(seconds=60)
    with django_assert_num_queries(2):
        tokens.key_lookup(queryset, key_hash=tokens.key_hash(key), now=later)
    token.refresh_from_db()
    assert token.last_used_at == later
    assert tokens.key_lookup(queryset, key_hash=tokens.key_hash("rs_tk_other"), now=NOW) is None
    tokens.token_revoke(token=token)
    assert tokens.key_lookup(queryset, key_hash=tokens.key_hash(key), now=NOW) is None


def test_write_keys_use_the_same_lookup(db, django_assert_num_queries):
    write_key, key = tracking.write_key_create(source_name="web")
    header = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    with django_assert_num_queries(2):
        found = tracking.write_key_authenticate(authorization=header, now=NOW)
    assert found == write_key and found.source.name == "web" and found.last_used_at == NOW
    with django_assert_num_queries(1):
        tracking.write_key_authenticate(authorization=header, now=NOW + timedelta(seconds=30))
    write_key.revoked_at = NOW
    write_key.save(update_fields=["revoked_at"])
    assert tracking.write_key_authenticate(authorization=header, now=NOW) is None


def test_every_api_endpoint_remembers_a_checked_token(clock, client, personas):
    _, key = tokens.token_create(user=personas["marketer"], name="script")
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    assert client.get("/api/v1/recommenders", **auth).status_code == 200
    for url in ("/api/v1/recommenders", "/api/v1/placements", "/api/v1/training-runs"):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url, **auth).status_code == 200
        assert token_queries(ctx) == 0, url
        # Nor the user's permissions: the remembered user keeps them.
        assert not any("auth_permission" in q["sql"] for q in ctx.captured_queries), url
    clock.now += 61
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/recommenders", **auth).status_code == 200
    assert token_queries(ctx) == 1


def test_a_changed_role_applies_once_the_cache_seconds_pass(clock, client, personas):
    marketer = personas["marketer"]
    _, key = tokens.token_create(user=marketer, name="script")
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    assert client.get("/api/v1/recommenders", **auth).status_code == 200
    marketer.groups.remove(Group.objects.get(name="Marketer"))
    assert client.get("/api/v1/recommenders", **auth).status_code == 200, "remembered"
    clock.now += 61
    assert client.get("/api/v1/recommenders", **auth).status_code == 403


def test_unknown_keys_are_not_remembered_and_zero_seconds_turns_the_memory_off(
    clock, settings, client, personas
):
    assert tokens.token_authenticate_cached(key="rs_tk_unknown") is None
    token, key = tokens.token_create(user=personas["marketer"], name="script")
    assert tokens.token_authenticate_cached(key=key) == token
    settings.SERVING_CACHE_SECONDS = 0
    tokens.token_revoke(token=token)
    assert tokens.token_authenticate_cached(key=key) is None
    assert client.get("/api/v1/recommenders", HTTP_AUTHORIZATION=f"Token {key}").status_code == 403
