"""The broker stopped for a while (a private redis-server of this test, stopped and restarted on
the same port with its append-only file).

While it is down, tracking ingestion and serving go on, and a training request and a segment
refresh are accepted; once it is back, the work queued before the outage and the work
requested during it all run (the refresh from the outbox, recsite/outbox.py), and nothing is
lost. Runs on SQLite or PostgreSQL; needs ``redis-server``.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.db import transaction

from personalization import services, tracking
from personalization.models import Event, Recommender, Segment, SegmentRefresh, TrainingRun
from recsite import outbox
from recsite.celery import app as celery_app
from recsite.models import OutboxTask
from tests import factories

from .conftest import broker_use, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def batch(n: int, start: int, users) -> dict:
    return {
        "batch": [
            {
                "type": "track",
                "event": "Video Playback Started",
                "userId": users[(start + i) % len(users)].external_id,
                "messageId": f"outage-{start + i}",
                "properties": {"content_asset_id": "m001"},
            }
            for i in range(n)
        ]
    }


def test_ingestion_and_serving_go_on_while_the_broker_is_down_and_queued_work_resumes(
    private_redis, restore_broker, real_worker, client_as, client, settings
):
    items = factories.items(8)
    users = factories.profiles(10)
    factories.events([(u, items[(n + k) % 8], "play") for n, u in enumerate(users) for k in range(3)])
    first = Recommender.objects.create(name="trending", algorithm="trending")
    second = Recommender.objects.create(name="trending-7d", algorithm="trending", params={"window_days": 7})
    players = Segment.objects.create(
        key="players", name="Players", kind=Segment.Kind.DYNAMIC,
        rule={"version": 1, "root": {"op": "and", "not": False, "conditions": [
            {"kind": "performed", "event": "play", "last_days": 30},
        ]}},
    )  # fmt: skip
    active = services.training_run_request(recommender=first)  # eager (no worker yet): active model
    assert TrainingRun.objects.get(pk=active.pk).status == "succeeded"
    _, write_key = tracking.write_key_create(source_name="web")
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    marketer = client_as("marketer")

    # Work queued while the broker is up but no worker runs: the message waits in Redis.
    broker_use(private_redis.url)
    celery_app.conf.task_always_eager = False
    before = marketer.post(f"/api/v1/recommenders/{first.pk}/train")
    assert before.status_code == 202, before.content

    private_redis.stop()
    assert not private_redis.answers()

    # Broker down: tracking is stored, recommendations are served, a training request is
    # accepted (the run stays queued) instead of failing with a 500.
    stored_before = Event.objects.count()
    for start in range(0, 60, 20):
        response = client.post(
            "/api/v1/batch", data=json.dumps(batch(20, start, users)), content_type="application/json",
            HTTP_AUTHORIZATION=basic,
        )  # fmt: skip
        assert response.status_code == 200, response.content
        assert response.json()["stored"] == 20
    assert Event.objects.count() == stored_before + 60
    recs = marketer.get("/api/v1/recommendations", {"user_id": users[0].external_id, "k": 3})
    assert recs.status_code == 200 and recs.json()["version"] == active.version
    during = marketer.post(f"/api/v1/recommenders/{second.pk}/train")
    assert during.status_code == 202, during.content
    assert TrainingRun.objects.get(pk=during.json()["id"]).status == "queued"
    # A segment refresh is accepted too: its message waits in the outbox.
    refresh = marketer.post(f"/api/v1/segments/{players.pk}/refresh")
    assert refresh.status_code == 202, refresh.content
    assert list(OutboxTask.objects.values_list("task", "args")) == [
        ("personalization.tasks.segment_refresh", [players.pk, "api"])
    ]

    # A worker started during the outage waits for the broker instead of exiting.
    worker = real_worker(broker_url=private_redis.url, name="worker-outage")
    private_redis.start()

    # The reaper (beat, every 5 minutes) sends again the run whose message never left, and the
    # outbox resend (beat, every minute) the refresh.
    settings.TRAINING_REQUEUE_AFTER_SECONDS = 0
    settings.OUTBOX_RESEND_AFTER_SECONDS = 0
    with transaction.atomic():
        services.training_runs_reap_stale()
    assert outbox.outbox_resend() == 1
    assert not OutboxTask.objects.exists()

    def finished():
        assert worker.alive(), f"the worker exited:\n{worker.output()}"
        runs = TrainingRun.objects.filter(pk__in=[before.json()["id"], during.json()["id"]])
        refreshed = SegmentRefresh.objects.filter(segment=players, status__in=("succeeded", "failed"))
        return all(r.status in ("succeeded", "failed") for r in runs) and refreshed.exists()

    wait_for(
        finished, timeout=180, what="both queued runs and the refresh to finish after the outage", interval=1
    )
    for run_id in (before.json()["id"], during.json()["id"]):
        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == "succeeded", f"{run.error}\n{worker.output()}"
    # Nothing lost, nothing doubled: every tracked event once, one run per request.
    assert Event.objects.filter(message_id__startswith="outage-").count() == 60
    assert TrainingRun.objects.filter(recommender=second).count() == 1
    done = SegmentRefresh.objects.get(segment=players)
    assert (done.status, done.trigger, done.size) == ("succeeded", "api", 10), done.error
