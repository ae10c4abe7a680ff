"""Interleaving and bandit experiments through the product: serving, clicks, rewards, analysis, report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from scipy import stats as sps

from experiments import modes, services, tasks
from experiments.models import BanditAllocation, Experiment, ExperimentMetric, Exposure, InterleavedImpression
from personalization import serving
from personalization.models import Event, Placement, Recommender
from tests import factories
from tests.experiments import builders
from tests.personalization.test_serving import clusters, train, train_trending  # noqa: F401

pytestmark = pytest.mark.django_db


def interleaving_experiment(key="home-il", variants=None, start=True) -> Experiment:
    exp = Experiment(key=key, name="Trending vs kNN", kind=Experiment.Kind.INTERLEAVING)
    services.experiment_save(
        experiment=exp,
        variants=variants
        or [
            {
                "key": "a",
                "name": "Trending",
                "weight": 0.5,
                "payload": {"placement": "home", "recommender": "trending"},
            },
            {
                "key": "b",
                "name": "kNN",
                "weight": 0.5,
                "payload": {"placement": "home", "recommender": "knn"},
            },
        ],
        metrics=[],
    )
    if start:
        services.experiment_start(experiment=exp)
    return exp


@pytest.fixture
def two_models(clusters):  # noqa: F811 (the fixture imported above)
    """Trending and item-kNN trained on two taste clusters, and a "home" placement."""
    _, users, _, _ = clusters
    train_trending()
    train("knn", "item_knn")
    Placement.objects.create(
        key="home", name="Home", recommender=Recommender.objects.get(name="trending"), k=6
    )
    return None, users


def click(profile, rid: str, at=None) -> Event:
    return builders.event(profile, "click", at or timezone.now(), recommendation_id=rid)


def test_an_interleaving_test_cannot_start_without_two_recommenders_on_one_placement():
    exp = interleaving_experiment(
        variants=[
            {"key": "a", "name": "A", "weight": 0.5, "payload": {"placement": "home", "recommender": "x"}},
            {"key": "b", "name": "B", "weight": 0.5, "payload": {"placement": "email"}},
        ],
        start=False,
    )
    problems = " ".join(services.experiment_problems(experiment=exp))
    assert "name a recommender" in problems and "same placement" in problems
    with pytest.raises(services.ExperimentError):
        services.experiment_start(experiment=exp)


def test_the_placement_serves_a_team_draft_list_and_records_each_items_team(client_as, two_models):
    _, users = two_models
    exp = interleaving_experiment()
    body = (
        client_as("marketer")
        .get("/api/v1/recommendations", {"placement": "home", "user_id": users[3].external_id})
        .json()
    )
    assert body["experiment"]["key"] == exp.key and body["experiment"]["kind"] == "interleaving"
    results = body["results"]
    assert len(results) == 6 and len({r["item"] for r in results}) == 6
    parsed = [modes.recommendation_id_parse(r["recommendation_id"]) for r in results]
    assert all(p is not None for p in parsed) and len({p[0] for p in parsed}) == 1
    teams = [p[1] for p in parsed]
    # Team draft: after every pair of picks both teams have contributed equally.
    assert all(teams[:i].count("A") == teams[:i].count("B") for i in range(0, 7, 2))
    assert [r["recommender"] for r in results] == ["trending" if t == "A" else "knn" for t in teams]
    impression = InterleavedImpression.objects.get(experiment=exp)
    assert impression.token == parsed[0][0] and [t for _, t in impression.items] == teams
    assert impression.profile_id == users[3].pk


def test_clicks_credit_their_team_and_the_sign_test_is_scipys(two_models):
    _, users = two_models
    exp = interleaving_experiment()
    expected = {"A": 0, "B": 0}
    for n, user in enumerate(users):
        served = serving.recommendations_get(user_id=user.external_id, placement_key="home")
        by_team = {}
        for r in served.results:
            by_team.setdefault(modes.recommendation_id_parse(r.recommendation_id)[1], []).append(r)
        # 14 profiles prefer B, 3 prefer A, 3 click nothing; a double click counts once.
        team = "B" if n < 14 else ("A" if n < 17 else None)
        if team:
            rid = by_team[team][0].recommendation_id
            click(user, rid)
            click(user, rid)
            expected[team] += 1
    click(users[19], "f" * 32 + ".B1")  # an id never served: ignored
    later = timezone.now() + timedelta(minutes=1)
    results = services.experiment_analyze(experiment_id=exp.pk, as_of=later).results
    section = results["interleaving"]
    assert (section["wins_a"], section["wins_b"]) == (expected["A"], expected["B"]) == (3, 14)
    assert section["clicks_b"] == 14 and section["ties"] == 3 and section["impressions"] == 20
    assert section["p_value"] == pytest.approx(sps.binomtest(3, 17, 0.5).pvalue)
    assert results["verdicts"][0]["tone"] == "good"
    assert "users prefer knn" in results["verdicts"][0]["text"]


def test_the_interleaving_report_shows_the_test_and_its_chart(client_as, two_models):
    _, users = two_models
    exp = interleaving_experiment()
    served = (
        client_as("marketer")
        .get("/api/v1/recommendations", {"placement": "home", "user_id": users[0].external_id})
        .json()
    )
    click(users[0], served["results"][0]["recommendation_id"])
    services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now() + timedelta(minutes=1))
    html = client_as("analyst").get(exp.get_absolute_url()).content.decode()
    assert "Interleaving" in html and 'id="chart-interleaving"' in html and "sign test" in html


def bandit(key="hero-banner", arms=3, min_share=0.1) -> Experiment:
    reward = builders.metric("signup", event_type="purchase", window_hours=24)
    exp = Experiment(key=key, name="Hero banner", kind=Experiment.Kind.BANDIT, bandit_min_share=min_share)
    services.experiment_save(
        experiment=exp,
        variants=[
            {"key": f"arm{i}", "name": f"Banner {i}", "weight": 1 / arms, "payload": {"module": f"b{i}"}}
            for i in range(arms)
        ],
        metrics=[(reward, ExperimentMetric.Role.PRIMARY)],
    )
    services.experiment_start(experiment=exp)
    return exp


def test_a_bandit_refuses_a_floor_it_cannot_give_every_arm():
    exp = bandit(key="too-many", arms=2, min_share=0.5)
    Experiment.objects.filter(pk=exp.pk).update(status="draft", bandit_min_share=0.4)
    exp = Experiment.objects.get(pk=exp.pk)
    exp.variants.update(weight=0.2)
    for i in range(2, 4):
        exp.variants.create(key=f"arm{i}", name=f"Banner {i}", weight=0.2, position=i)
    assert any("impossible" in p for p in services.experiment_problems(experiment=exp))


def test_the_assignment_api_draws_an_arm_per_request_and_records_exposures(client_as):
    exp = bandit()
    seen = set()
    for _ in range(40):
        body = (
            client_as("marketer").get(f"/api/v1/experiments/{exp.key}/assignment", {"user_id": "u1"}).json()
        )
        assert body["in_experiment"] and body["reason"] == "drawn" and body["exposure_recorded"]
        seen.add(body["variant"])
    assert seen == {"arm0", "arm1", "arm2"}, "not sticky: every request draws"
    assert Exposure.objects.filter(experiment=exp).count() == 40
    body = (
        client_as("marketer")
        .get(f"/api/v1/experiments/{exp.key}/assignment", {"user_id": "u1", "record": "false"})
        .json()
    )
    assert body["exposure_recorded"] is False and Exposure.objects.filter(experiment=exp).count() == 40


def test_rewards_within_the_window_move_traffic_to_the_best_arm_and_every_arm_keeps_its_floor():
    exp = bandit()
    now = timezone.now().replace(second=0, microsecond=0)
    start = now - timedelta(days=2)
    rates = {"arm0": 0.1, "arm1": 0.5, "arm2": 0.2}
    truth = {}
    profiles = factories.profiles(300)
    for n, profile in enumerate(profiles):
        arm = f"arm{n % 3}"
        at = start + timedelta(minutes=n)
        Exposure.objects.create(
            experiment=exp, phase=1, profile=profile, variant=exp.variants.get(key=arm), timestamp=at
        )
        converted = (n // 3) % 10 < rates[arm] * 10
        if converted:
            builders.event(profile, "purchase", at + timedelta(hours=2))
        elif n % 7 == 0:
            builders.event(profile, "purchase", at + timedelta(hours=30))  # outside the 24 h window
        trials, successes = truth.get(arm, (0, 0))
        truth[arm] = (trials + 1, successes + int(converted))
    allocation = modes.bandit_update(experiment=exp, now=now)
    assert {k: (v["trials"], v["successes"]) for k, v in allocation.arms.items()} == truth
    assert max(allocation.shares, key=allocation.shares.get) == "arm1"
    assert all(share >= 0.1 - 1e-9 for share in allocation.shares.values())
    assert sum(allocation.shares.values()) == pytest.approx(1)
    modes.bandit_update(experiment=exp, now=now + timedelta(seconds=20))  # the same minute: overwritten
    assert BanditAllocation.objects.filter(experiment=exp).count() == 1
    # Draws now follow the new shares.
    draws = [
        services.experiment_assign(key=exp.key, user_id=f"x{i}", record=False).variant.key for i in range(300)
    ]
    assert draws.count("arm1") > draws.count("arm0")


def test_the_beat_task_updates_running_bandits_and_the_report_charts_the_allocation(client_as):
    exp = bandit()
    services.experiment_assign(key=exp.key, user_id="u1")
    assert tasks.bandits_update_running.delay().get() == 1
    assert BanditAllocation.objects.filter(experiment=exp).count() == 1
    services.experiment_analyze(experiment_id=exp.pk)
    html = client_as("analyst").get(reverse("experiments:experiment_detail", args=[exp.key])).content.decode()
    assert 'id="chart-allocation"' in html and "Chance to be best" in html


def test_a_reward_credits_only_the_latest_exposure_before_it():
    """Every request draws an arm and records an exposure, so one profile often sees several
    banners within a reward window. Its click counts once, for the banner it saw last."""
    exp = bandit()
    arms = {v.key: v for v in exp.variants.all()}
    now = timezone.now().replace(second=0, microsecond=0)
    start = now - timedelta(days=1)
    repeat, switch, quiet = factories.profiles(3)

    def expose(profile, arm, minutes):
        Exposure.objects.create(
            experiment=exp,
            phase=1,
            profile=profile,
            variant=arms[arm],
            timestamp=start + timedelta(minutes=minutes),
        )

    # The same banner twice, then one click: one success out of two trials.
    expose(repeat, "arm0", 0)
    expose(repeat, "arm0", 10)
    builders.event(repeat, "purchase", start + timedelta(minutes=20))
    # arm1, then arm2, then one click: arm2 earned it, arm1 did not.
    expose(switch, "arm1", 0)
    expose(switch, "arm2", 30)
    builders.event(switch, "purchase", start + timedelta(minutes=40))
    # A click before any later exposure still credits the earlier one; the later one is a failure.
    expose(quiet, "arm1", 0)
    builders.event(quiet, "purchase", start + timedelta(minutes=5))
    expose(quiet, "arm1", 60)
    allocation = modes.bandit_update(experiment=exp, now=now)
    got = {k: (v["trials"], v["successes"]) for k, v in allocation.arms.items()}
    assert got == {"arm0": (2, 1), "arm1": (3, 1), "arm2": (1, 1)}
    # Three clicks, three successes: none credited twice.
    assert sum(s for _, s in got.values()) == 3
