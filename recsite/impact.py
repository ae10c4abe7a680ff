"""Business impact: how much engagement comes from recommendations (docs/impact.md).

The serving API records every result it returns as an impression keyed by its
recommendation id. A click is a *recommendation click* when its properties carry that
``recommendation_id`` (or ``source: "recommendations"``); an engagement event (play,
complete, purchase, add to cart...) is *attributed* when the same profile clicked a
recommendation of the same item at most ``IMPACT_ATTRIBUTION_WINDOW_HOURS`` before it.
The most recent such click decides the placement and recommender credited.

Everything is computed set-based in the database (grouped queries and one correlated
subquery), per UTC day, and stored in ``ImpactDaily`` by a Celery beat task, so pages only
read a few hundred small rows.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import CharField, Count, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Concat, TruncDate
from django.utils import timezone

from personalization.models import Event

from .models import ImpactDaily, ImpactRefresh, RecommendationImpression

logger = logging.getLogger(__name__)

# Values of ``properties.source`` that mark a click on a recommendation without an id.
RECOMMENDATION_SOURCES = ("recommendation", "recommendations")
UNKNOWN = "unknown"  # the recommender (or placement) a click did not name
ATTRIBUTED = ":attributed"
# Distinct profiles with any event that day: stored with the impact figures so that the
# dashboard's trend line reads a few rows instead of grouping a month of events per request.
ACTIVE_PROFILES = "active_profiles"


class ImpactBusy(Exception):
    """Another refresh is rewriting the daily figures right now."""


# --- Recording -----------------------------------------------------------------------------
#
# With Redis (REDIS_URL) each request pushes its impressions onto a Redis list, one RPUSH, and
# the beat task ``impressions-flush`` moves them into the table in bulk every
# IMPACT_IMPRESSION_FLUSH_SECONDS. Without Redis, or with that setting at 0, each request
# inserts its own rows. The keys carry the database name, so two deployments (or a test run)
# sharing one Redis never flush into each other's table.

# Requests (list elements) moved and inserted per batch; each holds a request's results.
FLUSH_BATCH = 500
# A flush holds a lock this long at most (renewed after each batch): two flushes at once
# would share the processing list.
FLUSH_LOCK_SECONDS = 300
# One task run stops after this long even when requests keep coming; the next run goes on.
FLUSH_MAX_SECONDS = 60

# Moves up to ARGV[1] elements from the head of the queue to the processing list, in one step
# (a script runs atomically), and returns them. A flush that dies after this leaves them in
# the processing list, where the next flush finds them: nothing is lost, and the unique
# recommendation id makes the second insert of a row a no-op.
_MOVE_BATCH = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  redis.call('RPUSH', KEYS[2], unpack(items))
end
return items
"""

_redis_clients = threading.local()


def impressions_buffered() -> bool:
    """Whether impressions go through Redis (else each request inserts its own)."""
    return bool(settings.REDIS_URL) and settings.IMPACT_IMPRESSION_FLUSH_SECONDS > 0


def _redis():
    """This thread's client: one connection each, without a pool to take it from and give it
    back to on every request (half the CPU of a pooled RPUSH)."""
    clients = _redis_clients.__dict__
    client = clients.get(settings.REDIS_URL)
    if client is None:
        import redis

        client = clients[settings.REDIS_URL] = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, single_connection_client=True
        )
    return client


def impression_keys() -> tuple[str, str, str]:
    """(queue, processing list, flush lock) of the current database."""
    prefix = f"recsite:impressions:{connection.settings_dict['NAME']}"
    return f"{prefix}:queue", f"{prefix}:processing", f"{prefix}:flush-lock"


def impressions_record(
    *, results: Sequence, placement_key: str | None, served_at: datetime | None = None
) -> int:
    """Store the served results (``serving.Recommendation``) as impressions: buffered in Redis
    when it is configured, else one INSERT per request. Off with
    ``IMPACT_RECORD_IMPRESSIONS=false``."""
    return _impressions_store([(placement_key or "", results)], served_at=served_at)


