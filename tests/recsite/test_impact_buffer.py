"""Impressions buffered in Redis and flushed in bulk (recsite/impact.py, "Recording").

The Redis tests use the REDIS_URL of the run and skip without it; the fallback to a direct
insert when Redis is unreachable runs everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from unittest import mock

import pytest
from django.conf import settings
from django.test import override_settings

from recsite import impact, tasks
from recsite.models import RecommendationImpression
from tests import factories

SERVED = datetime(2026, 11, 2, 12, 0, 0, 123456, tzinfo=UTC)
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL is not set")


def results(prefix: str, items, recommender: str = "ease"):
    """What serving returns, as far as recording reads it."""
    return [
        SimpleNamespace(recommendation_id=f"{prefix}{n:030x}", recommender=recommender, item=item, rank=n + 1)
        for n, item in enumerate(items)
    ]


def stored() -> list[tuple]:
    return sorted(
        RecommendationImpression.objects.values_list(
            "recommendation_id", "served_at", "placement", "recommender", "item_id", "rank"
        )
    )


def record_traffic(items) -> int:
    """A request with a placement, one without, one beyond the column sizes, and home rows."""
    written = impact.impressions_record(
        results=results("a", items[:3]), placement_key="home", served_at=SERVED
    )
    written += impact.impressions_record(
        results=results("b", items[3:5]), placement_key=None, served_at=SERVED
    )
    written += impact.impressions_record(
        results=results("c", items[:1], recommender="r" * 150), placement_key="p" * 150, served_at=SERVED
    )
    rows = [
        SimpleNamespace(key="top_picks", results=results("d", items[:2])),
        SimpleNamespace(key="because_m001", results=results("e", items[2:4], recommender="item-knn")),
    ]
    return written + impact.home_impressions_record(rows=rows, served_at=SERVED)


@pytest.fixture
def buffer(db):
    """The run's Redis with this database's impression keys empty before and after."""
    client = impact._redis()
    keys = impact.impression_keys()
    client.delete(*keys)
    with override_settings(IMPACT_IMPRESSION_FLUSH_SECONDS=5, IMPACT_RECORD_IMPRESSIONS=True):
        yield SimpleNamespace(client=client, queue=keys[0], processing=keys[1], lock=keys[2])
    client.delete(*keys)


@needs_redis
def test_buffered_then_flushed_impressions_are_the_rows_a_direct_insert_writes(buffer):
    items = factories.items(5)
    with override_settings(IMPACT_IMPRESSION_FLUSH_SECONDS=0):
        assert not impact.impressions_buffered()
        record_traffic(items)
    direct = stored()
    RecommendationImpression.objects.all().delete()

    assert impact.impressions_buffered()
    written = record_traffic(items)
    assert written == len(direct) == 10
    assert RecommendationImpression.objects.count() == 0  # nothing until the flush
    assert impact.impressions_pending() == 4  # one element per request
    assert impact.impressions_flush() == 10
    assert stored() == direct
    assert impact.impressions_pending() == 0
    assert ("c" + "0" * 30, SERVED, "p" * 100, "r" * 100, items[0].pk, 1) in direct
    assert {row[2] for row in direct} == {"home", "", "p" * 100, "home:top_picks", "home:because"}


@needs_redis
def test_a_batch_flushed_twice_is_stored_once(buffer):
    items = factories.items(3)
    impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED)
    # The same request twice in the queue, as if a push had been retried.
    element = buffer.client.lindex(buffer.queue, 0)
    buffer.client.rpush(buffer.queue, element)
    assert impact.impressions_flush() == 6  # rows offered, duplicates included
    assert RecommendationImpression.objects.count() == 3
    buffer.client.rpush(buffer.queue, element)
    impact.impressions_flush()
    assert RecommendationImpression.objects.count() == 3


@needs_redis
def test_a_flush_that_dies_after_its_insert_is_redone_without_duplicates(buffer):
    items = factories.items(4)
    impact.impressions_record(results=results("a", items[:2]), placement_key="home", served_at=SERVED)
    impact.impressions_record(results=results("b", items[2:]), placement_key="email", served_at=SERVED)
    # Killed between the commit and the removal of the batch from the processing list.
    die = SystemExit("worker killed")
    with mock.patch.object(type(buffer.client), "ltrim", side_effect=die), pytest.raises(SystemExit):
        impact.impressions_flush()
    # The rows are in, but the batch is still in the processing list and the lock is free.
    assert RecommendationImpression.objects.count() == 4
    assert buffer.client.llen(buffer.processing) == 2 and buffer.client.llen(buffer.queue) == 0
    assert not buffer.client.exists(buffer.lock)
    before = stored()
    assert impact.impressions_flush() == 4
    assert stored() == before
    assert impact.impressions_pending() == 0


@needs_redis
def test_a_flush_that_fails_before_its_commit_loses_nothing(buffer):
    items = factories.items(2)
    impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED)
    with (
        mock.patch.object(
            RecommendationImpression.objects, "bulk_create", side_effect=RuntimeError("db down")
        ),
        pytest.raises(RuntimeError),
    ):
        impact.impressions_flush()
    assert RecommendationImpression.objects.count() == 0
    assert impact.impressions_pending() == 1
    impact.impressions_record(results=results("b", items), placement_key="home", served_at=SERVED)
    assert impact.impressions_flush() == 4
    assert RecommendationImpression.objects.count() == 4


@needs_redis
def test_a_second_flush_waits_for_the_running_one(buffer):
    items = factories.items(2)
    impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED)
    buffer.client.set(buffer.lock, "another worker", ex=60)
    assert impact.impressions_flush() == 0
    assert impact.impressions_pending() == 1
    buffer.client.delete(buffer.lock)
    assert impact.impressions_flush() == 2


@needs_redis
def test_a_malformed_element_is_dropped_without_blocking_the_others(buffer):
    items = factories.items(2)
    buffer.client.rpush(
        buffer.queue, b"not json", b'["not a date", []]', b'["2026-11-02T12:00:00+00:00", [[1, 2]]]'
    )
    impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED)
    assert impact.impressions_flush() == 2
    assert impact.impressions_pending() == 0


@needs_redis
def test_the_beat_task_flushes_and_so_does_the_refresh_task(buffer):
    items = factories.items(2)
    impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED)
    assert tasks.impressions_flush.delay().get() == 2
    impact.impressions_record(results=results("b", items), placement_key="home")
    tasks.impact_refresh.delay().get()
    assert RecommendationImpression.objects.count() == 4
    assert impact.impressions_pending() == 0


@needs_redis
def test_served_recommendations_reach_the_table_at_the_flush_and_clicks_find_them(buffer, client_as):
    from personalization import services

    items = factories.items(3)
    users = factories.profiles(2)
    factories.events([(users[1], items[0], "play"), (users[1], items[1], "play")])
    run = services.training_run_request(recommender=factories.trending())
    services.training_run_execute(run_id=run.pk)
    body = client_as("marketer").get("/api/v1/recommendations", {"user_id": "u000", "k": 2}).json()
    assert len(body["results"]) == 2
    assert RecommendationImpression.objects.count() == 0
    impact.impressions_flush()
    ids = {r["recommendation_id"] for r in body["results"]}
    assert set(RecommendationImpression.objects.values_list("recommendation_id", flat=True)) == ids


@override_settings(REDIS_URL="redis://127.0.0.1:1/0", IMPACT_IMPRESSION_FLUSH_SECONDS=5)
def test_without_a_reachable_redis_impressions_are_inserted_directly(db):
    items = factories.items(2)
    assert impact.impressions_buffered()
    assert impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED) == 2
    assert [row[0] for row in stored()] == ["a" + "0" * 30, "a" + "0" * 29 + "1"]


@override_settings(REDIS_URL="")
def test_without_redis_each_request_inserts_and_the_flush_does_nothing(db):
    items = factories.items(2)
    assert not impact.impressions_buffered()
    impact.impressions_record(results=results("a", items), placement_key="home", served_at=SERVED)
    assert RecommendationImpression.objects.count() == 2
    assert impact.impressions_flush() == 0


def test_beat_flushes_every_few_seconds_only_where_there_is_redis_to_flush():
    entry = settings.CELERY_BEAT_SCHEDULE.get("impressions-flush")
    if settings.REDIS_URL and settings.IMPACT_IMPRESSION_FLUSH_SECONDS > 0:
        assert entry["task"] == tasks.impressions_flush.name == "recsite.tasks.impressions_flush"
        assert entry["schedule"] == settings.IMPACT_IMPRESSION_FLUSH_SECONDS
    else:
        assert entry is None
