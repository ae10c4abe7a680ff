"""Segment rules: every condition kind, validation paths, refresh history and the concurrency guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catalog import services as catalog_services
from catalog.models import Item, ItemTag, Tag
from personalization import segments
from personalization.models import (
    DeclaredPreference,
    Event,
    Profile,
    Segment,
    SegmentMembership,
    SegmentRefresh,
    Source,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def world(db):
    """Five people and two items (one tagged Genre > Anime > Mecha, one Genre > Drama)."""
    genre = Tag.objects.add_root({"name": "Genre"})
    anime = catalog_services.tag_create(name="Anime", parent=genre)
    mecha = catalog_services.tag_create(name="Mecha", parent=anime)
    drama = catalog_services.tag_create(name="Drama", parent=Tag.objects.get(pk=genre.pk))
    robot, weepie = (
        Item.objects.create(external_id="robot", title="Robot"),
        Item.objects.create(external_id="weepie", title="Weepie"),
    )
    ItemTag.objects.create(item=robot, tag=mecha)
    ItemTag.objects.create(item=weepie, tag=drama)
    people = {
        name: Profile.objects.create(external_id=name, traits=traits)
        for name, traits in [
            ("ann", {"plan": "gold", "age": 34, "email": "ann@example.com", "signup": "2024-03-01"}),
            ("bob", {"plan": "free", "age": 19, "email": "bob@test.org", "signup": "2025-11-20"}),
            ("cat", {"plan": "gold", "age": 51}),
            ("dan", {}),
            ("eve", {"plan": "silver", "age": 27}),
        ]
    }
    return {"people": people, "robot": robot, "weepie": weepie, "anime": anime, "drama": drama}


def track(profile, kind, *, days_ago=0.0, item=None, value=None, name=None, **properties):
    source, _ = Source.objects.get_or_create(name="test")
    when = NOW - timedelta(days=days_ago)
    return Event.objects.create(
        source=source,
        message_id=f"m{Event.objects.count()}",
        name=name or kind,
        type=kind,
        profile=profile,
        item=item,
        value=value,
        properties=properties,
        timestamp=when,
        received_at=when,
    )


def rule(*conditions, op="and", negate=False):
    return {"version": 1, "root": {"op": op, "not": negate, "conditions": list(conditions)}}


def members(*conditions, op="and", negate=False) -> set[str]:
    queryset = segments.rule_queryset(rule(*conditions, op=op, negate=negate), now=NOW)
    return set(queryset.values_list("external_id", flat=True))


# --- trait conditions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "gold", {"ann", "cat"}),
        ("neq", "gold", {"bob", "eve"}),
        ("contains", "EXAMPLE", {"ann"}),
        ("starts_with", "bob@", {"bob"}),
        ("gt", 30, {"ann", "cat"}),
        ("lt", 30, {"bob", "eve"}),
        ("between", [20, 40], {"ann", "eve"}),
        ("in", ["silver", "free"], {"bob", "eve"}),
        ("is_set", None, {"ann", "bob", "cat", "eve"}),
    ],
)
def test_trait_conditions_filter_profiles_by_their_traits(world, op, value, expected):
    field = {"contains": "email", "starts_with": "email", "gt": "age", "lt": "age", "between": "age"}.get(
        op, "plan"
    )
    assert members({"kind": "trait", "field": field, "op": op, "value": value}) == expected


def test_trait_before_and_after_compare_iso_dates(world):
    assert members({"kind": "trait", "field": "signup", "op": "before", "value": "2025-01-01"}) == {"ann"}
    assert members({"kind": "trait", "field": "signup", "op": "after", "value": "2025-01-01"}) == {"bob"}


def test_a_negated_group_holds_people_without_the_trait_too(world):
    got = members({"kind": "trait", "field": "plan", "op": "eq", "value": "gold"}, negate=True)
    assert got == {"bob", "dan", "eve"}


def test_or_groups_nest_inside_and_groups(world):
    got = members(
        {"kind": "trait", "field": "age", "op": "gt", "value": 20},
        {
            "op": "or",
            "conditions": [
                {"kind": "trait", "field": "plan", "op": "eq", "value": "silver"},
                {"kind": "trait", "field": "age", "op": "gt", "value": 50},
            ],
        },
    )
    assert got == {"cat", "eve"}


# --- behaviour conditions ---------------------------------------------------------------------


def test_performed_counts_events_on_items_below_a_tag_in_a_window(world):
    p, robot, weepie = world["people"], world["robot"], world["weepie"]
    for days in (1, 2, 3):
        track(p["ann"], "play", days_ago=days, item=robot)
    track(p["bob"], "play", days_ago=1, item=robot)
    track(p["bob"], "play", days_ago=40, item=robot)
    track(p["cat"], "play", days_ago=1, item=weepie)
    base = {"kind": "performed", "event": "play", "item_tag": "genre/anime", "last_days": 30}
    assert members({**base, "count_op": "at_least", "count": 3}) == {"ann"}
    assert members({**base, "count_op": "exactly", "count": 1}) == {"bob"}
    assert members({**base, "count_op": "at_most", "count": 1}) == {"bob", "cat", "dan", "eve"}
    assert members({**base, "item_tag": "genre"}) == {"ann", "bob", "cat"}


def test_performed_filters_on_event_name_properties_and_dates(world):
    p = world["people"]
    track(p["ann"], "other", name="Quiz Finished", days_ago=5, score=9, device="tv")
    track(p["bob"], "other", name="Quiz Finished", days_ago=5, score=3, device="phone")
    track(p["cat"], "other", name="Quiz Finished", days_ago=50, score=9, device="tv")
    cond = {
        "kind": "performed",
        "name": "Quiz Finished",
        "properties": [
            {"property": "score", "op": "gt", "value": 5},
            {"property": "device", "op": "eq", "value": "tv"},
        ],
    }
    assert members(cond) == {"ann", "cat"}
    assert members({**cond, "from": "2026-05-20", "to": "2026-05-31"}) == {"ann"}


def test_not_performed_holds_people_without_a_matching_event(world):
    p = world["people"]
    track(p["ann"], "purchase", days_ago=2)
    track(p["bob"], "purchase", days_ago=60)
    assert members({"kind": "not_performed", "event": "purchase", "last_days": 30}) == {
        "bob",
        "cat",
        "dan",
        "eve",
    }


def test_first_time_within_excludes_people_who_did_it_before(world):
    p = world["people"]
    track(p["ann"], "purchase", days_ago=2)
    track(p["bob"], "purchase", days_ago=2)
    track(p["bob"], "purchase", days_ago=90)
    assert members({"kind": "first_time_within", "event": "purchase", "last_days": 7}) == {"ann"}


def test_stopped_holds_people_active_in_the_long_window_but_not_the_recent_one(world):
    p = world["people"]
    track(p["ann"], "play", days_ago=40)
    track(p["bob"], "play", days_ago=40)
    track(p["bob"], "play", days_ago=2)
    track(p["cat"], "play", days_ago=200)
    assert members({"kind": "stopped", "event": "play", "long_days": 90, "recent_days": 7}) == {"ann"}


def test_sequence_needs_b_after_a_within_the_hours(world):
    p = world["people"]
    track(p["ann"], "add_to_cart", days_ago=3)
    track(p["ann"], "purchase", days_ago=3 - 1 / 24)
    track(p["bob"], "add_to_cart", days_ago=3)
    track(p["bob"], "purchase", days_ago=1)
    track(p["cat"], "purchase", days_ago=3.01)
    track(p["cat"], "add_to_cart", days_ago=3)
    cond = {"kind": "sequence", "event": "add_to_cart", "then_event": "purchase", "within_hours": 2}
    assert members(cond) == {"ann"}


def test_engagement_completion_rate_divides_completes_by_plays(world):
    p = world["people"]
    for _ in range(4):
        track(p["ann"], "play", days_ago=1)
    for _ in range(3):
        track(p["ann"], "complete", days_ago=1)
    track(p["bob"], "play", days_ago=1)
    track(p["cat"], "complete", days_ago=1)  # no plays: no rate
    rate = {"kind": "engagement", "metric": "completion_rate", "last_days": 30}
    assert members({**rate, "op": "gte", "value": 0.5}) == {"ann"}
    assert members({**rate, "op": "lte", "value": 0.5}) == {"bob"}


def test_engagement_active_days_counts_distinct_days(world):
    p = world["people"]
    for days in (1, 1.1, 2, 3):
        track(p["ann"], "view", days_ago=days)
    track(p["bob"], "view", days_ago=1)
    track(p["bob"], "view", days_ago=1.05)
    cond = {"kind": "engagement", "metric": "active_days", "last_days": 7, "op": "gte", "value": 3}
    assert members(cond) == {"ann"}


def test_quintile_scores_match_a_brute_force_ranking():
    values = {n: float(v) for n, v in enumerate([5, 1, 3, 3, 9, 7, 2, 8, 6, 4])}
    scores = segments.quintile_scores(values)
    ordered = sorted(values.values())
    for key, value in values.items():
        midrank = sum(1 for v in ordered if v < value) + sum(1 for v in ordered if v == value) / 2
        assert scores[key] == min(5, 1 + int(midrank / len(ordered) * 5))
    # Ten distinct values: two per quintile.
    assert sorted(scores.values()) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert segments.quintile_scores({1: 1.0, 2: 2.0}, higher_is_better=False) == {1: 4, 2: 2}


def test_rfm_scores_and_groups_select_recent_frequent_buyers(world):
    p = world["people"]
    for _ in range(10):
        track(p["ann"], "purchase", days_ago=1, value=20)
    track(p["bob"], "view", days_ago=300)
    for _ in range(3):
        track(p["cat"], "purchase", days_ago=100, value=5)
    track(p["eve"], "view", days_ago=20)
    assert members({"kind": "rfm", "score": "frequency", "min": 5}) == {"ann"}
    assert members({"kind": "rfm", "score": "monetary", "min": 5}) == {"ann"}
    assert members({"kind": "rfm", "group": "champions"}) == {"ann"}
    assert segments.rfm_group(1, 1) == "lost"


def test_frustration_finds_abandoners_and_carts_left_without_purchase(world):
    p = world["people"]
    track(p["ann"], "abandon", days_ago=1)
    track(p["ann"], "abandon", days_ago=2)
    track(p["bob"], "abandon", days_ago=1)
    assert members({"kind": "frustration", "signal": "abandon", "count": 2, "last_days": 7}) == {"ann"}
    track(p["cat"], "add_to_cart", days_ago=3)
    track(p["eve"], "add_to_cart", days_ago=3)
    track(p["eve"], "purchase", days_ago=2.9)
    track(p["dan"], "add_to_cart", days_ago=0.1)  # its 24 h window is still open
    cart = {"kind": "frustration", "signal": "cart_abandon", "within_hours": 24, "last_days": 7}
    assert members(cart) == {"cat"}


def test_member_of_and_declared_preference(world):
    p = world["people"]
    vip = Segment.objects.create(key="vip", name="VIP")
    SegmentMembership.objects.create(segment=vip, profile=p["ann"], entered_at=NOW)
    SegmentMembership.objects.create(segment=vip, profile=p["bob"], entered_at=NOW, exited_at=NOW)
    assert members({"kind": "member_of", "segment": vip.pk}) == {"ann"}
    DeclaredPreference.objects.create(profile=p["cat"], tag=world["anime"], sentiment=1)
    DeclaredPreference.objects.create(profile=p["dan"], tag=world["anime"], sentiment=-1)
    assert members({"kind": "declared_preference", "tag": "genre/anime"}) == {"cat"}
    assert members({"kind": "declared_preference", "tag": "genre", "sentiment": "dislike"}) == {"dan"}


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"version": 2, "root": {}}, "version"),
        (rule(), "root.conditions"),
        (rule({"kind": "nope"}), "root.conditions[0].kind"),
        (
            rule(
                {"kind": "trait", "field": "plan", "op": "eq", "value": "x"},
                {"kind": "trait", "field": "a b"},
            ),
            "root.conditions[1].field",
        ),
        (rule({"kind": "trait", "field": "age", "op": "gt", "value": "old"}), "root.conditions[0].value"),
        (rule({"kind": "trait", "field": "age", "op": "drop table"}), "root.conditions[0].op"),
        (
            rule({"kind": "performed", "event": "play", "item_tag": "genre/nope"}),
            "root.conditions[0].item_tag",
        ),
        (
            rule({"kind": "performed", "event": "play", "count_op": "at_least", "count": -1}),
            "root.conditions[0].count",
        ),
        (
            rule({"kind": "performed", "event": "play", "properties": [{"property": "x;", "op": "eq"}]}),
            "root.conditions[0].properties[0].property",
        ),
        (
            rule(
                {
                    "op": "or",
                    "conditions": [{"kind": "stopped", "event": "play", "long_days": 7, "recent_days": 9}],
                }
            ),
            "root.conditions[0].conditions[0].recent_days",
        ),
        (rule({"kind": "member_of", "segment": 999}), "root.conditions[0].segment"),
        (
            rule({"kind": "performed", "event": "play", "from": "2026-05-02", "to": "2026-05-01"}),
            "root.conditions[0].to",
        ),
    ],
)
def test_validation_errors_name_the_part_of_the_rule(world, bad, path):
    with pytest.raises(segments.RuleError) as error:
        segments.rule_validate(bad)
    assert error.value.path == path


def test_a_segment_cannot_contain_itself(world):
    segment = Segment.objects.create(key="loop", name="Loop")
    with pytest.raises(segments.RuleError, match="itself"):
        segments.rule_validate(rule({"kind": "member_of", "segment": segment.pk}), segment_id=segment.pk)


def test_the_estimate_counts_matching_profiles(world):
    assert segments.segment_estimate(rule={**rule({"kind": "trait", "field": "plan", "op": "is_set"})}) == 4


# --- refresh ----------------------------------------------------------------------------------


def gold_segment() -> Segment:
    return Segment.objects.create(
        key="gold", name="Gold", rule=rule({"kind": "trait", "field": "plan", "op": "eq", "value": "gold"})
    )


def test_a_refresh_records_entries_and_exits_without_rewriting_history(world):
    p, segment = world["people"], gold_segment()
    first = segments.segment_refresh(segment=segment, now=NOW)
    assert (first.status, first.size, first.entered, first.exited) == ("succeeded", 2, 2, 0)
    assert first.duration_seconds is not None

    Profile.objects.filter(pk=p["ann"].pk).update(traits={"plan": "free"})
    Profile.objects.filter(pk=p["eve"].pk).update(traits={"plan": "gold"})
    later = NOW + timedelta(hours=1)
    second = segments.segment_refresh(segment=segment, now=later)
    assert (second.size, second.entered, second.exited) == (2, 1, 1)

    ann_stay = SegmentMembership.objects.get(segment=segment, profile=p["ann"])
    assert (ann_stay.entered_at, ann_stay.exited_at) == (NOW, later)
    cat_stay = SegmentMembership.objects.get(segment=segment, profile=p["cat"])
    assert (cat_stay.entered_at, cat_stay.exited_at) == (NOW, None)
    segment.refresh_from_db()
    assert (segment.size, segment.last_refreshed_at) == (2, later)

    Profile.objects.filter(pk=p["ann"].pk).update(traits={"plan": "gold"})
    segments.segment_refresh(segment=segment, now=later + timedelta(hours=1))
    assert SegmentMembership.objects.filter(segment=segment, profile=p["ann"]).count() == 2
    assert segments.segment_resolver(p["ann"].pk, [segment.pk]) is True
    assert segments.segment_resolver(p["bob"].pk, [segment.pk]) is False


def test_a_second_refresh_is_refused_while_one_runs(world):
    segment = gold_segment()
    SegmentRefresh.objects.create(segment=segment, started_at=NOW)
    with pytest.raises(segments.SegmentBusy):
        segments.segment_refresh(segment=segment, now=NOW)
    assert SegmentMembership.objects.count() == 0


def test_a_failed_refresh_is_recorded_and_frees_the_segment(world):
    segment = Segment.objects.create(key="broken", name="Broken", rule={"version": 1, "root": {}})
    with pytest.raises(segments.RuleError):
        segments.segment_refresh(segment=segment, now=NOW)
    assert SegmentRefresh.objects.get(segment=segment).status == "failed"


def test_due_segments_follow_their_schedule_and_stale_refreshes_are_failed(world):
    fresh, stale, manual = (
        gold_segment(),
        Segment.objects.create(key="s", name="S"),
        Segment.objects.create(key="m", name="M", refresh_every_minutes=None),
    )
    Segment.objects.filter(pk=fresh.pk).update(last_refreshed_at=NOW - timedelta(minutes=10))
    Segment.objects.filter(pk=stale.pk).update(last_refreshed_at=NOW - timedelta(minutes=61))
    stuck = SegmentRefresh.objects.create(segment=fresh, started_at=NOW - timedelta(hours=2))
    assert segments.segments_refresh_due(now=NOW) == [stale.pk]
    assert manual.pk not in segments.segments_refresh_due(now=NOW)
    stuck.refresh_from_db()
    assert stuck.status == "failed"


def test_a_static_upload_sets_members_and_reports_unknown_ids(world):
    segment = Segment.objects.create(key="list", name="List", kind=Segment.Kind.STATIC)
    report = segments.segment_upload(segment=segment, file="user_id\nann\nbob\nzed\n\n", now=NOW)
    assert (report.matched, report.unknown, report.refresh.size) == (2, ["zed"], 2)
    report = segments.segment_upload(segment=segment, file="bob\n", now=NOW + timedelta(hours=1))
    assert (report.refresh.entered, report.refresh.exited) == (0, 1)


def test_the_sparkline_spans_the_width():
    points = segments.sparkline_points([0, 5, 10], width=100, height=20)
    assert points.split()[0].startswith("0.0,") and points.split()[-1] == "100.0,2.0"


def test_the_beat_task_refreshes_due_segments_on_a_worker(world):
    from personalization import tasks

    segment = gold_segment()
    assert tasks.segments_refresh_due() == 1  # eager in tests: the refresh ran inline
    segment.refresh_from_db()
    assert segment.size == 2 and segment.refreshes.get().trigger == "schedule"
    assert tasks.segments_refresh_due() == 0
