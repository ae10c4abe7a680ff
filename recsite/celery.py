"""The Celery application. Settings come from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")

app = Celery("recsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _limit_native_threads(**_kwargs) -> None:
    """One BLAS/OpenMP thread per worker process: concurrency comes from processes."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ.get("WORKER_NATIVE_THREADS", "1")))
