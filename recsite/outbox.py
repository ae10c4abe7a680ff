"""A transactional outbox for task messages (docs/operations.md, "The broker is down").

``enqueue(task, *args, **kwargs)`` writes the message as a row in the caller's transaction and,
after commit, sends it to the broker and deletes the row. When the broker cannot be reached, the
row stays with the error, the request goes on as if the message had left, and the beat task
``outbox-resend`` sends the row again once it is older than ``OUTBOX_RESEND_AFTER_SECONDS``. A
rolled-back transaction leaves neither row nor message.

A message may go out twice (sent by the commit hook while the resend takes the same row, or sent
but its row not deleted): the tasks are idempotent through their data, as they must be anyway
for the broker's own redeliveries (tests/faults/test_duplicate_delivery.py).

With ``CELERY_TASK_ALWAYS_EAGER`` (development, unit tests) sending runs the task inline; the
row is deleted first, since an error of the task is the task's own, not the broker's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import Task
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min
from django.utils import timezone

from .celery import app
from .models import OutboxTask

logger = logging.getLogger(__name__)


def enqueue(task: Task, *args, **kwargs) -> OutboxTask:
    """Send ``task(*args, **kwargs)`` once the current transaction commits, surviving a broker
    outage. Arguments must be JSON (primary keys, short strings), as for any task message."""
    row = OutboxTask.objects.create(task=task.name, args=list(args), kwargs=kwargs)
    transaction.on_commit(lambda: outbox_send(row=row), robust=True)
    return row


def outbox_send(*, row: OutboxTask) -> bool:
    """Publish one row's message and delete the row. On a broker error, record it on the row
    and return False; never raises for the broker."""
    task = _task(row.task)
    if app.conf.task_always_eager and task is not None:
        OutboxTask.objects.filter(pk=row.pk).delete()
        task.apply_async(args=row.args, kwargs=row.kwargs)
        return True
    try:
        if task is None:  # a task no longer defined: the worker decides (routing is by name)
            app.send_task(row.task, args=row.args, kwargs=row.kwargs)
        else:
            task.apply_async(args=row.args, kwargs=row.kwargs)
    except Exception as exc:  # whatever stopped the message, the row keeps it
        logger.warning("could not send %s #%s; it waits in the outbox: %s", row.task, row.pk, exc)
        OutboxTask.objects.filter(pk=row.pk).update(
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            last_attempt_at=timezone.now(),
        )
        return False
    OutboxTask.objects.filter(pk=row.pk).delete()
    return True


def _task(name: str) -> Task | None:
    if name not in app.tasks:
        app.loader.import_default_modules()  # every app's tasks module (autodiscovery)
    return app.tasks.get(name)


def outbox_resend(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Send again the messages waiting longer than OUTBOX_RESEND_AFTER_SECONDS, oldest first;
    stop at the first failure (the broker is still down). Returns how many were sent.

    The rows are locked with SKIP LOCKED (PostgreSQL), so two resends running at once send
    different rows; SQLite has one writer at a time anyway."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OUTBOX_RESEND_AFTER_SECONDS)
    sent = 0
    with transaction.atomic():
        waiting = (
            OutboxTask.objects.select_for_update(skip_locked=True)
            .filter(created_at__lte=cutoff)
            .order_by("created_at", "pk")[:limit]
        )
        for row in waiting:
            if not outbox_send(row=row):
                break
            sent += 1
    if sent:
        logger.info("sent %s message(s) from the outbox", sent)
    return sent


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest: datetime | None


def outbox_backlog() -> Backlog:
    """How many messages wait for the broker, and since when (the Jobs page)."""
    figures = OutboxTask.objects.aggregate(count=Count("pk"), oldest=Min("created_at"))
    return Backlog(figures["count"], figures["oldest"])
