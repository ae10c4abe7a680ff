"""`manage.py import_events` SIGKILLed in the middle of a file.

The rerun must store exactly the rest: every event once, every interaction counted once, the
checkpoint at the last line with no committed range left over. On PostgreSQL the CSV goes
set-based with two writers that commit chunks out of order (docs/tracking.md, "Bulk
import"), so the kill usually leaves committed ranges beyond the checkpoint's line; on
SQLite the row-by-row path commits in file order.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest
from django.db.models import Sum

from catalog.models import Item
from personalization.models import Event, ImportCheckpoint, Interaction, Profile

from .conftest import Proc, database_url, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ROWS = 60_000
USERS = 3_000


def _csv(path) -> None:
    with path.open("w") as out:
        out.write("user_id,item_id,event,value,timestamp\n")
        for n in range(ROWS):
            rating = f"{1 + n % 5}" if n % 4 == 0 else ""
            event = "rate" if rating else "play"
            out.write(f"u{(n * 7919) % USERS},m{n % 50},{event},{rating},{1_760_000_000 + n}\n")


def _import(path, name: str) -> Proc:
    env = {**os.environ, "DATABASE_URL": database_url(), "LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "manage.py", "import_events", str(path), "--chunk-size", "1000", "--writers", "2"]
    return Proc(name, cmd, env)


def test_an_import_killed_mid_file_is_completed_exactly_by_a_rerun(tmp_path):
    Item.objects.bulk_create([Item(external_id=f"m{n}", title=f"M{n}") for n in range(50)])
    path = tmp_path / "events.csv"
    _csv(path)

    first = _import(path, "import-killed")
    try:
        wait_for(
            lambda: Event.objects.count() >= ROWS // 4 or not first.alive(),
            timeout=120,
            what="a quarter of the events to be stored",
            interval=0.05,
        )
        assert first.alive(), f"the import ended before it could be killed:\n{first.output()}"
        first.kill(signal.SIGKILL)
    finally:
        first.stop()
    stored = Event.objects.count()
    assert 0 < stored < ROWS
    checkpoint = ImportCheckpoint.objects.get()
    # Everything the checkpoint covers is stored, and nothing it does not (line 1 is the header).
    covered = max(checkpoint.line - 1, 0) + sum(b - a + 1 for a, b in checkpoint.pending)
    assert covered == stored

    rerun = _import(path, "import-rerun")
    wait_for(lambda: not rerun.alive(), timeout=180, what="the rerun to finish")
    output = rerun.output()
    rerun.stop()
    assert rerun.popen.returncode == 0, output
    assert f"Done: {ROWS - stored:,} stored, 0 duplicates, 0 rejected" in output

    assert Event.objects.count() == ROWS
    assert Event.objects.values("source_id", "message_id").distinct().count() == ROWS
    assert Interaction.objects.aggregate(n=Sum("count"))["n"] == ROWS
    assert Profile.objects.count() == USERS
    checkpoint.refresh_from_db()
    assert (checkpoint.line, checkpoint.pending, checkpoint.stored) == (ROWS + 1, [], ROWS)
    # Strengths are what the events add up to: 1 per play, (rating - 3) per rating.
    expected = sum(1.0 if n % 4 else (1 + n % 5) - 3.0 for n in range(ROWS))
    assert Interaction.objects.aggregate(s=Sum("strength"))["s"] == pytest.approx(expected)
