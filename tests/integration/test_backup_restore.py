"""Backup and restore as docs/operations.md describes them (PostgreSQL): pg_dump a populated
database, pg_restore it into a new database, and check the product works from the copy:
no migration left to apply, recommendations served from the restored model, sign-in with
the restored password, an API token that still authenticates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from personalization import services
from personalization.models import TrainingRun
from recsite.tokens import token_create
from tests import factories
from tests.conftest import need

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import json
from django.test import Client
from catalog.models import Item
client = Client()
out = {"login": client.login(username="marketer", password="pw")}
r = client.get("/api/v1/recommendations", {"user_id": "u000", "k": 3})
out["recs_status"] = r.status_code
out["recs"] = r.json()
r = Client().get("/api/v1/items", HTTP_AUTHORIZATION="Token " + TOKEN)
out["token_status"] = r.status_code
out["items"] = Item.objects.count()
print("RESULT" + json.dumps(out))
"""


def test_a_dumped_and_restored_database_serves_signs_in_and_needs_no_migration(personas, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("backup and restore are tested on PostgreSQL (DATABASE_URL=postgres://...)")
    need(
        bool(shutil.which("pg_dump") and shutil.which("pg_restore")),
        "pg_dump and pg_restore are not installed",
    )
    items = factories.items(8)
    users = factories.profiles(10)
    factories.events([(u, items[(n + k) % 8], "play") for n, u in enumerate(users) for k in range(3)])
    run = services.training_run_request(recommender=factories.trending())  # eager
    assert TrainingRun.objects.get(pk=run.pk).status == "succeeded"
    _, token = token_create(user=personas["analyst"], name="backup test")
    # The tests hash passwords with MD5 for speed; the restored copy runs with the real hashers.
    hasher = PBKDF2PasswordHasher()
    personas["marketer"].password = hasher.encode("pw", hasher.salt(), iterations=1000)
    personas["marketer"].save()

    db = connection.settings_dict
    conninfo = {
        "PGHOST": db["HOST"] or "127.0.0.1",
        "PGPORT": str(db["PORT"] or 5432),
        "PGUSER": db["USER"] or "postgres",
        **({"PGPASSWORD": db["PASSWORD"]} if db["PASSWORD"] else {}),
    }
    env = {**os.environ, **conninfo}
    source, copy = db["NAME"], f"{db['NAME']}_restored"
    dump = tmp_path / "recsite.dump"

    def run_tool(*cmd: str) -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stderr}"

    run_tool("pg_dump", "--format=custom", f"--file={dump}", f"--dbname={source}")
    run_tool("dropdb", "--if-exists", "--force", copy)
    run_tool("createdb", copy)
    try:
        run_tool("pg_restore", "--no-owner", f"--dbname={copy}", str(dump))
        user, password = conninfo["PGUSER"], f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        url = f"postgres://{user}{password}@{conninfo['PGHOST']}:{conninfo['PGPORT']}/{copy}"
        child = {**os.environ, "DATABASE_URL": url}

        migrations = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--check"],
            cwd=ROOT,
            env=child,
            capture_output=True,
            text=True,
        )
        assert migrations.returncode == 0, f"unapplied migrations after restore:\n{migrations.stdout}"

        check = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", f"TOKEN = {token!r}\n{CHECK}"],
            cwd=ROOT, env=child, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        line = next((x for x in check.stdout.splitlines() if x.startswith("RESULT")), None)
        assert line, f"the check did not run:\n{check.stdout}\n{check.stderr}"
        result = json.loads(line[len("RESULT") :])
        assert result["login"] is True, "the restored password signs in"
        assert result["recs_status"] == 200
        assert result["recs"]["version"] == run.version
        assert len(result["recs"]["results"]) == 3
        assert result["token_status"] == 200, "a token issued before the backup still works"
        assert result["items"] == 8
    finally:
        run_tool("dropdb", "--if-exists", "--force", copy)
