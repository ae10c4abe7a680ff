"""Bandit and interleaving results broken down by segment, checked against brute-force loops."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from scipy import stats as sps

from experiments import services
from experiments.models import Experiment, ExperimentMetric, Exposure, InterleavedImpression
from personalization.models import Event, Profile, Segment, SegmentMembership
from tests.experiments import builders

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(second=0, microsecond=0) - timedelta(days=4)
WINDOW = timedelta(hours=24)


def segments_around_first_exposure(profiles, first_seen) -> tuple[Segment, Segment]:
    """ "heavy" (targeted): a third were members before their first exposure, a third joined
    after it, the rest left before it; "mobile" (chosen): every even profile, from long before."""
    heavy = Segment.objects.create(key="heavy", name="Heavy viewers", kind=Segment.Kind.STATIC)
    mobile = Segment.objects.create(key="mobile", name="Mobile", kind=Segment.Kind.STATIC)
    rows = []
    for i, profile in enumerate(profiles):
        first = first_seen[profile.pk]
        if i % 3 == 0:
            rows.append(
                SegmentMembership(segment=heavy, profile=profile, entered_at=first - timedelta(hours=1))
            )
        elif i % 3 == 1:
            rows.append(
                SegmentMembership(segment=heavy, profile=profile, entered_at=first + timedelta(hours=1))
            )
        else:
            rows.append(
                SegmentMembership(
                    segment=heavy,
                    profile=profile,
                    entered_at=first - timedelta(days=2),
                    exited_at=first - timedelta(hours=1),
                )
            )
        if i % 2 == 0:
            rows.append(
                SegmentMembership(segment=mobile, profile=profile, entered_at=T0 - timedelta(days=30))
            )
    SegmentMembership.objects.bulk_create(rows)
    return heavy, mobile


def members_at_first_exposure(segment: Segment, first_seen: dict[int, object]) -> set[int]:
    out = set()
    for stay in SegmentMembership.objects.filter(segment=segment):
        first = first_seen.get(stay.profile_id)
        if (
            first is not None
            and stay.entered_at <= first
            and (stay.exited_at is None or stay.exited_at > first)
        ):
            out.add(stay.profile_id)
    return out


# --- Bandit ----------------------------------------------------------------------------------


@pytest.fixture
def bandit_world():
    """A three-armed bandit; 36 profiles with one to five exposures each on an hourly grid (so
    some share a time) and purchases at random, often within a window of several exposures."""
    rng = random.Random(3)
    reward = builders.metric("signup", event_type="purchase", window_hours=24)
    exp = Experiment(key="hero", name="Hero", kind=Experiment.Kind.BANDIT, bandit_min_share=0.1)
    services.experiment_save(
        experiment=exp,
        variants=[{"key": f"arm{i}", "name": f"Banner {i}", "weight": 1 / 3} for i in range(3)],
        metrics=[(reward, ExperimentMetric.Role.PRIMARY)],
    )
    services.experiment_start(experiment=exp)
    arms = list(exp.variants.all())
    profiles = Profile.objects.bulk_create([Profile(external_id=f"b{i}") for i in range(36)])
    exposures = []
    for profile in profiles:
        for _ in range(rng.randint(1, 5)):
            at = T0 + timedelta(hours=rng.randrange(72))
            exposures.append(
                Exposure(experiment=exp, profile=profile, variant=rng.choice(arms), timestamp=at)
            )
    Exposure.objects.bulk_create(exposures)
    for profile in profiles:
        for _ in range(rng.randint(0, 2)):
            builders.event(profile, "purchase", T0 + timedelta(hours=rng.randrange(80), minutes=30))
    first_seen = {}
    for x in Exposure.objects.filter(experiment=exp):
        first_seen[x.profile_id] = min(x.timestamp, first_seen.get(x.profile_id, x.timestamp))
    heavy, mobile = segments_around_first_exposure(profiles, first_seen)
    Experiment.objects.filter(pk=exp.pk).update(segment_ids=[heavy.pk], breakdown_segment_ids=[mobile.pk])
    exp.refresh_from_db()
    return exp, heavy, mobile, first_seen


def bandit_brute_force(exp, as_of, members: set[int] | None) -> dict[str, tuple[int, int]]:
    """Per arm: (exposures, exposures credited with a purchase), one exposure at a time: a
    purchase within 24 h credits the profile's latest exposure before it (ties by id)."""
    exposures = list(Exposure.objects.filter(experiment=exp, timestamp__lte=as_of).select_related("variant"))
    purchases = list(Event.objects.filter(type="purchase", timestamp__lte=as_of))
    out: dict[str, list[int]] = {v.key: [0, 0] for v in exp.variants.all()}
    for x in exposures:
        if members is not None and x.profile_id not in members:
            continue
        credited = any(
            e.profile_id == x.profile_id
            and x.timestamp <= e.timestamp < x.timestamp + WINDOW
            and not any(
                y.profile_id == x.profile_id
                and (y.timestamp, y.pk) > (x.timestamp, x.pk)
                and y.timestamp <= e.timestamp
                for y in exposures
            )
            for e in purchases
        )
        out[x.variant.key][0] += 1
        out[x.variant.key][1] += int(credited)
    return {k: (n, s) for k, (n, s) in out.items()}


