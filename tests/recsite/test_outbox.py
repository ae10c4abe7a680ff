"""The transactional outbox: with the broker down, requests that queue work still succeed, the
messages wait in the outbox, and beat's resend sends them once the broker answers again."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from celery.app.task import Task
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from catalog import imports
from catalog.models import ImportJob
from experiments.models import AnalysisSnapshot
from personalization.models import DiscoveryJob, Profile, Segment, SegmentRefresh
from recsite import outbox
from recsite.celery import app as celery_app
from recsite.models import ImpactRefresh, OutboxTask
from tests.experiments import builders

pytestmark = pytest.mark.django_db

GOLD = {
    "version": 1,
    "root": {
        "op": "and",
        "not": False,
        "conditions": [{"kind": "trait", "field": "plan", "op": "eq", "value": "gold"}],
    },
}


class FakeBroker:
    """Stands in for the broker behind every task's ``apply_async``: refuses connections while
    stopped (as kombu does when Redis is gone); once started, records each message and, like
    a worker, runs it (inline: the test suite's eager mode)."""

    def __init__(self):
        self.up = True
        self.sent: list[tuple[str, list, dict]] = []

    def stop(self):
        self.up = False
        celery_app.conf.task_always_eager = False  # a real broker, which is down

    def start(self):
        self.up = True
        celery_app.conf.task_always_eager = True


@pytest.fixture
def broker(monkeypatch):
    fake = FakeBroker()
    original = Task.apply_async

    def apply_async(task, args=None, kwargs=None, **options):
        if not fake.up:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        fake.sent.append((task.name, list(args or ()), dict(kwargs or {})))
        if celery_app.conf.task_always_eager:
            return original(task, args, kwargs, **options)
        return None

    monkeypatch.setattr(Task, "apply_async", apply_async)
    yield fake
    celery_app.conf.task_always_eager = True


def waiting() -> list[tuple[str, list, int]]:
    return list(OutboxTask.objects.order_by("pk").values_list("task", "args", "attempts"))


def resend_later(settings) -> int:
    settings.OUTBOX_RESEND_AFTER_SECONDS = 60
    return outbox.outbox_resend(now=timezone.now() + timedelta(seconds=61))


@pytest.fixture
def gold(db):
    Profile.objects.create(external_id="ann", traits={"plan": "gold"})
    Profile.objects.create(external_id="bob", traits={"plan": "free"})
    return Segment.objects.create(key="gold", name="Gold", kind=Segment.Kind.DYNAMIC, rule=GOLD)


def test_segment_refreshes_asked_for_while_the_broker_is_down_run_once_it_is_back(
    client_as, gold, broker, settings, django_capture_on_commit_callbacks
):
    client = client_as("marketer")
    broker.stop()
    with django_capture_on_commit_callbacks(execute=True):
        api = client.post(f"/api/v1/segments/{gold.pk}/refresh")
        page = client.post(reverse("personalization:segment_refresh", args=[gold.pk]))
        created = client.post(
            "/api/v1/segments", {"key": "g2", "name": "G2", "rule": GOLD}, content_type="application/json"
        )
    assert api.status_code == 202, api.content
    assert page.status_code == 302 and created.status_code == 201, created.content
    second = Segment.objects.get(key="g2")
    assert waiting() == [
        ("personalization.tasks.segment_refresh", [gold.pk, "api"], 1),
        ("personalization.tasks.segment_refresh", [gold.pk, "manual"], 1),
        ("personalization.tasks.segment_refresh", [second.pk, "api"], 1),
    ]
    assert "OperationalError" in OutboxTask.objects.first().last_error
    assert not SegmentRefresh.objects.exists() and broker.sent == []

    # Still down: beat's resend changes nothing but the attempt count of the first message.
    assert resend_later(settings) == 0
    assert [attempts for *_, attempts in waiting()] == [2, 1, 1]

    broker.start()
    with django_capture_on_commit_callbacks(execute=True):
        assert resend_later(settings) == 3
    assert waiting() == []
    assert [s[1] for s in broker.sent] == [[gold.pk, "api"], [gold.pk, "manual"], [second.pk, "api"]]
    assert SegmentRefresh.objects.filter(segment=gold, status="succeeded").count() == 2
    gold.refresh_from_db()
    assert gold.size == 1


def test_an_experiment_analysis_asked_for_while_the_broker_is_down_runs_once_it_is_back(
    client_as, broker, settings, django_capture_on_commit_callbacks
):
    experiment = builders.experiment(start=True)
    client = client_as("marketer")
    broker.stop()
    with django_capture_on_commit_callbacks(execute=True):
        api = client.post(f"/api/v1/experiments/{experiment.key}/analyze")
        page = client.post(reverse("experiments:experiment_analyze", args=[experiment.key]))
    assert api.status_code == 202 and page.status_code == 302
    assert waiting() == [("experiments.tasks.experiment_analyze", [experiment.pk], 1)] * 2

    broker.start()
    with django_capture_on_commit_callbacks(execute=True):
        assert resend_later(settings) == 2
    assert waiting() == []
    assert AnalysisSnapshot.objects.filter(experiment=experiment).exists()


def test_a_catalog_import_and_a_discovery_started_while_the_broker_is_down_run_once_it_is_back(
    client_as, broker, settings, django_capture_on_commit_callbacks
):
    settings.CATALOG_IMPORT_INLINE_ROWS = 1  # two rows: the import goes to a worker
    job = imports.import_job_create(data=b"external_id,title\na1,One\na2,Two\n", filename="big.csv")
    broker.stop()
    with django_capture_on_commit_callbacks(execute=True):
        applied = client_as("admin").post(reverse("catalog:import_apply", args=[job.pk]))
        discover = client_as("marketer").post(reverse("personalization:segment_discover"), {"k": ""})
    assert applied.status_code == 302 and discover.status_code == 302
    discovery = DiscoveryJob.objects.get()
    assert waiting() == [
        ("catalog.tasks.import_job_execute", [job.pk], 1),
        ("personalization.tasks.segment_discovery_execute", [discovery.pk], 1),
    ]
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED

    broker.start()
    with django_capture_on_commit_callbacks(execute=True):
        assert resend_later(settings) == 2
    assert waiting() == []
    job.refresh_from_db()
    discovery.refresh_from_db()
    assert (job.status, job.progress) == ("succeeded", 100)
    assert discovery.status in ("succeeded", "failed") and discovery.finished_at is not None


def test_a_message_sent_at_commit_leaves_no_row(broker, gold, django_capture_on_commit_callbacks):
    from personalization import tasks

    celery_app.conf.task_always_eager = False  # the broker takes the message; nothing runs here
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        row = outbox.enqueue(tasks.segment_refresh, gold.pk, "api")
        assert OutboxTask.objects.filter(pk=row.pk).exists()  # written in the transaction
        assert broker.sent == []  # nothing leaves before the commit
    assert broker.sent == [("personalization.tasks.segment_refresh", [gold.pk, "api"], {})]
    assert waiting() == []


def test_a_rolled_back_transaction_leaves_neither_row_nor_message(
    broker, gold, django_capture_on_commit_callbacks
):
    from personalization import tasks

    capture = django_capture_on_commit_callbacks(execute=True)
    with capture as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        outbox.enqueue(tasks.segment_refresh, gold.pk, "api")
        raise RuntimeError("the request failed after queueing")
    assert callbacks == [] and broker.sent == [] and waiting() == []


def test_the_resend_leaves_recent_messages_to_their_commit_hook(broker, gold, settings):
    from personalization import tasks

    settings.OUTBOX_RESEND_AFTER_SECONDS = 60
    OutboxTask.objects.create(task=tasks.segment_refresh.name, args=[gold.pk, "api"])
    assert outbox.outbox_resend() == 0
    assert outbox.outbox_resend(now=timezone.now() + timedelta(seconds=61)) == 1
    assert broker.sent == [("personalization.tasks.segment_refresh", [gold.pk, "api"], {})]


def test_the_resend_runs_every_minute_on_beats_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["outbox-resend"]
    assert entry["task"] == "recsite.tasks.outbox_resend"
    assert entry["schedule"].minute == set(range(60))  # every minute


def test_the_jobs_page_shows_the_backlog_and_impact_refreshes(client_as, broker):
    client = client_as("marketer")
    assert "waiting for the broker" not in client.get(reverse("jobs")).content.decode()
    old = OutboxTask.objects.create(task="personalization.tasks.segment_refresh", args=[1, "api"])
    OutboxTask.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=7))
    OutboxTask.objects.create(task="experiments.tasks.experiment_analyze", args=[1])
    today = timezone.now().date()
    ImpactRefresh.objects.create(
        status="succeeded", day_from=today, day_to=today, rows=42, started_at=timezone.now(),
        finished_at=timezone.now(),
    )  # fmt: skip
    html = client.get(reverse("jobs")).content.decode()
    assert "2 tasks waiting for the broker (oldest 7\xa0minutes ago)" in html
    assert "Impact refresh" in html and "42 daily figures" in html
    # Impact figures are for those who may see the recommenders.
    assert "Impact refresh" not in client_as("editor").get(reverse("jobs")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_two_resends_at_once_never_take_the_same_message(broker, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SELECT ... FOR UPDATE SKIP LOCKED) need PostgreSQL")
    celery_app.conf.task_always_eager = False
    settings.OUTBOX_RESEND_AFTER_SECONDS = 0
    taken = OutboxTask.objects.create(task="experiments.tasks.experiment_analyze", args=[1])
    free = OutboxTask.objects.create(task="experiments.tasks.experiment_analyze", args=[2])
    locked, release = threading.Event(), threading.Event()

    def other_resend():  # holds the first row as a concurrent resend would while it sends
        try:
            with transaction.atomic():
                OutboxTask.objects.select_for_update().get(pk=taken.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_resend)
    thread.start()
    try:
        assert locked.wait(timeout=30)
        assert outbox.outbox_resend() == 1
    finally:
        release.set()
        thread.join(timeout=30)
    assert broker.sent == [("experiments.tasks.experiment_analyze", [2], {})]
    assert list(OutboxTask.objects.values_list("pk", flat=True)) == [taken.pk]
    assert not OutboxTask.objects.filter(pk=free.pk).exists()
