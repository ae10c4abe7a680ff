"""The conditions added to schema v1: restarted, watch time, active days per week, experiment
variant, and event-property filters with every trait operator. Each is checked against a plain
Python count over the same events (brute force), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from django.utils import timezone

from experiments.models import Assignment, Experiment, Variant
from personalization import segments
from personalization.models import Event, Segment, SegmentMembership
from tests.personalization import test_segments as base
from tests.personalization.test_segments import NOW, members, rule, track

pytestmark = pytest.mark.django_db
world = base.world  # the five people and two tagged items of the main segment tests


# --- restarted --------------------------------------------------------------------------------


def test_restarted_needs_the_old_window_a_silent_gap_and_the_recent_window(world):
    p = world["people"]
    # ann: old (60 days ago), silent gap, recent (2 days ago): restarted.
    track(p["ann"], "play", days_ago=60)
    track(p["ann"], "play", days_ago=2)
    # bob: also played in the gap: never stopped.
    track(p["bob"], "play", days_ago=60)
    track(p["bob"], "play", days_ago=20)
    track(p["bob"], "play", days_ago=2)
    # cat: old only (stopped, not restarted); dan: recent only (new, not restarted).
    track(p["cat"], "play", days_ago=60)
    track(p["dan"], "play", days_ago=2)
    # eve: the "old" play is older than old_days, so it does not count.
    track(p["eve"], "play", days_ago=100)
    track(p["eve"], "play", days_ago=2)
    cond = {"kind": "restarted", "event": "play", "old_days": 90, "gap_days": 30, "recent_days": 7}
    assert members(cond) == {"ann"}
    # Window edges: the gap is [now - gap_days, now - recent_days), the old window ends where it begins.
    assert members({**cond, "gap_days": 61}) == set()  # ann's play 60 days ago now falls in the gap
    assert members({**cond, "old_days": 59}) == set()


def test_restarted_agrees_with_a_brute_force_over_random_timelines(world):
    import random

    rng = random.Random(4)
    people = list(world["people"].values())
    days = {
        person.external_id: sorted(rng.uniform(0, 120) for _ in range(rng.randint(0, 6))) for person in people
    }
    for person in people:
        for day in days[person.external_id]:
            track(person, "play", days_ago=day)
    for old, gap, recent in ((90, 30, 7), (120, 60, 14), (40, 20, 10)):
        expected = {
            name
            for name, ds in days.items()
            if any(gap < d <= old for d in ds)
            and not any(recent < d <= gap for d in ds)
            and any(d <= recent for d in ds)
        }
        cond = {"kind": "restarted", "event": "play", "old_days": old, "gap_days": gap, "recent_days": recent}
        assert members(cond) == expected, (old, gap, recent)


@pytest.mark.parametrize(
    ("cond", "path"),
    [
        ({"old_days": 30, "gap_days": 30, "recent_days": 7}, "gap_days"),
        ({"old_days": 90, "gap_days": 7, "recent_days": 7}, "recent_days"),
        ({"gap_days": 30, "recent_days": 7}, "old_days"),
    ],
)
def test_restarted_windows_must_nest(world, cond, path):
    with pytest.raises(segments.RuleError) as error:
        segments.rule_validate(rule({"kind": "restarted", "event": "play", **cond}))
    assert error.value.path == f"root.conditions[0].{path}"


# --- engagement: watch time and active days per week ------------------------------------------


def test_watch_time_sums_the_configured_property_on_playback_events_in_minutes(world):
    p = world["people"]
    track(p["ann"], "play", days_ago=1, watch_seconds=1200)
    track(p["ann"], "complete", days_ago=2, watch_seconds=900)
    track(p["ann"], "abandon", days_ago=3, watch_seconds=600)  # 45 minutes in all
    track(p["ann"], "view", days_ago=1, watch_seconds=99999)  # not a playback event
    track(p["ann"], "pause", days_ago=1, watch_seconds=99999)  # repeated by the end of the viewing
    track(p["bob"], "play", days_ago=1, watch_seconds=600)
    track(p["bob"], "play", days_ago=40, watch_seconds=6000)  # outside the window
    track(p["cat"], "play", days_ago=1, watch_seconds="a lot")  # text is ignored, not an error
    track(p["cat"], "play", days_ago=1, watch_seconds=True)
    track(p["dan"], "play", days_ago=1, position=3000)  # another property
    base = {"kind": "engagement", "metric": "watch_time", "last_days": 30}
    assert members({**base, "op": "gte", "value": 45}) == {"ann"}
    assert members({**base, "op": "gte", "value": 10}) == {"ann", "bob"}
    assert members({**base, "op": "lte", "value": 10}) == {"bob"}
    assert members({**base, "op": "gte", "value": 50, "property": "position"}) == {"dan"}


def test_active_days_per_week_scales_distinct_days_by_the_window(world):
    p = world["people"]
    for day in range(0, 28, 2):  # 14 distinct days in 4 weeks: 3.5 per week
        track(p["ann"], "view", days_ago=day + 0.1)
    for day in range(0, 28, 7):  # 4 days: 1 per week
        track(p["bob"], "view", days_ago=day + 0.1)
    base = {"kind": "engagement", "metric": "active_days_per_week", "last_days": 28}
    assert members({**base, "op": "gte", "value": 3.5}) == {"ann"}
    assert members({**base, "op": "gte", "value": 1}) == {"ann", "bob"}
    assert members({**base, "op": "lte", "value": 1}) == {"bob"}
    with pytest.raises(segments.RuleError, match="between 0 and 7"):
        segments.rule_validate(rule({**base, "op": "gte", "value": 8}))


# --- experiment variant -----------------------------------------------------------------------


@pytest.fixture
def experiment(world):
    exp = Experiment.objects.create(key="new-home", name="New home")
    control = Variant.objects.create(experiment=exp, key="control", name="Control", position=0)
    treat = Variant.objects.create(experiment=exp, key="b", name="B", position=1)
    p = world["people"]
    now = timezone.now()
    for name, variant, exposed in (("ann", treat, True), ("bob", treat, False), ("cat", control, True)):
        Assignment.objects.create(
            experiment=exp,
            profile=p[name],
            variant=variant,
            assigned_at=now,
            first_exposed_at=now if exposed else None,
        )
    return exp


def test_experiment_variant_selects_assigned_people_of_the_current_phase(world, experiment):
    assert members({"kind": "experiment_variant", "experiment": "new-home", "variant": "b"}) == {"ann", "bob"}
    assert members({"kind": "experiment_variant", "experiment": "new-home"}) == {"ann", "bob", "cat"}
    cond = {"kind": "experiment_variant", "experiment": "new-home", "variant": "b", "exposed": True}
    assert members(cond) == {"ann"}
    # A new phase re-randomises: phase-1 assignments no longer count.
    Experiment.objects.filter(pk=experiment.pk).update(phase=2)
    assert members({"kind": "experiment_variant", "experiment": "new-home"}) == set()


@pytest.mark.parametrize(
    ("cond", "path"),
    [
        ({"experiment": "nope"}, "experiment"),
        ({"experiment": "new-home", "variant": "z"}, "variant"),
        ({"experiment": "new-home", "exposed": "yes"}, "exposed"),
        ({}, "experiment"),
    ],
)
def test_experiment_variant_names_unknown_experiments_and_variants(world, experiment, cond, path):
    with pytest.raises(segments.RuleError) as error:
        segments.rule_validate(rule({"kind": "experiment_variant", **cond}))
    assert error.value.path == f"root.conditions[0].{path}"


# --- event property filters take every trait operator -----------------------------------------


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"property": "device", "op": "eq", "value": "tv"}, {"ann"}),
        ({"property": "device", "op": "neq", "value": "tv"}, {"bob", "cat"}),
        ({"property": "device", "op": "contains", "value": "PHO"}, {"bob"}),
        ({"property": "device", "op": "starts_with", "value": "tab"}, {"cat"}),
        ({"property": "minutes", "op": "gt", "value": 30}, {"bob", "cat"}),
        ({"property": "minutes", "op": "lt", "value": 30}, {"ann"}),
        ({"property": "minutes", "op": "between", "value": [40, 50]}, {"bob"}),
        ({"property": "device", "op": "in", "value": ["tv", "tablet"]}, {"ann", "cat"}),
        ({"property": "aired", "op": "before", "value": "2020-01-01"}, {"ann"}),
        ({"property": "aired", "op": "after", "value": "2020-01-01"}, {"bob"}),
        ({"property": "aired", "op": "is_set"}, {"ann", "bob"}),
    ],
)
def test_event_property_filters_take_every_trait_operator(world, prop, expected):
    p = world["people"]
    track(p["ann"], "play", days_ago=1, device="tv", minutes=20, aired="2019-05-01")
    track(p["bob"], "play", days_ago=1, device="phone", minutes=45, aired="2021-02-03")
    track(p["cat"], "play", days_ago=1, device="tablet", minutes=90)
    track(p["dan"], "view", days_ago=1, device="tv", minutes=10)
    assert members({"kind": "performed", "event": "play", "last_days": 7, "properties": [prop]}) == expected


# --- every condition the issue lists exists --------------------------------------------------


def test_every_condition_kind_of_the_issue_validates_and_compiles(world, experiment):
    other = Segment.objects.create(key="vip", name="VIP")
    SegmentMembership.objects.create(segment=other, profile=world["people"]["ann"], entered_at=NOW)
    examples = [
        {"kind": "trait", "field": "plan", "op": "eq", "value": "gold"},
        {"kind": "performed", "event": "play", "item_tag": "genre/anime", "count": 2, "last_days": 30},
        {"kind": "performed", "event": "play", "from": "2026-05-01", "to": "2026-05-31"},
        {"kind": "not_performed", "event": "purchase", "last_days": 30},
        {"kind": "first_time_within", "event": "purchase", "last_days": 7},
        {"kind": "stopped", "event": "play", "long_days": 90, "recent_days": 14},
        {"kind": "restarted", "event": "play", "old_days": 90, "gap_days": 30, "recent_days": 7},
        {"kind": "sequence", "event": "add_to_cart", "then_event": "purchase", "within_hours": 24},
        {"kind": "engagement", "metric": "completion_rate", "op": "gte", "value": 0.5, "last_days": 30},
        {"kind": "engagement", "metric": "watch_time", "op": "gte", "value": 60, "last_days": 30},
        {"kind": "engagement", "metric": "active_days", "op": "gte", "value": 3, "last_days": 30},
        {"kind": "engagement", "metric": "active_days_per_week", "op": "gte", "value": 2, "last_days": 28},
        {"kind": "rfm", "score": "recency", "min": 4},
        {"kind": "rfm", "group": "at_risk"},
        {"kind": "frustration", "signal": "abandon", "last_days": 7},
        {"kind": "frustration", "signal": "cart_abandon", "within_hours": 12, "last_days": 7},
        {"kind": "member_of", "segment": other.pk},
        {"kind": "experiment_variant", "experiment": "new-home", "variant": "b"},
        {"kind": "declared_preference", "tag": "genre/anime"},
    ]
    assert {c["kind"] for c in examples} == set(segments.KINDS)
    union = set()
    for cond in examples:
        union |= members(cond)
    # OR of everything is the union of the parts; AND leaves nobody (nobody played anything).
    assert members(*examples, op="or") == union
    assert members(*examples) == set()
    assert Event.objects.count() == 0


def test_watch_time_property_names_are_checked(world):
    bad = rule({"kind": "engagement", "metric": "watch_time", "op": "gte", "value": 1, "last_days": 7,
                "property": "x'); drop"})  # fmt: skip
    with pytest.raises(segments.RuleError) as error:
        segments.rule_validate(bad)
    assert error.value.path == "root.conditions[0].property"


def test_the_window_edges_are_relative_to_now(world):
    # A guard against an off-by-one in the restarted windows: an event exactly at now - recent_days
    # belongs to the recent window (>=), one exactly at now - gap_days to the gap.
    p = world["people"]
    track(p["ann"], "play", days_ago=90)
    track(p["ann"], "play", days_ago=7)
    cond = {"kind": "restarted", "event": "play", "old_days": 90, "gap_days": 30, "recent_days": 7}
    assert members(cond) == {"ann"}


# --- several property filters, item tags and windows between dates -----------------------------


def test_several_property_filters_and_an_item_tag_must_all_hold(world):
    p, robot, weepie = world["people"], world["robot"], world["weepie"]
    track(p["ann"], "play", days_ago=1, item=robot, device="tv", minutes=50)
    track(p["bob"], "play", days_ago=1, item=robot, device="tv", minutes=10)  # too short
    track(p["cat"], "play", days_ago=1, item=robot, device="phone", minutes=50)  # not on TV
    track(p["dan"], "play", days_ago=1, item=weepie, device="tv", minutes=50)  # not anime
    track(p["eve"], "play", days_ago=1, device="tv")  # no item, no minutes
    device = {"property": "device", "op": "eq", "value": "tv"}
    minutes = {"property": "minutes", "op": "gt", "value": 30}
    cond = {"kind": "performed", "event": "play", "last_days": 7, "properties": [device, minutes]}
    assert members(cond) == {"ann", "dan"}
    assert members({**cond, "item_tag": "genre/anime"}) == {"ann"}
    # The same filters on the other event conditions: not_performed is the complement.
    assert members({**cond, "kind": "not_performed"}) == {"bob", "cat", "eve"}
    assert members({**cond, "properties": [device]}) == {"ann", "bob", "dan", "eve"}
    # Brute force: every filter holds on one and the same event.
    events = segments.Event.objects.filter(type="play")
    expected = {
        e.profile.external_id
        for e in events
        if e.properties.get("device") == "tv" and (e.properties.get("minutes") or 0) > 30
    }
    assert members(cond) == expected


def test_a_window_between_dates_includes_both_whole_utc_days(world):
    from datetime import UTC, datetime

    p = world["people"]

    def play_at(person, when):
        event = track(person, "play")
        segments.Event.objects.filter(pk=event.pk).update(timestamp=when)

    play_at(p["ann"], datetime(2026, 5, 1, 0, 0, tzinfo=UTC))  # the first instant of "from"
    play_at(p["bob"], datetime(2026, 5, 10, 23, 59, 59, tzinfo=UTC))  # the last second of "to"
    play_at(p["cat"], datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC))  # the day before
    play_at(p["dan"], datetime(2026, 5, 11, 0, 0, tzinfo=UTC))  # the day after
    window = {"from": "2026-05-01", "to": "2026-05-10"}
    assert members({"kind": "performed", "event": "play", **window}) == {"ann", "bob"}
    assert members({"kind": "performed", "event": "play", "count_op": "exactly", "count": 0, **window}) == {
        "cat",
        "dan",
        "eve",
    }
    assert members({"kind": "not_performed", "event": "play", **window}) == {"cat", "dan", "eve"}
    # One day: from == to.
    assert members({"kind": "performed", "event": "play", "from": "2026-05-11", "to": "2026-05-11"}) == {
        "dan"
    }


def test_first_time_within_takes_a_window_between_dates(world):
    p = world["people"]
    track(p["ann"], "purchase", days_ago=20)  # first purchase in the window
    track(p["bob"], "purchase", days_ago=40)  # bought before the window, and again in it
    track(p["bob"], "purchase", days_ago=20)
    track(p["cat"], "purchase", days_ago=5)  # first purchase after the window
    window = {"from": "2026-05-05", "to": "2026-05-20"}  # NOW is 2026-06-01: 12 to 27 days ago
    assert members({"kind": "first_time_within", "event": "purchase", **window}) == {"ann"}
    # A later purchase does not undo a first purchase in the window.
    track(p["ann"], "purchase", days_ago=1)
    assert members({"kind": "first_time_within", "event": "purchase", **window}) == {"ann"}


def test_a_sequence_window_between_dates_applies_to_the_first_event(world):
    p = world["people"]
    track(p["ann"], "add_to_cart", days_ago=20)
    track(p["ann"], "purchase", days_ago=19.9)
    track(p["bob"], "add_to_cart", days_ago=2)
    track(p["bob"], "purchase", days_ago=1.9)
    cond = {"kind": "sequence", "event": "add_to_cart", "then_event": "purchase", "within_hours": 24}
    assert members(cond) == {"ann", "bob"}
    assert members({**cond, "from": "2026-05-01", "to": "2026-05-20"}) == {"ann"}


@pytest.mark.parametrize(
    ("cond", "path"),
    [
        (
            {"kind": "performed", "event": "play", "last_days": 7, "from": "2026-05-01", "to": "2026-05-02"},
            "root.conditions[0].from",
        ),
        ({"kind": "performed", "event": "play", "to": "2026-05-02"}, "root.conditions[0].from"),
        ({"kind": "performed", "event": "play", "from": "2026-05-01"}, "root.conditions[0].to"),
        (
            {"kind": "not_performed", "event": "play", "from": "May 1", "to": "2026-05-02"},
            "root.conditions[0].from",
        ),
        ({"kind": "first_time_within", "event": "purchase"}, "root.conditions[0].last_days"),
        (
            {
                "kind": "performed",
                "event": "play",
                "properties": [{"property": "device", "op": "eq", "value": "tv"}, {}],
            },
            "root.conditions[0].properties[1].property",
        ),
        (
            {
                "kind": "performed",
                "event": "play",
                "properties": [{"property": "device", "op": "like", "value": "x"}],
            },
            "root.conditions[0].properties[0].op",
        ),
        (
            {
                "kind": "performed",
                "event": "play",
                "properties": [{"property": "n", "op": "between", "value": [5, 1]}],
            },
            "root.conditions[0].properties[0].value",
        ),
        (
            {"kind": "performed", "event": "play", "properties": {"device": "tv"}},
            "root.conditions[0].properties",
        ),
    ],
)
def test_windows_and_property_filters_name_the_wrong_part(world, cond, path):
    with pytest.raises(segments.RuleError) as error:
        segments.rule_validate(rule(cond))
    assert error.value.path == path


def test_the_api_documents_rules_that_validate(world):
    from personalization import api

    for example in (api.SEGMENT_RULE_EXAMPLE, api.SEGMENT_RULE_DATES_EXAMPLE):
        segments.rule_validate(example)
