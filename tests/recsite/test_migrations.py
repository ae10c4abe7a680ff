"""Migrations are reversible: every project app migrates to zero and back on a scratch SQLite
database (a separate file, so the test database is untouched). All of them reverse today
(data migrations as no-ops); a migration that cannot must say why in docs/operations.md and be
migrated around here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# Apps in dependency order: unapplying one unapplies the apps that depend on it first.
APPS = ("recsite", "catalog", "personalization", "experiments")


SCRIPT = """
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

APPS = {apps!r}
call_command("migrate", "--no-input", verbosity=0)
for app in reversed(APPS):
    call_command("migrate", app, "zero", "--no-input", verbosity=0)
left = MigrationRecorder(connection).migration_qs.filter(app__in=APPS).count()
assert left == 0, f"{{left}} migrations still applied after zero"
call_command("migrate", "--no-input", verbosity=0)
call_command("migrate", "--check", verbosity=0)
print("MIGRATIONS-OK")
"""


@pytest.mark.integration
def test_every_app_migrates_to_zero_and_back(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("runs once, in the SQLite pass (it uses a scratch SQLite file either way)")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'migrations.sqlite3'}"}
    # One process for the whole round trip: each Django start-up imports the full app.
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SCRIPT.format(apps=APPS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert "MIGRATIONS-OK" in done.stdout, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