def test_a_bandit_breaks_trials_and_successes_down_by_membership_at_first_exposure(bandit_world):
    exp, heavy, mobile, first_seen = bandit_world
    as_of = T0 + timedelta(hours=76)
    section = services.experiment_analysis_compute(experiment=exp, as_of=as_of)["bandit"]
    overall = {a["key"]: (a["trials"], a["successes"]) for a in section["arms"]}
    assert overall == bandit_brute_force(exp, as_of, None)
    assert [(s["key"], s["origin"]) for s in section["segments"]] == [
        ("heavy", "targeted"),
        ("mobile", "chosen"),
    ]
    for segment, row in zip((heavy, mobile), section["segments"], strict=True):
        members = members_at_first_exposure(segment, first_seen)
        got = {a["key"]: (a["trials"], a["successes"]) for a in row["arms"]}
        assert got == bandit_brute_force(exp, as_of, members)
        assert sum(p["p_best"] for p in row["arms"]) == pytest.approx(1)
        for arm in row["arms"]:
            assert arm["rate"] == (arm["successes"] / arm["trials"] if arm["trials"] else None)
    # Joining after the first exposure or leaving before it keeps a profile out of "heavy".
    assert len(members_at_first_exposure(heavy, first_seen)) == 12


def test_the_bandit_report_shows_the_breakdown(bandit_world, client_as):
    exp, *_ = bandit_world
    services.experiment_analyze(experiment_id=exp.pk, as_of=T0 + timedelta(hours=76))
    html = client_as("analyst").get(exp.get_absolute_url()).content.decode()
    assert "By segment" in html and "Heavy viewers" in html and "Chance to be best here" in html
    assert "segments do not steer it" in html


# --- Interleaving ----------------------------------------------------------------------------


@pytest.fixture
def interleaving_world():
    """40 profiles shown one or two interleaved lists; each clicks a few results at random."""
    rng = random.Random(5)
    exp = Experiment(key="il", name="Trending vs kNN", kind=Experiment.Kind.INTERLEAVING)
    services.experiment_save(
        experiment=exp,
        variants=[
            {
                "key": "a",
                "name": "A",
                "weight": 0.5,
                "payload": {"placement": "home", "recommender": "trending"},
            },
            {"key": "b", "name": "B", "weight": 0.5, "payload": {"placement": "home", "recommender": "knn"}},
        ],
        metrics=[],
    )
    services.experiment_start(experiment=exp)
    profiles = Profile.objects.bulk_create([Profile(external_id=f"i{i}") for i in range(40)])
    first_seen = {}
    for n, profile in enumerate(profiles):
        for k in range(rng.randint(1, 2)):
            at = T0 + timedelta(hours=n, minutes=10 * k)
            first_seen.setdefault(profile.pk, at)
            token = f"{n:016d}{k:016d}"
            teams = [rng.choice("AB") for _ in range(6)]
            InterleavedImpression.objects.create(
                experiment=exp,
                profile=profile,
                token=token,
                items=[[i, t] for i, t in enumerate(teams)],
                timestamp=at,
            )
            # B's results are clicked more often than A's.
            for rank, team in enumerate(teams, start=1):
                if rng.random() < (0.3 if team == "B" else 0.12):
                    builders.event(
                        profile, "click", at + timedelta(minutes=1), recommendation_id=f"{token}.{team}{rank}"
                    )
    heavy, mobile = segments_around_first_exposure(profiles, first_seen)
    Experiment.objects.filter(pk=exp.pk).update(segment_ids=[heavy.pk], breakdown_segment_ids=[mobile.pk])
    exp.refresh_from_db()
    return exp, heavy, mobile, first_seen


def interleaving_brute_force(members: set[int]) -> tuple[int, int, int]:
    """(wins of A, wins of B, ties) over ``members``, counting each profile's clicks by team."""
    wins = {"A": 0, "B": 0, None: 0}
    for profile_id in members:
        teams = [
            e.properties["recommendation_id"].split(".")[1][0]
            for e in Event.objects.filter(profile_id=profile_id, type="click")
        ]
        a, b = teams.count("A"), teams.count("B")
        wins[None if a == b else ("A" if a > b else "B")] += 1
    return wins["A"], wins["B"], wins[None]


def test_an_interleaving_test_breaks_wins_down_by_membership_at_the_first_list(interleaving_world):
    exp, heavy, mobile, first_seen = interleaving_world
    section = services.experiment_analysis_compute(experiment=exp, as_of=timezone.now())["interleaving"]
    assert [(s["key"], s["origin"]) for s in section["segments"]] == [
        ("heavy", "targeted"),
        ("mobile", "chosen"),
    ]
    for segment, row in zip((heavy, mobile), section["segments"], strict=True):
        members = members_at_first_exposure(segment, first_seen)
        wins_a, wins_b, ties = interleaving_brute_force(members)
        assert (row["profiles"], row["wins_a"], row["wins_b"], row["ties"]) == (
            len(members),
            wins_a,
            wins_b,
            ties,
        )
        assert row["p_value"] == pytest.approx(sps.binomtest(wins_a, wins_a + wins_b, 0.5).pvalue)
    assert section["segments"][0]["profiles"] == 14  # profiles 0, 3, ..., 39: members before their first list


def test_the_interleaving_report_shows_the_breakdown(interleaving_world, client_as):
    exp, *_ = interleaving_world
    services.experiment_analyze(experiment_id=exp.pk)
    html = client_as("analyst").get(exp.get_absolute_url()).content.decode()
    assert "By segment" in html and "Won by B" in html and "Mobile" in html


def test_without_breakdown_segments_the_mode_reports_have_no_segment_section(interleaving_world, client_as):
    exp, *_ = interleaving_world
    Experiment.objects.filter(pk=exp.pk).update(segment_ids=[], breakdown_segment_ids=[])
    exp.refresh_from_db()
    assert (
        services.experiment_analysis_compute(experiment=exp, as_of=timezone.now())["interleaving"]["segments"]
        == []
    )
