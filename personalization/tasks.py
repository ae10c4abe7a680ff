from celery import shared_task

from . import services


@shared_task(name="personalization.tasks.training_run_execute")
def training_run_execute(run_id: int) -> str:
    return services.training_run_execute(run_id=run_id).status


@shared_task(name="personalization.tasks.training_runs_reap_stale")
def training_runs_reap_stale() -> int:
    return services.training_runs_reap_stale()


@shared_task(name="personalization.tasks.recommenders_retrain_due")
def recommenders_retrain_due() -> int:
    return len(services.recommenders_retrain_due())


@shared_task(name="personalization.tasks.events_retention_apply")
def events_retention_apply() -> int:
    from . import profiles

    return profiles.events_retention_apply()
