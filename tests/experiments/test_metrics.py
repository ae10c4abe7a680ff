"""Metric sufficient statistics come from SQL; they must equal a brute-force loop over the events."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from experiments import services
from experiments.models import Assignment, Metric
from personalization.models import Event, Profile
from tests.experiments import builders

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=20)


@pytest.fixture
def world():
    """60 exposed profiles with random events before and after their exposure."""
    exp = builders.experiment(start=True)
    profiles = Profile.objects.bulk_create([Profile(external_id=f"p{i}") for i in range(60)])
    for i, profile in enumerate(profiles):
        services.experiment_assign_many(key=exp.key, profiles=[profile], now=T0 + timedelta(hours=i))
    rng = random.Random(5)
    for profile in profiles:
        exposed = Assignment.objects.get(profile=profile).first_exposed_at
        for _ in range(rng.randint(0, 8)):
            kind = rng.choice(["complete", "play", "view", "click"])
            at = exposed + timedelta(hours=rng.uniform(-24 * 10, 24 * 12))
            builders.event(profile, kind, at, value=rng.uniform(0, 50), minutes=rng.randint(1, 90))
    return exp


def brute_force(exp, per_profile, *, as_of):
    """Per variant: the per-profile values computed in Python, one profile at a time."""
    out = {}
    for a in Assignment.objects.filter(experiment=exp, holdout=False, first_exposed_at__lte=as_of):
        events = list(Event.objects.filter(profile_id=a.profile_id, timestamp__lt=as_of))
        out.setdefault(a.variant_id, []).append(per_profile(a.first_exposed_at, events))
    return out


def assert_same(sql_stats, values, *, y=None):
    assert set(sql_stats) == set(values)
    for variant_id, xs in values.items():
        s = sql_stats[variant_id]
        xs = np.array(xs, dtype=float)
        assert s.n == len(xs)
        assert s.sum == pytest.approx(xs.sum())
        assert s.sum_sq == pytest.approx((xs**2).sum())
        if y is not None:
            ys = np.array(y[variant_id], dtype=float)
            assert s.sum_y == pytest.approx(ys.sum())
            assert s.sum_xy == pytest.approx((xs * ys).sum())


def test_conversion_within_a_window_counts_only_events_after_the_first_exposure(world):
    metric = builders.metric("completion-48h", event_type="complete", window_hours=48)
    as_of = timezone.now()
    got, _ = services.metric_sufficient_stats(experiment=world, metric=metric, as_of=as_of, cuped=False)

    def convert(exposed, events):
        return int(
            any(
                e.type == "complete" and exposed <= e.timestamp < exposed + timedelta(hours=48)
                for e in events
            )
        )

    assert_same(got, brute_force(world, convert, as_of=as_of))


def test_the_as_of_time_cuts_off_later_exposures_and_events(world):
    metric = builders.metric("plays", kind="mean", event_type="play")
    as_of = T0 + timedelta(hours=30, minutes=30)
    got, _ = services.metric_sufficient_stats(experiment=world, metric=metric, as_of=as_of, cuped=False)

    def plays(exposed, events):
        return sum(1 for e in events if e.type == "play" and e.timestamp >= exposed)

    expected = brute_force(world, plays, as_of=as_of)
    assert sum(len(v) for v in expected.values()) == 31
    assert_same(got, expected)


def test_a_sum_of_a_property_with_cuped_gives_the_pre_exposure_column(world, settings):
    settings.EXPERIMENTS_CUPED_LOOKBACK_DAYS = 7
    metric = builders.metric(
        "minutes", kind="mean", event_type="play", aggregation="sum", value_property="minutes"
    )
    as_of = timezone.now()
    got, _ = services.metric_sufficient_stats(experiment=world, metric=metric, as_of=as_of, cuped=True)

    def post(exposed, events):
        return sum(e.properties["minutes"] for e in events if e.type == "play" and e.timestamp >= exposed)

    def pre(exposed, events):
        return sum(
            e.properties["minutes"]
            for e in events
            if e.type == "play" and exposed - timedelta(days=7) <= e.timestamp < exposed
        )

    assert_same(got, brute_force(world, post, as_of=as_of), y=brute_force(world, pre, as_of=as_of))


def test_winsorisation_caps_per_profile_values_at_the_percentile(world):
    metric = builders.metric(
        "value", kind="mean", event_type="view", aggregation="sum", winsorize_percentile=90
    )
    as_of = timezone.now()
    got, cap = services.metric_sufficient_stats(experiment=world, metric=metric, as_of=as_of, cuped=False)

    def value(exposed, events):
        return sum(e.value for e in events if e.type == "view" and e.timestamp >= exposed)

    raw = brute_force(world, value, as_of=as_of)
    everything = sorted(v for vs in raw.values() for v in vs)
    assert cap == pytest.approx(everything[int(0.9 * (len(everything) - 1))])
    assert_same(got, {k: [min(v, cap) for v in vs] for k, vs in raw.items()})


def test_a_ratio_metric_sums_numerator_and_denominator_per_profile(world):
    metric = builders.metric("ctr", kind="ratio", event_type="click", denominator_event_type="view")
    as_of = timezone.now()
    got, _ = services.metric_sufficient_stats(experiment=world, metric=metric, as_of=as_of)

    def count(kind):
        return lambda exposed, events: sum(1 for e in events if e.type == kind and e.timestamp >= exposed)

    assert_same(
        got, brute_force(world, count("click"), as_of=as_of), y=brute_force(world, count("view"), as_of=as_of)
    )


def test_retention_on_day_n_looks_at_that_day_only(world):
    metric = builders.metric("day3", kind="retention", event_type="", retention_day=3)
    as_of = timezone.now()
    got, _ = services.metric_sufficient_stats(experiment=world, metric=metric, as_of=as_of)

    def retained(exposed, events):
        start = exposed + timedelta(days=3)
        return int(any(start <= e.timestamp < start + timedelta(days=1) for e in events))

    assert_same(got, brute_force(world, retained, as_of=as_of))


def test_event_name_narrows_a_metric_to_one_named_event(world):
    profile = Assignment.objects.filter(experiment=world).first().profile
    exposed = Assignment.objects.get(profile=profile).first_exposed_at
    builders.event(profile, "purchase", exposed + timedelta(hours=1), name="Order Completed")
    builders.event(profile, "purchase", exposed + timedelta(hours=1), name="Refund")
    metric = builders.metric("orders", kind="mean", event_type="purchase", event_name="Order Completed")
    got, _ = services.metric_sufficient_stats(
        experiment=world, metric=metric, as_of=timezone.now(), cuped=False
    )
    assert sum(s.sum for s in got.values()) == 1
    assert Metric.objects.count() >= 2
