from datetime import datetime

from celery import shared_task
from django.utils import timezone

from . import services


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
