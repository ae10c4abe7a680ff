"""Simulated experiments with known true effects through the real pipeline:
events -> assignment -> SQL metrics -> statistics engine -> stored analysis.

Tolerances are three binomial standard errors of the number of repetitions, so the tests
check calibration within sampling error while staying deterministic (fixed seeds).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from experiments import services, stats
from experiments.models import Assignment
from personalization.models import Event, Profile, Source
from tests.experiments import builders

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(microsecond=0) - timedelta(days=5)


def simulate(key: str, *, n: int, rates: tuple[float, float], rng: np.random.Generator, weights=(0.5, 0.5)):
    """One experiment: n new profiles assigned by the service, then completions drawn per variant."""
    exp = builders.experiment(key, start=True, weights=weights)
    profiles = Profile.objects.bulk_create([Profile(external_id=f"{key}-{i}") for i in range(n)])
    assigned = services.experiment_assign_many(key=key, profiles=profiles, now=T0)
    source, _ = Source.objects.get_or_create(name="sim")
    events = []
    for profile in profiles:
        variant = assigned[profile.pk]
        if variant is not None and rng.random() < rates[variant.position]:
            at = T0 + timedelta(hours=float(rng.uniform(0, 48)))
            events.append(
                Event(source=source, message_id=f"{key}-{profile.pk}", name="complete", type="complete",
                      profile=profile, timestamp=at, received_at=at)
            )  # fmt: skip
    Event.objects.bulk_create(events)
    return services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now()).results


def binomial_tolerance(p: float, reps: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / reps)


def test_repeated_aa_experiments_are_significant_about_alpha_of_the_time():
    rng = np.random.default_rng(2024)
    reps = 80
    builders.metric()
    positives = srm_alerts = 0
    for r in range(reps):
        results = simulate(f"aa-{r}", n=300, rates=(0.3, 0.3), rng=rng)
        positives += results["metrics"][0]["variants"][1]["frequentist"]["p_value"] < 0.05
        srm_alerts += results["srm"]["alert"]
    assert positives / reps <= 0.05 + binomial_tolerance(0.05, reps)
    assert srm_alerts <= 1


def test_intervals_cover_a_planted_lift_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    reps = 60
    builders.metric()
    base, lift = 0.3, 0.2
    covered = 0
    lifts = []
    for r in range(reps):
        cell = simulate(f"lift-{r}", n=400, rates=(base, base * (1 + lift)), rng=rng)["metrics"][0][
            "variants"
        ][1]
        covered += cell["frequentist"]["ci_low"] <= lift <= cell["frequentist"]["ci_high"]
        lifts.append(cell["frequentist"]["lift"])
    assert covered / reps >= 0.95 - binomial_tolerance(0.95, reps)
    # The estimate is centred on the truth (mean of 60 estimates, each with sd ~ 0.13).
    assert abs(np.mean(lifts) - lift) < 0.06


def test_a_planted_sample_ratio_mismatch_is_detected():
    rng = np.random.default_rng(3)
    builders.metric()
    results = simulate("srm", n=2000, rates=(0.3, 0.3), rng=rng)
    assert not results["srm"]["alert"]
    # A logging bug loses a quarter of the treatment's exposures.
    exp_id = Assignment.objects.filter(experiment__key="srm").values_list("experiment_id", flat=True).first()
    lost = list(
        Assignment.objects.filter(experiment_id=exp_id, variant__key="v1").values_list("pk", flat=True)[:250]
    )
    Assignment.objects.filter(pk__in=lost).update(first_exposed_at=None)
    results = services.experiment_analyze(
        experiment_id=exp_id, as_of=timezone.now() + timedelta(minutes=1)
    ).results
    assert results["srm"]["alert"] and results["srm"]["p_value"] < 0.001
    assert any(w["kind"] == "srm" for w in results["warnings"])


def test_uneven_weights_are_respected_by_the_assignment():
    rng = np.random.default_rng(5)
    builders.metric()
    results = simulate("uneven", n=3000, rates=(0.3, 0.3), rng=rng, weights=(0.8, 0.2))
    exposed = [v["exposed"] for v in results["variants"]]
    assert abs(exposed[0] / sum(exposed) - 0.8) < 0.03
    assert not results["srm"]["alert"]


# --- Many repetitions on the statistics engine alone (the same entry point the analysis uses) ---


def _summary(c: np.ndarray, t: np.ndarray, c_pre: np.ndarray, t_pre: np.ndarray) -> dict:
    def cell(key, x, y):
        return {
            "key": key, "n": len(x), "sum": float(x.sum()), "sum_sq": float((x * x).sum()),
            "sum_y": float(y.sum()), "sum_y_sq": float((y * y).sum()), "sum_xy": float((x * y).sum()),
        }  # fmt: skip

    return {
        "metrics": [
            {
                "key": "m",
                "kind": "mean",
                "cuped": True,
                "variants": [cell("c", c, c_pre), cell("t", t, t_pre)],
            }
        ]
    }


def test_cuped_analyses_of_hundreds_of_aa_runs_reject_about_alpha_and_cover_a_planted_lift():
    """400 A/A and 400 A/B runs with a pre-exposure covariate (correlation ~0.7), through summary_analyze."""
    rng = np.random.default_rng(11)
    reps, n, lift = 400, 300, 0.1
    rejected = covered = 0
    for _ in range(reps):
        pre = rng.gamma(2.0, 1.0, (2, n))
        noise = rng.gamma(2.0, 0.5, (2, n))
        post = pre + noise  # A/A: the same distribution in both arms
        cell = stats.summary_analyze(_summary(post[0], post[1], pre[0], pre[1]))["metrics"][0]["variants"][1]
        rejected += cell["frequentist"]["p_value"] < 0.05
        treated = post[1] * (1 + lift)
        cell = stats.summary_analyze(_summary(post[0], treated, pre[0], pre[1]))["metrics"][0]["variants"][1]
        covered += cell["frequentist"]["ci_low"] <= lift <= cell["frequentist"]["ci_high"]
    assert abs(rejected / reps - 0.05) <= binomial_tolerance(0.05, reps)
    assert abs(covered / reps - 0.95) <= binomial_tolerance(0.95, reps)


def test_the_srm_alert_fires_about_once_in_a_thousand_clean_runs_and_almost_always_on_a_planted_loss():
    rng = np.random.default_rng(13)
    reps, n = 3000, 20_000
    clean = rng.binomial(n, 0.5, reps)
    alerts = sum(stats.srm_check([int(k), n - int(k)], [0.5, 0.5]).alert for k in clean)
    assert alerts / reps <= 0.001 + binomial_tolerance(0.001, reps)
    # A logging bug drops 10% of the treatment's exposures.
    lossy = [(int(k), int(rng.binomial(n - int(k), 0.90))) for k in clean[:300]]
    detected = sum(stats.srm_check(list(pair), [0.5, 0.5]).alert for pair in lossy)
    assert detected / 300 >= 0.95
