"""Analysis on workers: snapshots per as-of time, idempotent; the results API; analyze_summary."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from experiments import services, stats, tasks
from experiments.models import AnalysisSnapshot, Assignment, VariantResult
from personalization.models import Event, Profile, Source
from tests.experiments import builders

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(microsecond=0) - timedelta(days=3)


def populate(exp, *, n=200, rates=(0.3, 0.3), seed=0, now=T0):
    """Profiles assigned in one batch, then a completion event with the variant's probability."""
    rng = np.random.default_rng(seed)
    profiles = Profile.objects.bulk_create([Profile(external_id=f"{exp.key}-{i}") for i in range(n)])
    assigned = services.experiment_assign_many(key=exp.key, profiles=profiles, now=now)
    positions = {v.pk: v.position for v in exp.variants.all()}
    source, _ = Source.objects.get_or_create(name="sim")
    events = []
    for profile in profiles:
        variant = assigned[profile.pk]
        if variant and rng.random() < rates[positions[variant.pk]]:
            at = now + timedelta(hours=float(rng.uniform(0, 40)))
            events.append(
                Event(source=source, message_id=f"{exp.key}-{profile.pk}", name="complete", type="complete",
                      profile=profile, timestamp=at, received_at=at)
            )  # fmt: skip
    Event.objects.bulk_create(events)
    return profiles


def test_an_analysis_stores_a_snapshot_and_one_row_per_metric_and_variant():
    plays = builders.metric("plays", kind="mean", event_type="play")
    exp = builders.experiment(start=True, others=[(plays, "secondary")])
    populate(exp)
    snapshot = services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now())
    assert VariantResult.objects.filter(snapshot=snapshot).count() == 4
    results = snapshot.results
    assert [m["key"] for m in results["metrics"]] == ["completion", "plays"]
    assert sum(v["exposed"] for v in results["variants"]) == 200
    assert len(results["verdicts"]) == 2


def test_re_running_the_same_as_of_time_overwrites_instead_of_duplicating():
    exp = builders.experiment(start=True)
    populate(exp)
    as_of = timezone.now()
    first = services.experiment_analyze(experiment_id=exp.pk, as_of=as_of)
    second = services.experiment_analyze(experiment_id=exp.pk, as_of=as_of)
    assert first.pk == second.pk
    assert AnalysisSnapshot.objects.count() == 1
    assert VariantResult.objects.count() == 2


def test_the_hourly_task_analyses_running_experiments_only():
    running = builders.experiment("running", start=True)
    builders.experiment("draft")
    populate(running, n=50)
    assert tasks.experiments_analyze_running.delay().get() == 1
    assert list(AnalysisSnapshot.objects.values_list("experiment__key", "trigger")) == [
        ("running", "schedule")
    ]
    # A redelivered beat message lands on the same hour: still one snapshot.
    tasks.experiments_analyze_running.delay()
    assert AnalysisSnapshot.objects.count() == 1


def test_the_analysis_agrees_with_the_statistics_engine_on_raw_values():
    exp = builders.experiment(start=True, cuped=False)
    populate(exp, n=300, rates=(0.3, 0.45), seed=3)
    results = services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now()).results
    values = {}
    for a in Assignment.objects.filter(experiment=exp).select_related("variant"):
        converted = Event.objects.filter(profile_id=a.profile_id, type="complete").exists()
        values.setdefault(a.variant.key, []).append(float(converted))
    expected = stats.welch_test(
        stats.mean_estimate(stats.VariantStats.from_values(values["v1"])),
        stats.mean_estimate(stats.VariantStats.from_values(values["control"])),
    )
    cell = results["metrics"][0]["variants"][1]
    assert cell["frequentist"]["lift"] == pytest.approx(expected.lift)
    assert cell["frequentist"]["p_value"] == pytest.approx(expected.p_value)


def test_a_planted_sample_ratio_mismatch_raises_a_warning():
    exp = builders.experiment(start=True)
    populate(exp, n=400)
    # Drop most of the treatment's exposures, as a broken logger would.
    treated = Assignment.objects.filter(experiment=exp, variant__key="v1").values_list("pk", flat=True)[:120]
    Assignment.objects.filter(pk__in=list(treated)).update(first_exposed_at=None)
    results = services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now()).results
    assert results["srm"]["alert"]
    assert any(w["kind"] == "srm" for w in results["warnings"])