def home_impressions_record(*, rows: Sequence, served_at: datetime | None = None) -> int:
    """Home rows (``serving.Row``) as impressions, in one write. Each kind of row is its own
    placement: ``home:top_picks``, ``home:because``, ``home:trending``, ``home:new_in``."""
    return _impressions_store(
        [(home_row_placement(row.key), row.results) for row in rows], served_at=served_at
    )


def home_row_placement(row_key: str) -> str:
    for prefix in ("because", "new_in"):
        if row_key.startswith(prefix + "_"):
            return f"home:{prefix}"
    return f"home:{row_key}"[:100]


def _impressions_store(groups: list[tuple[str, Sequence]], *, served_at: datetime | None) -> int:
    if not settings.IMPACT_RECORD_IMPRESSIONS:
        return 0
    served_at = served_at or timezone.now()
    rows = [
        (r.recommendation_id, placement[:100], r.recommender[:100], r.item.pk, r.rank)
        for placement, results in groups
        for r in results
    ]
    if not rows:
        return 0
    if impressions_buffered():
        import redis

        try:
            _redis().rpush(impression_keys()[0], json.dumps([served_at.isoformat(), rows]))
            return len(rows)
        except redis.RedisError:
            logger.warning("Redis refused impressions; inserting them directly.", exc_info=True)
    _impressions_insert([(served_at, rows)])
    return len(rows)


def _impressions_insert(requests: Iterable[tuple[datetime, list]]) -> int:
    rows = [
        RecommendationImpression(
            recommendation_id=rec_id,
            served_at=served_at,
            placement=placement,
            recommender=recommender,
            item_id=item_id,
            rank=rank,
        )
        for served_at, request_rows in requests
        for rec_id, placement, recommender, item_id, rank in request_rows
    ]
    if rows:
        # Ids are random, and a flush may insert a batch twice: a clash is not an error.
        RecommendationImpression.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return len(rows)


def _decode(elements: Iterable[bytes]) -> list[tuple[datetime, list]]:
    requests = []
    for element in elements:
        try:
            served_at, rows = json.loads(element)
            rows = [tuple(row) for row in rows]
            if not all(len(row) == 5 for row in rows):
                raise ValueError("not an impression row")
            requests.append((datetime.fromisoformat(served_at), rows))
        except (ValueError, TypeError):
            # Not written by _impressions_store: dropping it beats blocking every later flush.
            logger.error("Dropped a malformed buffered impression: %r", element[:200])
    return requests


