"""The database goes away under running web and worker processes (PostgreSQL only).

Restarting the PostgreSQL cluster is not allowed here (other databases share it), so the test
does what a restart does to recsite's processes: ``pg_terminate_backend`` on every connection
to the test database. A gunicorn web process and a Celery worker must then serve and train
again without anyone restarting them: the web process through CONN_HEALTH_CHECKS, the worker
because Celery closes its connection after each task (a task caught mid-way fails, and the
reaper fails its run). On SQLite there is no server to lose: skipped.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request

import pytest
from django.db import connection

from personalization import services
from personalization.models import Recommender, TrainingRun
from personalization.tasks import training_runs_reap_stale
from recsite.tokens import token_create
from tests import factories

from .conftest import free_port, on_postgresql, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

STALE_SECONDS = 4
SLOW_FIT_SECONDS = 6


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def post(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def terminate_connections() -> int:
    """What a database restart does to every client: their connections die."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        killed = cursor.fetchone()[0]
    connection.close()  # and this process's own, which Django reopens on next use
    return killed


def test_web_and_worker_recover_after_their_database_connections_are_terminated(
    processes, real_worker, personas
):
    if not on_postgresql():
        pytest.skip(
            "SQLite has no server whose connections can be lost; run with DATABASE_URL=postgres://..."
        )
    items = factories.items(8)
    users = factories.profiles(10)
    factories.events([(u, items[(n + k) % 8], "play") for n, u in enumerate(users) for k in range(3)])
    recommender = factories.trending()
    first = services.training_run_request(recommender=recommender)  # eager: active model
    _, token = token_create(user=personas["marketer"], name="faults")

    port = free_port()
    web = processes(
        "web",
        [sys.executable, "-m", "gunicorn", "recsite.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        {"API_THROTTLE_USER": "", "API_THROTTLE_ANON": ""},
    )
    base = f"http://127.0.0.1:{port}"

    def web_up():
        assert web.alive(), f"gunicorn exited:\n{web.output()}"
        try:
            return get(f"{base}/healthz")[0] == 200
        except OSError:
            return False

    wait_for(web_up, timeout=60, what="gunicorn to answer /healthz")
    # The worker closes its connection after each task (Celery's Django fix-up), so it holds
    # one only while it works: catch it in the middle of a (slowed) training run.
    env = {"TRAINING_STALE_AFTER_SECONDS": str(STALE_SECONDS), "TRAINING_REQUEUE_AFTER_SECONDS": "3600"}
    worker = real_worker(env=env, slow_fit_seconds=SLOW_FIT_SECONDS, name="worker-db")
    recs_url = f"{base}/api/v1/recommendations?user_id={users[0].external_id}&k=3"
    assert get(recs_url, token)[0] == 200

    def train_through_the_web() -> int:
        status, run = post(f"{base}/api/v1/recommenders/{recommender.pk}/train", token)
        assert status == 202, f"{status}\n{web.output()}"
        return run["id"]

    def run_status(run_id: int) -> str:
        assert worker.alive(), f"the worker exited:\n{worker.output()}"
        return TrainingRun.objects.get(pk=run_id).status

    interrupted = train_through_the_web()
    wait_for(
        lambda: (
            run_status(interrupted) == "running" and TrainingRun.objects.get(pk=interrupted).progress >= 35
        ),
        timeout=120,
        what="the worker to start fitting",
    )
    killed = terminate_connections()
    assert killed >= 2, "the web and worker processes held connections to terminate"

    # Every request after the loss succeeds: the web process reconnects by itself.
    for _ in range(5):
        status, body = get(recs_url, token)
        assert status == 200, f"{status}\n{web.output()}"
        assert body["version"] == first.version
    assert get(f"{base}/healthz")[0] == 200

    # The interrupted run cannot record its end over a dead connection; the task ends with an
    # error, and the reaper (beat) fails the run, which stopped reporting.
    wait_for(
        lambda: re.search(r"training_run_execute\[[^]]+\] (succeeded|raised)", worker.output(tail=None)),
        timeout=SLOW_FIT_SECONDS + 60,
        what="the interrupted task to end",
    )

    def reaped():
        if run_status(interrupted) == "running":
            training_runs_reap_stale.delay()
            return False
        return True

    wait_for(reaped, timeout=STALE_SECONDS + 60, what="the interrupted run to end", interval=2)
    assert run_status(interrupted) == "failed"
    assert Recommender.objects.get(pk=recommender.pk).active_run_id == first.pk

    # The same worker process trains again without being restarted.
    again = train_through_the_web()
    wait_for(
        lambda: run_status(again) in ("succeeded", "failed"), timeout=SLOW_FIT_SECONDS + 120, what="a new run"
    )
    done = TrainingRun.objects.get(pk=again)
    assert done.status == "succeeded", f"{done.error}\n{worker.output()}"
    assert Recommender.objects.get(pk=recommender.pk).active_run_id == done.pk
    assert get(recs_url, token)[1]["version"] == done.version