def test_the_verdict_reads_as_a_sentence_with_the_interval_and_the_chance_to_win():
    cell = {
        "frequentist": {"lift": 0.042, "ci_low": 0.011, "ci_high": 0.073, "p_value": 0.008},
        "bayesian": {"chance_to_win": 0.993},
        "p_adjusted": 0.01,
    }
    text, tone = services.verdict_text(
        variant_name="Variant B", metric_name="7-day completion", cell=cell, alpha=0.05, higher_is_better=True
    )
    assert text == (
        "Variant B raised 7-day completion by 4.2% (95% CI +1.1% to +7.3%); 99% chance to beat control."
    )
    assert tone == "good"


def test_a_breached_guardrail_is_a_warning():
    abandon = builders.metric("abandon", kind="conversion", event_type="complete", higher_is_better=False)
    primary = builders.metric("plays", kind="mean", event_type="play")
    exp = builders.experiment(start=True, primary=primary, others=[(abandon, "guardrail")], cuped=False)
    populate(exp, n=400, rates=(0.2, 0.6), seed=4)
    results = services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now()).results
    assert any(w["kind"] == "guardrail" for w in results["warnings"])


def test_a_merge_that_mixes_variants_is_reported(client_as):
    exp = builders.experiment(start=True)
    users = [services.experiment_assign(key=exp.key, user_id=f"m{i}") for i in range(12)]
    a = next(u for u in users if u.variant.key == "control").profile
    b = next(u for u in users if u.variant.key == "v1").profile
    services.assignments_merge(source=a, target=b)
    results = services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now()).results
    assert any(w["kind"] == "multiple_exposures" for w in results["warnings"])


def test_the_results_api_returns_the_latest_analysis(client_as):
    exp = builders.experiment(start=True)
    url = f"/api/v1/experiments/{exp.key}/results"
    assert client_as("analyst").get(url).status_code == 404
    populate(exp, n=40)
    services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now() - timedelta(hours=2))
    services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now())
    body = client_as("analyst").get(url).json()
    assert body["results"]["experiment"] == exp.key
    assert body["as_of"] == AnalysisSnapshot.objects.order_by("-as_of").first().as_of.isoformat().replace(
        "+00:00", "Z"
    )


def test_analyze_summary_prints_the_full_analysis_of_a_json_file(tmp_path):
    summary = {
        "alpha": 0.05,
        "correction": "bh",
        "weights": [0.5, 0.5],
        "metrics": [
            {
                "key": "completion",
                "variants": [
                    {"key": "control", "n": 1000, "sum": 300, "sum_sq": 300},
                    {"key": "b", "n": 1010, "sum": 350, "sum_sq": 350},
                ],
            },
            {
                "key": "ctr",
                "kind": "ratio",
                "variants": [
                    {
                        "key": "control",
                        "n": 1000,
                        "sum": 90,
                        "sum_sq": 120,
                        "sum_y": 1000,
                        "sum_y_sq": 2500,
                        "sum_xy": 200,
                    },
                    {
                        "key": "b",
                        "n": 1010,
                        "sum": 110,
                        "sum_sq": 150,
                        "sum_y": 1010,
                        "sum_y_sq": 2600,
                        "sum_xy": 230,
                    },
                ],
            },
        ],
    }
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    out = StringIO()
    call_command("analyze_summary", str(path), stdout=out)
    result = json.loads(out.getvalue())
    assert result["srm"]["p_value"] > 0.001
    completion = result["metrics"][0]["variants"][1]
    assert completion["frequentist"]["lift"] == pytest.approx((350 / 1010) / (300 / 1000) - 1)
    assert completion["p_adjusted"] >= completion["frequentist"]["p_value"]
    assert result["metrics"][1]["variants"][1]["mean"] == pytest.approx(110 / 1010)


def test_analyze_summary_explains_a_malformed_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"metrics": [{"variants": [{"key": "a", "n": 3}]}]}))
    with pytest.raises(CommandError, match="at least two variants"):
        call_command("analyze_summary", str(path))