def impressions_flush(*, max_seconds: float = FLUSH_MAX_SECONDS) -> int:
    """Move the impressions buffered in Redis into the table, in batches; the number of rows
    written (re-inserted duplicates included). One flush at a time per database: a second
    one returns 0 at once. A batch leaves Redis only after its rows are committed."""
    if not impressions_buffered():
        return 0
    from redis.exceptions import LockError

    queue, processing, lock_key = impression_keys()
    client = _redis()
    lock = client.lock(lock_key, timeout=FLUSH_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return 0
    move = client.register_script(_MOVE_BATCH)
    written, deadline = 0, monotonic() + max_seconds
    try:
        # What a flush that died left behind comes first.
        batch = client.lrange(processing, 0, -1)
        while True:
            if not batch:
                if monotonic() > deadline:
                    break
                batch = move(keys=[queue, processing], args=[FLUSH_BATCH])
                if not batch:
                    break
            with transaction.atomic():
                written += _impressions_insert(_decode(batch))
            # Only the rows just committed: LTRIM rather than DEL.
            client.ltrim(processing, len(batch), -1)
            lock.reacquire()
            batch = []
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("The impression flush lock expired before the flush ended.")
    return written


def impressions_pending() -> int:
    """Buffered impressions not yet flushed (requests, not rows): for monitoring."""
    if not impressions_buffered():
        return 0
    queue, processing, _ = impression_keys()
    client = _redis()
    return client.llen(queue) + client.llen(processing)


# --- Computation -----------------------------------------------------------------------------


def _day_bounds(day_from: date, day_to: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(day_from, time.min, tzinfo=UTC),
        datetime.combine(day_to + timedelta(days=1), time.min, tzinfo=UTC),
    )


def recommendation_clicks() -> QuerySet[Event]:
    """Clicks on recommendations, annotated with the placement and recommender they credit:
    from the impression their ``recommendation_id`` names, else from their own
    ``placement`` / ``recommender`` properties, else ``unknown``."""
    impression = RecommendationImpression.objects.filter(recommendation_id=OuterRef("rec_id"))
    return (
        Event.objects.filter(type=Event.Type.CLICK)
        .filter(Q(properties__has_key="recommendation_id") | Q(properties__source__in=RECOMMENDATION_SOURCES))
        .annotate(rec_id=KT("properties__recommendation_id"))
        .annotate(
            placement_key=Coalesce(
                Subquery(impression.values("placement")[:1]),
                KT("properties__placement"),
                Value(""),
                output_field=CharField(),
            ),
            recommender_name=Coalesce(
                Subquery(impression.values("recommender")[:1]),
                KT("properties__recommender"),
                Value(UNKNOWN),
                output_field=CharField(),
            ),
        )
    )


def engagement_credited(*, since: datetime, until: datetime, window: timedelta) -> QuerySet[Event]:
    """Engagement events in [since, until) annotated with ``credit`` = "placement/recommender"
    of the latest recommendation click of the same profile and item within ``window`` before
    them, or NULL when none qualifies (placement keys and recommender names are slugs, never
    "/"). Not filtered on ``credit``: grouping the NULLs away in Python is cheaper than a
    WHERE, which would evaluate the correlated subquery a second time per event."""
    latest_click = (
        recommendation_clicks()
        .filter(
            profile_id=OuterRef("profile_id"),
            item_id=OuterRef("item_id"),
            timestamp__lte=OuterRef("timestamp"),
            timestamp__gte=OuterRef("timestamp") - window,
        )
        .order_by("-timestamp", "-pk")
        .annotate(credit=Concat("placement_key", Value("/"), "recommender_name", output_field=CharField()))
        .values("credit")[:1]
    )
    return (
        # Events without an item count in the totals; they are never credited.
        Event.objects.filter(
            type__in=settings.IMPACT_ENGAGEMENT_TYPES, timestamp__gte=since, timestamp__lt=until
        ).annotate(credit=Subquery(latest_click, output_field=CharField()))
    )


def impact_compute(*, day_from: date, day_to: date, window: timedelta | None = None) -> list[ImpactDaily]:
    """The daily figures of [day_from, day_to] (UTC days), unsaved. Four grouped queries; the
    Python loops below run over groups (days x placements x recommenders), not events."""
    window = window if window is not None else timedelta(hours=settings.IMPACT_ATTRIBUTION_WINDOW_HOURS)
    since, until = _day_bounds(day_from, day_to)
    day = TruncDate("timestamp", tzinfo=UTC)
    cells: dict[tuple[date, str, str, str], int] = defaultdict(int)

    impressions = (
        RecommendationImpression.objects.filter(served_at__gte=since, served_at__lt=until)
        .annotate(day=TruncDate("served_at", tzinfo=UTC))
        .values_list("day", "placement", "recommender")
        .annotate(n=Count("id"))
        .order_by()
    )
    for d, placement, recommender, n in impressions:
        cells[(d, placement, recommender, "impressions")] += n
    clicks = (
        recommendation_clicks()
        .filter(timestamp__gte=since, timestamp__lt=until)
        .annotate(day=day)
        .values_list("day", "placement_key", "recommender_name")
        .annotate(n=Count("id"))
        .order_by()
    )
    for d, placement, recommender, n in clicks:
        cells[(d, placement[:100], recommender[:100], "clicks")] += n
    active = (
        Event.objects.filter(timestamp__gte=since, timestamp__lt=until)
        .annotate(day=day)
        .values_list("day")
        .annotate(n=Count("profile_id", distinct=True))
        .order_by()
    )
    for d, n in active:
        cells[(d, "", "", ACTIVE_PROFILES)] += n
    attributed = (
        engagement_credited(since=since, until=until, window=window)
        .annotate(day=day)
        .values_list("day", "type", "credit")
        .annotate(n=Count("id"))
        .order_by()
    )
    for d, event_type, credit, n in attributed:
        cells[(d, "", "", event_type)] += n  # every engagement event, credited or not
        if credit is None:
            continue
        placement, _, recommender = credit.rpartition("/")
        cells[(d, placement[:100], recommender[:100], event_type + ATTRIBUTED)] += n
    return [
        ImpactDaily(day=d, placement=p, recommender=r, metric=m, count=n)
        for (d, p, r, m), n in sorted(cells.items())
    ]


# --- Refresh (Celery beat) -------------------------------------------------------------------


def impact_refresh_range(*, today: date) -> tuple[date, date]:
    """The days the next refresh recomputes: from the last successful refresh's end minus
    enough days for late events and clicks still inside the window, else a full backfill."""
    last = ImpactRefresh.objects.filter(status=ImpactRefresh.Status.SUCCEEDED).order_by("-started_at").first()
    if last is None:
        return today - timedelta(days=settings.IMPACT_BACKFILL_DAYS - 1), today
    lookback = math.ceil(settings.IMPACT_ATTRIBUTION_WINDOW_HOURS / 24) + 1
    return min(last.day_to, today) - timedelta(days=lookback), today


def impact_refresh(
    *, day_from: date | None = None, day_to: date | None = None, now: datetime | None = None
) -> ImpactRefresh:
    """Recompute the daily figures of a range of days and replace them in one transaction.

    Idempotent: a rerun of the same days rewrites the same rows. Incremental: by default
    only the days since the last refresh (plus the attribution window) are recomputed.
    One refresh at a time (a partial unique constraint); a second raises ImpactBusy.
    """
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    if day_from is None or day_to is None:
        day_from, day_to = impact_refresh_range(today=today)
    if day_from > day_to:
        raise ValueError("day_from must not be after day_to.")
    try:
        with transaction.atomic():
            refresh = ImpactRefresh.objects.create(day_from=day_from, day_to=day_to, started_at=now)
    except IntegrityError:
        raise ImpactBusy("Another impact refresh is running.") from None
    try:
        rows = impact_compute(day_from=day_from, day_to=day_to)
        with transaction.atomic():
            ImpactDaily.objects.filter(day__gte=day_from, day__lte=day_to).delete()
            ImpactDaily.objects.bulk_create(rows, batch_size=1000)
            cutoff = now - timedelta(days=settings.IMPACT_IMPRESSION_RETENTION_DAYS)
            RecommendationImpression.objects.filter(served_at__lt=cutoff).delete()
    except Exception as exc:
        ImpactRefresh.objects.filter(pk=refresh.pk).update(
            status=ImpactRefresh.Status.FAILED, finished_at=timezone.now(), error=repr(exc)[:2000]
        )
        raise
    ImpactRefresh.objects.filter(pk=refresh.pk, status=ImpactRefresh.Status.RUNNING).update(
        status=ImpactRefresh.Status.SUCCEEDED, finished_at=timezone.now(), rows=len(rows)
    )
    refresh.refresh_from_db()
    return refresh


def impact_refreshes_reap(*, stale_after: timedelta, now: datetime | None = None) -> int:
    """Mark refreshes that have been running for too long as failed (their worker died), so
    the guard does not block every later refresh."""
    now = now or timezone.now()
    return ImpactRefresh.objects.filter(
        status=ImpactRefresh.Status.RUNNING, started_at__lt=now - stale_after
    ).update(status=ImpactRefresh.Status.FAILED, finished_at=now, error="No progress: presumed dead.")


# --- Reading ---------------------------------------------------------------------------------


@dataclass
class Series:
    """Daily values of one placement or recommender."""

    key: str
    impressions: list[int] = field(default_factory=list)
    clicks: list[int] = field(default_factory=list)
    attributed: dict[str, list[int]] = field(default_factory=dict)  # engagement type -> per day

    def ctr(self) -> list[float | None]:
        return [c / i if i else None for c, i in zip(self.clicks, self.impressions, strict=True)]


@dataclass
class ImpactReport:
    days: list[date]
    types: list[str]
    by: str
    totals: dict[str, list[int]]  # engagement type -> all events per day
    series: list[Series]

    def share(self, series: Series, event_type: str) -> list[float | None]:
        """Share of the day's events of ``event_type`` attributed to ``series``."""
        return [
            a / t if t else None
            for a, t in zip(series.attributed.get(event_type, []), self.totals[event_type], strict=True)
        ]

    def summary(self) -> dict:
        """Whole-range figures: impressions, clicks, CTR, and the share attributed per type."""
        impressions = sum(sum(s.impressions) for s in self.series)
        clicks = sum(sum(s.clicks) for s in self.series)
        shares = {}
        for event_type in self.types:
            total = sum(self.totals[event_type])
            attributed = sum(sum(s.attributed.get(event_type, [])) for s in self.series)
            shares[event_type] = {
                "events": total,
                "attributed": attributed,
                "share": attributed / total if total else None,
            }
        all_events = sum(v["events"] for v in shares.values())
        all_attributed = sum(v["attributed"] for v in shares.values())
        return {
            "impressions": impressions,
            "clicks": clicks,
            "ctr": clicks / impressions if impressions else None,
            "engagement": shares,
            "engagement_share": all_attributed / all_events if all_events else None,
        }

    def as_dict(self) -> dict:
        """The JSON the API returns (and the page's charts show)."""
        return {
            "days": [d.isoformat() for d in self.days],
            "by": self.by,
            "summary": self.summary(),
            "totals": self.totals,
            "series": [
                {
                    "key": s.key,
                    "impressions": s.impressions,
                    "clicks": s.clicks,
                    "ctr": s.ctr(),
                    "attributed": s.attributed,
                    "share": {t: self.share(s, t) for t in self.types},
                }
                for s in self.series
            ],
        }


def impact_report(*, day_from: date, day_to: date, by: str = "placement") -> ImpactReport:
    """The stored daily figures of [day_from, day_to], per placement or per recommender
    (one grouped query)."""
    if by not in ("placement", "recommender"):
        raise ValueError("by must be 'placement' or 'recommender'.")
    days = [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]
    position = {d: i for i, d in enumerate(days)}
    types = list(settings.IMPACT_ENGAGEMENT_TYPES)
    totals = {t: [0] * len(days) for t in types}
    series: dict[str, Series] = {}
    rows = (
        ImpactDaily.objects.filter(day__gte=day_from, day__lte=day_to)
        .exclude(metric=ACTIVE_PROFILES)
        .values_list("day", by, "metric")
        .annotate(n=Sum("count"))
        .order_by()
    )
    for d, key, metric, n in rows:
        i = position[d]
        if metric in totals:
            totals[metric][i] += n
            continue
        s = series.get(key)
        if s is None:
            s = series[key] = Series(
                key=key,
                impressions=[0] * len(days),
                clicks=[0] * len(days),
                attributed={t: [0] * len(days) for t in types},
            )
        if metric == "impressions":
            s.impressions[i] += n
        elif metric == "clicks":
            s.clicks[i] += n
        elif metric.endswith(ATTRIBUTED) and metric[: -len(ATTRIBUTED)] in s.attributed:
            s.attributed[metric[: -len(ATTRIBUTED)]][i] += n
    ordered = sorted(series.values(), key=lambda s: (-sum(s.impressions) - sum(s.clicks), s.key))
    return ImpactReport(days=days, types=types, by=by, totals=totals, series=ordered)


def active_profiles_per_day(*, day_from: date, day_to: date) -> list[int]:
    """Distinct active profiles per UTC day of [day_from, day_to], as stored by the refresh."""
    length = (day_to - day_from).days + 1
    out = [0] * length
    for d, n in ImpactDaily.objects.filter(
        day__gte=day_from, day__lte=day_to, metric=ACTIVE_PROFILES, placement="", recommender=""
    ).values_list("day", "count"):
        out[(d - day_from).days] = n
    return out


def series_label(key: str, by: str) -> str:
    if key == "":
        return "(no placement)" if by == "placement" else "(unknown)"
    return key


def last_refresh() -> ImpactRefresh | None:
    return ImpactRefresh.objects.order_by("-started_at", "-pk").first()


def labels(keys: Iterable[str], by: str) -> list[str]:
    return [series_label(k, by) for k in keys]


# --- Demo data -------------------------------------------------------------------------------

# (placement, recommender, weight): where the demo's recommendation clicks come from.
DEMO_SOURCES = (
    ("home", "hybrid", 0.6),
    ("because-you-watched", "item-knn", 0.25),
    ("email-picks", "ease", 0.15),
)


def impact_demo_seed(*, days: int = 30, seed: int = 42, impressions_per_click: int = 12) -> dict:
    """Give the demo a believable business-impact history: for a growing share (20% -> 35%)
    of the recent engagement events, a recommendation click shortly before, and impressions
    around it. Deterministic and idempotent (ids derive from the events), then refreshed."""
    import random

    from personalization import eventstore
    from personalization.models import Source

    rng = random.Random(seed)
    now = timezone.now()
    since = now - timedelta(days=days)
    source, _ = Source.objects.get_or_create(name="demo-recommendations")
    engaged = list(
        Event.objects.filter(
            timestamp__gte=since, type__in=settings.IMPACT_ENGAGEMENT_TYPES, item__isnull=False
        )
        .order_by("pk")
        .values_list("pk", "profile_id", "item_id", "timestamp")
    )
    item_ids = list({item_id for _, _, item_id, _ in engaged})
    clicks, impressions = [], []
    for pk, profile_id, item_id, when in engaged:
        progress = (when - since) / (now - since)
        if rng.random() >= 0.2 + 0.15 * progress:
            continue
        placement, recommender, _ = rng.choices(DEMO_SOURCES, weights=[w for _, _, w in DEMO_SOURCES])[0]
        rec_id = f"demo{pk:028x}"
        clicked_at = when - timedelta(minutes=rng.randint(1, 90))
        clicks.append(
            Event(
                source=source,
                message_id=f"impact-demo-{pk}",
                name="Product Clicked",
                type=Event.Type.CLICK,
                profile_id=profile_id,
                item_id=item_id,
                properties={"recommendation_id": rec_id},
                timestamp=clicked_at,
                received_at=clicked_at,
            )
        )
        shown_at = clicked_at - timedelta(seconds=rng.randint(5, 300))
        impressions.append(
            RecommendationImpression(
                recommendation_id=rec_id,
                served_at=shown_at,
                placement=placement,
                recommender=recommender,
                item_id=item_id,
                rank=rng.randint(1, 5),
            )
        )
        for n in range(impressions_per_click - 1):
            impressions.append(
                RecommendationImpression(
                    recommendation_id=f"demo{pk:026x}{n:02x}",
                    served_at=shown_at,
                    placement=placement,
                    recommender=recommender,
                    item_id=rng.choice(item_ids),
                    rank=n + 1,
                )
            )
    # A click comes minutes before its engagement event, so it may be a profile's first.
    spans: dict[int, tuple[datetime, datetime]] = {}
    for click in clicks:
        lo, hi = spans.get(click.profile_id, (click.timestamp, click.timestamp))
        spans[click.profile_id] = (min(lo, click.timestamp), max(hi, click.timestamp))
    with transaction.atomic():
        Event.objects.bulk_create(clicks, batch_size=2000, ignore_conflicts=True)
        RecommendationImpression.objects.bulk_create(impressions, batch_size=5000, ignore_conflicts=True)
        eventstore.profiles_seen([(pk, lo, hi) for pk, (lo, hi) in spans.items()])
    refresh = impact_refresh(
        day_from=since.astimezone(UTC).date(), day_to=now.astimezone(UTC).date(), now=now
    )
    return {"clicks": len(clicks), "impressions": len(impressions), "rows": refresh.rows}
