"""A Celery worker SIGKILLed in the middle of a training run.

The run must end failed within a bounded time (the reaper, TRAINING_STALE_AFTER_SECONDS), the
active model must keep serving meanwhile, and the recommender must train again afterwards.
Runs on the configured broker and database (filesystem + SQLite by default).
"""

from __future__ import annotations

import signal

import pytest

from personalization import services
from personalization.models import Recommender, TrainingRun
from personalization.tasks import training_runs_reap_stale
from recsite.models import AuditEntry
from tests import factories

from .conftest import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

STALE_SECONDS = 4


@pytest.fixture
def trained(settings):
    """A trending recommender with an active model (version 1), trained inline."""
    items = factories.items(8)
    users = factories.profiles(10)
    factories.events([(u, items[(n + k) % 8], "play") for n, u in enumerate(users) for k in range(3)])
    recommender = factories.trending()
    first = services.training_run_request(recommender=recommender)  # eager: runs now
    first.refresh_from_db()
    assert first.status == "succeeded", first.error
    recommender.refresh_from_db()
    assert recommender.active_run_id == first.pk
    return recommender, first, users


def test_a_worker_killed_mid_training_fails_the_run_and_the_active_model_keeps_serving(
    trained, real_worker, client_as, settings
):
    recommender, first, users = trained
    client = client_as("marketer")
    slow = real_worker(slow_fit_seconds=120, name="worker-killed")

    response = client.post(f"/api/v1/recommenders/{recommender.pk}/train")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]

    def fitting():
        assert slow.alive(), f"the worker exited early:\n{slow.output()}"
        run = TrainingRun.objects.get(pk=run_id)
        return run.status == "running" and run.progress >= 35

    wait_for(fitting, timeout=120, what="the worker to start fitting")
    slow.kill(signal.SIGKILL)
    assert not slow.alive()

    # While the run is orphaned, the active model serves.
    recs = client.get("/api/v1/recommendations", {"user_id": users[0].external_id, "k": 3})
    assert recs.status_code == 200
    assert recs.json()["version"] == first.version
    assert TrainingRun.objects.get(pk=run_id).status == "running", "nothing has noticed yet"

    # A fresh worker runs the reaper (beat does every 5 minutes) and the run ends failed.
    env = {"TRAINING_STALE_AFTER_SECONDS": str(STALE_SECONDS), "TRAINING_REQUEUE_AFTER_SECONDS": "3600"}
    fresh = real_worker(env=env, name="worker-fresh")

    def reaped():
        assert fresh.alive(), f"the fresh worker exited:\n{fresh.output()}"
        training_runs_reap_stale.delay()
        return TrainingRun.objects.get(pk=run_id).status == "failed"

    wait_for(reaped, timeout=STALE_SECONDS + 90, what="the reaper to fail the orphaned run", interval=2)
    run = TrainingRun.objects.get(pk=run_id)
    assert "stopped reporting" in run.error
    assert run.finished_at is not None
    recommender.refresh_from_db()
    assert recommender.active_run_id == first.pk, "the active model is unchanged"
    assert not AuditEntry.objects.filter(action="model.activate", target_id=str(run_id)).exists()
    recs = client.get("/api/v1/recommendations", {"user_id": users[0].external_id, "k": 3})
    assert recs.status_code == 200 and recs.json()["version"] == first.version

    # Retry: the recommender is free to train again, and the fresh worker trains it.
    retry = client.post(f"/api/v1/recommenders/{recommender.pk}/train")
    assert retry.status_code == 202, retry.content

    def retried():
        assert fresh.alive(), f"the fresh worker exited:\n{fresh.output()}"
        return TrainingRun.objects.get(pk=retry.json()["id"]).status in ("succeeded", "failed")

    wait_for(retried, timeout=120, what="the retried run to finish")
    run = TrainingRun.objects.get(pk=retry.json()["id"])
    assert run.status == "succeeded", f"{run.error}\n{fresh.output()}"
    assert Recommender.objects.get(pk=recommender.pk).active_run_id == run.pk
