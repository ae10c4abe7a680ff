from datetime import datetime

from celery import shared_task
from django.utils import timezone

from . import modes, services


@shared_task(name="experiments.tasks.experiment_analyze")
def experiment_analyze(experiment_id: int, as_of: str | None = None, trigger: str = "manual") -> int:
    """Idempotent: the snapshot is keyed by (experiment, phase, as_of), so a retry overwrites it."""
    when = datetime.fromisoformat(as_of) if as_of else None
    return services.experiment_analyze(experiment_id=experiment_id, as_of=when, trigger=trigger).pk


@shared_task(name="experiments.tasks.experiments_analyze_running")
def experiments_analyze_running() -> int:
    # Truncated to the hour: a re-delivered beat message recomputes the same snapshots.
    as_of = timezone.now().replace(minute=0, second=0, microsecond=0).isoformat()
    ids = services.experiments_analyze_due()
    for experiment_id in ids:
        experiment_analyze.delay(experiment_id, as_of, "schedule")
    return len(ids)


@shared_task(name="experiments.tasks.bandit_update")
def bandit_update(experiment_id: int, now: str | None = None) -> int:
    """Idempotent: the allocation is keyed by (experiment, phase, minute), so a retry overwrites it."""
    from .models import Experiment

    when = datetime.fromisoformat(now) if now else None
    experiment = Experiment.objects.get(pk=experiment_id)
    return modes.bandit_update(experiment=experiment, now=when).pk


@shared_task(name="experiments.tasks.bandits_update_running")
def bandits_update_running() -> int:
    """Beat: recompute the posteriors of every running bandit (one task each)."""
    now = timezone.now().replace(second=0, microsecond=0).isoformat()
    ids = modes.bandits_update_due()
    for experiment_id in ids:
        bandit_update.delay(experiment_id, now)
    return len(ids)
