from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from personalization import services, serving
from personalization.models import ModelArtifact, Recommender, TrainingRun
from tests import factories


@pytest.fixture
def history(db):
    """Six users; item 0 is the hit, item 1 the runner-up, item 4 cold."""
    items = factories.items(5)
    users = factories.profiles(6)
    rows = []
    for n, user in enumerate(users):
        rows += [(user, items[0], "complete"), (user, items[0], "play")]
        if n % 2 == 0:
            rows.append((user, items[1], "play"))
        rows.append((user, items[2 + n % 2], "view"))
    factories.events(rows)
    return items, users


def run_training(recommender, **kwargs):
    run = services.training_run_request(recommender=recommender, **kwargs)
    return services.training_run_execute(run_id=run.pk)


def test_a_training_run_fits_evaluates_stores_and_activates_a_model(history):
    items, _ = history
    recommender = factories.trending()
    run = run_training(recommender)
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert run.progress == 100
    assert run.version == 1
    assert {"precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage"} <= set(run.metrics)
    assert run.data_sizes["interactions"] == 21
    assert set(run.timings) >= {"snapshot", "split", "fit", "evaluate", "store"}
    recommender.refresh_from_db()
    assert recommender.active_run_id == run.pk
    ranking = [pk for pk, _ in serving.run_load(run.pk).ranking]
    assert ranking[0] == items[0].pk
    assert items[4].pk not in ranking


def test_a_failed_run_records_the_error_and_leaves_the_active_model_alone(history):
    recommender = factories.trending()
    good = run_training(recommender)
    # A window that contains no events: nothing to train on.
    Recommender.objects.filter(pk=recommender.pk).update(params={"window_days": 0.000001})
    recommender.refresh_from_db()
    bad = run_training(recommender)
    assert bad.status == TrainingRun.Status.FAILED
    assert "nothing to train on" in bad.error
    assert not ModelArtifact.objects.filter(run=bad).exists()
    recommender.refresh_from_db()
    assert recommender.active_run_id == good.pk


def test_the_database_refuses_two_unfinished_runs_of_one_recommender(db):
    recommender = factories.trending()
    TrainingRun.objects.create(recommender=recommender, version=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(recommender=recommender, version=2, status=TrainingRun.Status.RUNNING)


def test_requesting_a_run_while_one_is_queued_is_refused_with_a_message(
    db, django_capture_on_commit_callbacks
):
    recommender = factories.trending()
    with django_capture_on_commit_callbacks(execute=False):
        services.training_run_request(recommender=recommender)
        with pytest.raises(services.TrainingError, match="already has a training run"):
            services.training_run_request(recommender=recommender)
    assert recommender.runs.count() == 1


def test_executing_a_run_twice_does_not_train_twice(history):
    recommender = factories.trending()
    run = run_training(recommender)
    again = services.training_run_execute(run_id=run.pk)
    assert again.status == TrainingRun.Status.SUCCEEDED
    assert ModelArtifact.objects.filter(run__recommender=recommender).count() == 1


def test_a_run_whose_worker_went_silent_is_reaped_as_failed(db, settings):
    recommender = factories.trending()
    long_ago = timezone.now() - timedelta(seconds=settings.TRAINING_STALE_AFTER_SECONDS + 60)
    stale = TrainingRun.objects.create(
        recommender=recommender, version=1, status=TrainingRun.Status.RUNNING, heartbeat_at=long_ago
    )
    assert services.training_runs_reap_stale() == 1
    stale.refresh_from_db()
    assert stale.status == TrainingRun.Status.FAILED
    assert "stopped reporting" in stale.error


def test_scheduled_recommenders_are_retrained_when_due_only(history):
    due = Recommender.objects.create(name="due", retrain_every_hours=1)
    manual = Recommender.objects.create(name="manual")
    runs = services.recommenders_retrain_due()
    assert [r.recommender_id for r in runs] == [due.pk]
    assert not manual.runs.exists()
    # The run just requested makes it not due any more.
    assert services.recommenders_retrain_due() == []


@pytest.mark.parametrize("algorithm", ["popularity", "item_knn"])
def test_metrics_undefined_on_a_tiny_history_are_stored_as_null_not_nan(history, monkeypatch, algorithm):
    # On a tiny split some metrics are undefined (NaN); PostgreSQL's jsonb refuses NaN, so the run
    # must store null instead of failing.
    from personalization import evaluation

    for name in ("evaluate_rankings", "evaluate_model"):
        real = getattr(evaluation, name)

        def nan_metrics(*args, _real=real, **kwargs):
            return {**_real(*args, **kwargs), "diversity": float("nan"), "novelty": float("inf")}

        monkeypatch.setattr(evaluation, name, nan_metrics)
    recommender = Recommender.objects.create(name=f"tiny-{algorithm}", algorithm=algorithm)
    run = run_training(recommender)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    run.refresh_from_db()
    assert run.metrics["diversity"] is None
    assert run.metrics["novelty"] is None
    assert run.metrics["users_evaluated"] > 0
