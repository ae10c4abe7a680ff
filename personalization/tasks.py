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


@shared_task(name="personalization.tasks.segment_refresh")
def segment_refresh(segment_id: int, trigger: str = "manual") -> int | None:
    from . import segments
    from .models import Segment

    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return None
    try:
        return segments.segment_refresh(segment=segment, trigger=trigger).size
    except segments.SegmentBusy:
        return None  # the running refresh will produce the same result


@shared_task(name="personalization.tasks.segments_refresh_due")
def segments_refresh_due() -> int:
    from django.conf import settings

    from . import segments

    due = segments.segments_refresh_due(stale_after_seconds=settings.SEGMENTS_REFRESH_STALE_SECONDS)
    for segment_id in due:
        segment_refresh.delay(segment_id, "schedule")
    return len(due)


@shared_task(name="personalization.tasks.segment_webhooks_dispatch")
def segment_webhooks_dispatch(refresh_id: int) -> int:
    from . import webhooks
    from .models import SegmentRefresh

    refresh = SegmentRefresh.objects.select_related("segment").filter(pk=refresh_id).first()
    if refresh is None:
        return 0
    pending = webhooks.webhooks_dispatch(refresh=refresh)
    for delivery_id in pending:
        segment_webhook_deliver.delay(delivery_id)
    return len(pending)


@shared_task(name="personalization.tasks.segment_webhook_deliver")
def segment_webhook_deliver(delivery_id: int) -> str:
    from . import webhooks

    wait = webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
    if wait is not None:
        segment_webhook_deliver.apply_async((delivery_id,), countdown=wait)
    return "retry" if wait is not None else "done"


@shared_task(name="personalization.tasks.segment_webhooks_retry_due")
def segment_webhooks_retry_due() -> int:
    from . import webhooks

    due = webhooks.webhook_deliveries_due()
    for delivery_id in due:
        segment_webhook_deliver.delay(delivery_id)
    return len(due)


@shared_task(name="personalization.tasks.segment_discovery_execute")
def segment_discovery_execute(job_id: int) -> str:
    from . import segments

    return segments.discovery_job_execute(job_id=job_id).status
