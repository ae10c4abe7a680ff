from datetime import timedelta

from celery import shared_task
from django.conf import settings


@shared_task(name="recsite.tasks.impact_refresh")
def impact_refresh() -> int | None:
    """Recompute the recent days of the business-impact figures (beat, every 15 minutes)."""
    from . import impact

    impact.impact_refreshes_reap(stale_after=timedelta(seconds=settings.TRAINING_STALE_AFTER_SECONDS))
    impact.impressions_flush()  # the impressions still buffered in Redis count too
    try:
        return impact.impact_refresh().rows
    except impact.ImpactBusy:
        return None  # the running refresh covers the same days


@shared_task(name="recsite.tasks.impressions_flush")
def impressions_flush() -> int:
    """Move the impressions buffered in Redis into the table (beat, every few seconds)."""
    from . import impact

    return impact.impressions_flush()


@shared_task(name="recsite.tasks.outbox_resend")
def outbox_resend() -> int:
    """Send again the task messages the broker missed (beat, every minute)."""
    from . import outbox

    return outbox.outbox_resend()
