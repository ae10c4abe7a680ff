"""A real Celery worker process, on the configured broker and database, runs a training
run end to end: queued -> running -> succeeded, visible through the API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from recsite.celery import app as celery_app
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker():
    celery_app.conf.task_always_eager = False
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    cmd = [
        sys.executable, "-m", "celery", "-A", "recsite", "worker", "--loglevel", "INFO",
        "--queues", "default,heavy", "--concurrency", "1", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    log = open(settings.VAR_DIR / "integration-worker.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        celery_app.conf.task_always_eager = True
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def worker_output(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-5000:]


def test_a_real_worker_trains_a_recommender_end_to_end(worker, client_as):
    proc, log = worker
    items = factories.items(6)
    users = factories.profiles(8)
    factories.events([(u, items[(n + k) % 6], "play") for n, u in enumerate(users) for k in range(3)])
    recommender = factories.trending()
    client = client_as("marketer")

    response = client.post(f"/api/v1/recommenders/{recommender.pk}/train")
    assert response.status_code == 202
    run = response.json()
    assert run["status"] == "queued"

    seen = [run["status"]]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the worker exited:\n{worker_output(log)}"
        run = client.get(f"/api/v1/training-runs/{run['id']}").json()
        if run["status"] != seen[-1]:
            seen.append(run["status"])
        if run["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert run["status"] == "succeeded", f"{run}\n{worker_output(log)}"
    assert seen[0] == "queued"
    assert run["started_at"] and run["finished_at"] and run["started_at"] <= run["finished_at"]
    assert run["progress"] == 100
    assert "ndcg@10" in run["metrics"]

    recs = client.get("/api/v1/recommendations", {"user_id": users[0].external_id, "k": 3})
    assert recs.status_code == 200
    assert recs.json()["version"] == run["version"]
    assert len(recs.json()["results"]) == 3
