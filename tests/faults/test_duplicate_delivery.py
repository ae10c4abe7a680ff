"""A task delivered twice (at-least-once delivery: a redelivered message after a lost ack, a
retried publish) must not duplicate its results. Each message is really sent twice to a real
worker on the configured broker: a training run, a segment refresh, an experiment analysis.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from experiments import services as experiment_services
from experiments.models import AnalysisSnapshot, VariantResult
from experiments.tasks import experiment_analyze
from personalization import services
from personalization.models import (
    Event,
    Profile,
    Recommender,
    Segment,
    SegmentMembership,
    SegmentRefresh,
    Source,
    TrainingRun,
)
from personalization.tasks import segment_refresh, training_run_execute
from recsite.models import AuditEntry
from tests import factories
from tests.experiments import builders

from .conftest import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def settled(results, worker, what: str) -> None:
    def done():
        assert worker.alive(), f"the worker exited:\n{worker.output()}"
        return all(r.ready() for r in results)

    wait_for(done, timeout=180, what=what, interval=0.5)
    for r in results:
        assert r.successful(), f"{r.result!r}\n{worker.output()}"


def test_each_task_delivered_twice_produces_its_result_once(real_worker):
    # A training run.
    items = factories.items(8)
    users = factories.profiles(10)
    factories.events([(u, items[(n + k) % 8], "play") for n, u in enumerate(users) for k in range(3)])
    recommender = factories.trending()
    # A dynamic segment of the profiles on the gold plan.
    Profile.objects.filter(pk__in=[u.pk for u in users[:4]]).update(traits={"plan": "gold"})
    rule = {"kind": "trait", "field": "plan", "op": "eq", "value": "gold"}
    segment = Segment.objects.create(
        key="gold",
        name="Gold",
        rule={"version": 1, "root": {"op": "and", "not": False, "conditions": [rule]}},
    )
    # A running experiment with exposures and conversions.
    experiment = builders.experiment(key="dup-home", start=True)
    people = Profile.objects.bulk_create([Profile(external_id=f"dup-{i}") for i in range(40)])
    now = timezone.now() - timedelta(hours=2)
    experiment_services.experiment_assign_many(key=experiment.key, profiles=people, now=now)
    source, _ = Source.objects.get_or_create(name="dup")
    Event.objects.bulk_create(
        [
            Event(source=source, message_id=f"dup-c{p.pk}", name="complete", type="complete", profile=p,
                  timestamp=now + timedelta(minutes=5), received_at=now + timedelta(minutes=5))
            for p in people[::3]
        ]
    )  # fmt: skip

    worker = real_worker(name="worker-dup")
    run = services.training_run_request(recommender=recommender)  # sent once on commit...
    as_of = timezone.now().replace(microsecond=0).isoformat()
    sent = [
        training_run_execute.delay(run.pk),  # ...and delivered a second time
        segment_refresh.delay(segment.pk, "schedule"),
        segment_refresh.delay(segment.pk, "schedule"),
        experiment_analyze.delay(experiment.pk, as_of, "schedule"),
        experiment_analyze.delay(experiment.pk, as_of, "schedule"),
    ]
    settled(sent, worker, "the duplicated tasks")
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"),
        timeout=120,
        what="the training run",
    )

    # Training: one run, one model, activated once.
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert TrainingRun.objects.filter(recommender=recommender).count() == 1
    assert Recommender.objects.get(pk=recommender.pk).active_run_id == run.pk
    assert AuditEntry.objects.filter(action="model.activate", target_id=str(run.pk)).count() == 1

    # Segment: each member has one open stay; entries are counted once over both refreshes.
    refreshes = SegmentRefresh.objects.filter(segment=segment, status="succeeded")
    assert refreshes.count() >= 1
    assert sum(r.entered for r in refreshes) == 4
    open_stays = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
    assert open_stays.count() == 4
    assert open_stays.values("profile").distinct().count() == 4

    # Analysis: one snapshot for the as-of time, one result row per metric and variant.
    snapshots = AnalysisSnapshot.objects.filter(experiment=experiment)
    assert snapshots.count() == 1
    assert (
        VariantResult.objects.filter(snapshot__experiment=experiment).count() == experiment.variants.count()
    )
