"""Business impact: attribution of engagement to recommendation clicks, the daily figures and
their refresh, checked against a brute-force loop over the same events."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db.models import Sum
from django.test import override_settings

from personalization import services
from personalization.models import Event, Source
from recsite import impact
from recsite.models import ImpactDaily, ImpactRefresh, RecommendationImpression
from tests import factories

DAY = date(2026, 11, 2)
NOON = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def store(rows):
    """Events from (profile, item, type, time, properties) rows."""
    source, _ = Source.objects.get_or_create(name="test")
    offset = Event.objects.count()
    return Event.objects.bulk_create(
        [
            Event(
                source=source,
                message_id=f"e{offset + n}",
                name=kind,
                type=kind,
                profile=profile,
                item=item,
                properties=properties or {},
                timestamp=when,
                received_at=when,
            )
            for n, (profile, item, kind, when, properties) in enumerate(rows)
        ]
    )


def impression(rec_id, item, *, placement="home", recommender="ease", when=NOON):
    return RecommendationImpression.objects.create(
        recommendation_id=rec_id,
        served_at=when,
        placement=placement,
        recommender=recommender,
        item_id=item.pk,
    )


def cells(day_from=DAY, day_to=DAY):
    return {
        (r.day, r.placement, r.recommender, r.metric): r.count
        for r in impact.impact_compute(day_from=day_from, day_to=day_to)
    }


@pytest.fixture
def world(db):
    return factories.profiles(3), factories.items(3)


def test_a_play_after_a_click_on_a_recommendation_is_credited_to_its_placement_and_recommender(world):
    (ana, ben, _), (film, other, _) = world
    impression("r1", film)
    impression("r2", other)
    store(
        [
            (ana, film, "click", NOON + timedelta(minutes=1), {"recommendation_id": "r1"}),
            (ana, film, "play", NOON + timedelta(minutes=2), None),
            (ana, film, "complete", NOON + timedelta(hours=2), None),
            (ben, film, "play", NOON + timedelta(minutes=3), None),  # another profile: not credited
            (ana, other, "play", NOON + timedelta(minutes=4), None),  # another item: not credited
        ]
    )
    got = cells()
    assert got[(DAY, "home", "ease", "impressions")] == 2
    assert got[(DAY, "home", "ease", "clicks")] == 1
    assert got[(DAY, "home", "ease", "play:attributed")] == 1
    assert got[(DAY, "home", "ease", "complete:attributed")] == 1
    assert got[(DAY, "", "", "play")] == 3
    assert got[(DAY, "", "", "complete")] == 1


def test_events_outside_the_window_or_before_the_click_are_not_credited(world):
    (ana, _, _), (film, _, _) = world
    impression("r1", film)
    store(
        [
            (ana, film, "play", NOON - timedelta(minutes=5), None),  # before the click
            (ana, film, "click", NOON, {"recommendation_id": "r1"}),
            (ana, film, "play", NOON + timedelta(hours=24), None),  # exactly at the edge: credited
            (ana, film, "purchase", NOON + timedelta(hours=24, seconds=1), None),  # too late
        ]
    )
    got = cells(DAY, DAY + timedelta(days=1))
    assert got[(DAY + timedelta(days=1), "home", "ease", "play:attributed")] == 1
    assert (DAY, "home", "ease", "play:attributed") not in got
    assert not any(k[3] == "purchase:attributed" for k in got)
    with override_settings(IMPACT_ATTRIBUTION_WINDOW_HOURS=48):
        wider = cells(DAY, DAY + timedelta(days=1))
    assert wider[(DAY + timedelta(days=1), "home", "ease", "purchase:attributed")] == 1


def test_a_click_with_a_source_property_counts_and_names_its_placement(world):
    (ana, ben, _), (film, _, _) = world
    store(
        [
            (ana, film, "click", NOON, {"source": "recommendations", "placement": "email"}),
            (ana, film, "play", NOON + timedelta(minutes=1), None),
            (ben, film, "click", NOON, {"source": "search"}),  # not a recommendation click
            (ben, film, "play", NOON + timedelta(minutes=1), None),
        ]
    )
    got = cells()
    assert got[(DAY, "email", "unknown", "clicks")] == 1
    assert got[(DAY, "email", "unknown", "play:attributed")] == 1
    assert sum(n for k, n in got.items() if k[3] == "clicks") == 1


def test_the_latest_click_before_the_event_gets_the_credit(world):
    (ana, _, _), (film, _, _) = world
    impression("r1", film, placement="home", recommender="ease")
    impression("r2", film, placement="similar", recommender="item-knn")
    store(
        [
            (ana, film, "click", NOON, {"recommendation_id": "r1"}),
            (ana, film, "click", NOON + timedelta(minutes=5), {"recommendation_id": "r2"}),
            (ana, film, "play", NOON + timedelta(minutes=6), None),
        ]
    )
    got = cells()
    assert got[(DAY, "similar", "item-knn", "play:attributed")] == 1
    assert (DAY, "home", "ease", "play:attributed") not in got


def brute_force(events, impressions, window, types):
    """Attribution by a plain loop over every pair of events."""
    result = Counter()
    clicks = []
    for e in events:
        props = e.properties
        if e.type == "click" and ("recommendation_id" in props or props.get("source") == "recommendations"):
            imp = impressions.get(props.get("recommendation_id"))
            placement = imp.placement if imp else props.get("placement", "")
            recommender = imp.recommender if imp else props.get("recommender", "unknown")
            clicks.append((e, placement, recommender))
            result[(e.timestamp.date(), placement, recommender, "clicks")] += 1
    for e in events:
        if e.type not in types:
            continue
        result[(e.timestamp.date(), "", "", e.type)] += 1
        if e.item_id is None:
            continue  # counted in the totals, never credited
        matches = [
            (c.timestamp, c.pk, p, r)
            for c, p, r in clicks
            if c.profile_id == e.profile_id
            and c.item_id == e.item_id
            and e.timestamp - window <= c.timestamp <= e.timestamp
        ]
        if matches:
            _, _, p, r = max(matches)
            result[(e.timestamp.date(), p, r, f"{e.type}:attributed")] += 1
    for imp in impressions.values():
        result[(imp.served_at.date(), imp.placement, imp.recommender, "impressions")] += 1
    for day, n in Counter(day for day, _ in {(e.timestamp.date(), e.profile_id) for e in events}).items():
        result[(day, "", "", "active_profiles")] = n
    return dict(result)


def test_the_figures_match_a_brute_force_loop_on_random_traffic(db):
    rng = random.Random(7)
    people = factories.profiles(12)
    items = factories.items(6)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(60):
        impression(
            f"r{n}",
            rng.choice(items),
            placement=rng.choice(["home", "similar", ""]),
            recommender=rng.choice(["ease", "als"]),
            when=start + timedelta(hours=rng.randrange(72)),
        )
    rows = []
    for _ in range(400):
        when = start + timedelta(minutes=rng.randrange(72 * 60))
        kind = rng.choice(["click", "click", "play", "complete", "purchase", "view"])
        props = None
        if kind == "click":
            props = rng.choice(
                [{"recommendation_id": f"r{rng.randrange(80)}"}, {"source": "recommendations"}, {}]
            )
        item = None if rng.random() < 0.05 else rng.choice(items)  # some events name no item
        rows.append((rng.choice(people), item, kind, when, props))
    events = store(rows)
    impressions = {i.recommendation_id: i for i in RecommendationImpression.objects.all()}
    window = timedelta(hours=6)
    types = ["play", "complete", "purchase", "add_to_cart"]
    with override_settings(IMPACT_ATTRIBUTION_WINDOW_HOURS=6):
        got = cells(date(2026, 11, 1), date(2026, 11, 3))
    expected = brute_force(events, impressions, window, types)
    assert got == expected
    assert any(k[3].endswith(":attributed") for k in got)  # the data exercised attribution


def test_a_refresh_stores_the_figures_and_a_rerun_rewrites_the_same_rows(world):
    (ana, _, _), (film, _, _) = world
    impression("r1", film)
    store(
        [
            (ana, film, "click", NOON, {"recommendation_id": "r1"}),
            (ana, film, "play", NOON + timedelta(minutes=1), None),
        ]
    )
    first = impact.impact_refresh(day_from=DAY, day_to=DAY, now=NOON + timedelta(hours=1))
    assert first.status == ImpactRefresh.Status.SUCCEEDED
    before = sorted(ImpactDaily.objects.values_list("day", "placement", "recommender", "metric", "count"))
    impact.impact_refresh(day_from=DAY, day_to=DAY, now=NOON + timedelta(hours=2))
    after = sorted(ImpactDaily.objects.values_list("day", "placement", "recommender", "metric", "count"))
    assert before == after
    assert (DAY, "home", "ease", "play:attributed", 1) in after


def test_later_refreshes_recompute_only_recent_days(db):
    today = date(2026, 11, 30)
    with override_settings(IMPACT_BACKFILL_DAYS=90, IMPACT_ATTRIBUTION_WINDOW_HOURS=24):
        assert impact.impact_refresh_range(today=today) == (today - timedelta(days=89), today)
        impact.impact_refresh(now=datetime(2026, 11, 30, 8, tzinfo=UTC))
        assert impact.impact_refresh_range(today=today) == (today - timedelta(days=2), today)


def test_a_second_refresh_while_one_runs_is_refused_and_a_dead_one_is_reaped(db):
    ImpactRefresh.objects.create(day_from=DAY, day_to=DAY, started_at=NOON)
    with pytest.raises(impact.ImpactBusy):
        impact.impact_refresh(day_from=DAY, day_to=DAY, now=NOON + timedelta(minutes=1))
    assert impact.impact_refreshes_reap(stale_after=timedelta(hours=1), now=NOON + timedelta(hours=2)) == 1
    assert impact.impact_refresh(day_from=DAY, day_to=DAY, now=NOON + timedelta(hours=2)).rows == 0


def test_the_report_gives_shares_and_ctr_per_placement_and_per_recommender(world):
    (ana, ben, _), (film, other, _) = world
    impression("r1", film, placement="home", recommender="ease")
    impression("r2", other, placement="home", recommender="als")
    impression("r3", other, placement="email", recommender="ease")
    impression("r4", film, placement="email", recommender="ease")
    store(
        [
            (ana, film, "click", NOON, {"recommendation_id": "r1"}),
            (ana, film, "play", NOON + timedelta(minutes=1), None),
            (ben, other, "play", NOON + timedelta(minutes=1), None),
        ]
    )
    impact.impact_refresh(day_from=DAY, day_to=DAY, now=NOON + timedelta(hours=1))
    by_placement = impact.impact_report(day_from=DAY, day_to=DAY, by="placement")
    home = next(s for s in by_placement.series if s.key == "home")
    assert home.ctr() == [0.5]
    assert by_placement.share(home, "play") == [0.5]
    summary = by_placement.summary()
    assert summary["impressions"] == 4 and summary["clicks"] == 1 and summary["ctr"] == 0.25
    assert summary["engagement"]["play"] == {"events": 2, "attributed": 1, "share": 0.5}
    by_recommender = impact.impact_report(day_from=DAY, day_to=DAY, by="recommender")
    ease = next(s for s in by_recommender.series if s.key == "ease")
    assert ease.impressions == [3] and ease.clicks == [1]


def test_the_recommendations_api_records_impressions_that_a_tracked_click_refers_to(client_as, db):
    items = factories.items(3)
    users = factories.profiles(2)
    factories.events([(users[1], items[0], "play"), (users[1], items[1], "play")])
    run = services.training_run_request(recommender=factories.trending())
    services.training_run_execute(run_id=run.pk)
    body = client_as("marketer").get("/api/v1/recommendations", {"user_id": "u000", "k": 2}).json()
    impact.impressions_flush()  # with Redis, impressions reach the table at the next flush
    first = body["results"][0]
    stored = RecommendationImpression.objects.get(recommendation_id=first["recommendation_id"])
    assert (stored.placement, stored.recommender, stored.rank) == ("", "trending", 1)
    item = next(i for i in items if i.external_id == first["item"])
    now = datetime.now(UTC)
    store(
        [
            (users[0], item, "click", now, {"recommendation_id": first["recommendation_id"]}),
            (users[0], item, "play", now + timedelta(seconds=30), None),
        ]
    )
    got = cells(now.date(), (now + timedelta(seconds=30)).date())
    assert sum(n for k, n in got.items() if k[1:] == ("", "trending", "play:attributed")) == 1


def test_home_rows_record_one_placement_per_kind_of_row():
    assert impact.home_row_placement("because_m001") == "home:because"
    assert impact.home_row_placement("new_in_anime") == "home:new_in"
    assert impact.home_row_placement("top_picks") == "home:top_picks"


@override_settings(IMPACT_RECORD_IMPRESSIONS=False)
def test_recording_impressions_can_be_switched_off(db):
    assert impact.impressions_record(results=[object()], placement_key="home") == 0


def test_the_demo_history_is_deterministic_idempotent_and_attributed(db):
    people = factories.profiles(5)
    items = factories.items(5)
    factories.events([(people[n % 5], items[n % 5], "play") for n in range(60)], step=timedelta(hours=6))
    first = impact.impact_demo_seed(days=30, seed=1)
    assert first["clicks"] > 0 and first["impressions"] == first["clicks"] * 12
    counts = (Event.objects.filter(type="click").count(), RecommendationImpression.objects.count())
    impact.impact_demo_seed(days=30, seed=1)
    assert (Event.objects.filter(type="click").count(), RecommendationImpression.objects.count()) == counts
    attributed = ImpactDaily.objects.filter(metric="play:attributed").aggregate(n=Sum("count"))["n"]
    assert attributed == first["clicks"]  # every demo click precedes its own play
