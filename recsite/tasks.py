from datetime import timedelta

from celery import shared_task
from django.conf import settings


@shared_task(name="recsite.tasks.impact_refresh")
def impact_refresh() -> int | None:
    """Recompute the recent days of the business-impact figures (beat, every 15 minutes)."""
    from . import impact

    impact.impact_refreshes_reap(stale_after=timedelta(seconds=settings.TRAINING_STALE_AFTER_SECONDS))
    try:
        return impact.impact_refresh().rows
    except impact.ImpactBusy:
        return None  # the running refresh covers the same days
