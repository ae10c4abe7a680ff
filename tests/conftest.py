"""Shared test set-up: fast hashing, eager Celery by default, and the personas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from recsite.celery import app as celery_app

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Serving reloads its configuration on every request, so that a test may edit and serve
    # at once; tests/personalization/test_servecache.py covers the cached behaviour.
    settings.SERVING_CACHE_SECONDS = 0
    # Unit tests run tasks inline; integration tests switch this off to use a real worker.
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing, but fail in CI where it must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def personas(db):
    """One user per role plus an outsider with no role. Password: "pw"."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from recsite.services import roles_sync

    roles_sync()
    user_model = get_user_model()
    users = {}
    for name, role in [
        ("admin", "Admin"),
        ("editor", "Editor"),
        ("marketer", "Marketer"),
        ("analyst", "Analyst"),
    ]:
        user = user_model.objects.create_user(name, password="pw", is_staff=role == "Admin")
        user.groups.add(Group.objects.get(name=role))
        users[name] = user
    users["outsider"] = user_model.objects.create_user("outsider", password="pw")
    return users


@pytest.fixture
def client_as(client, personas):
    """``client_as("marketer")`` returns the test client logged in as that persona."""

    def login(name: str):
        client.force_login(personas[name])
        return client

    return login


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (ids restart in a new test database)."""
    from django.core.cache import cache

    from personalization import servecache, serving

    cache.clear()
    serving._LOADED.clear()  # run ids restart in each test's database
    servecache.serving_cache_clear()
    yield
