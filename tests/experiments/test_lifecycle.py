"""Experiment lifecycle: one path for each state change, and no corrupting edits."""

from __future__ import annotations

import pytest

from experiments import services
from experiments.models import Experiment, ExperimentMetric, Phase
from tests.experiments import builders

pytestmark = pytest.mark.django_db


def test_an_experiment_cannot_start_without_a_primary_metric_and_weights_that_add_up():
    exp = builders.experiment(weights=(0.5, 0.4))
    exp.experiment_metrics.all().delete()
    with pytest.raises(services.ExperimentError) as error:
        services.experiment_start(experiment=exp)
    assert "add up to 1" in str(error.value)
    assert "primary metric" in str(error.value)
    assert Experiment.objects.get(pk=exp.pk).status == "draft"


def test_it_moves_from_draft_to_concluded_with_a_decision():
    exp = builders.experiment(start=True)
    assert exp.status == "running" and exp.started_at is not None
    assert Phase.objects.filter(experiment=exp, number=1).exists()
    services.experiment_pause(experiment=exp)
    services.experiment_start(experiment=exp)
    services.experiment_stop(experiment=exp)
    ship = exp.variants.get(key="v1")
    services.experiment_conclude(experiment=exp, decision="ship", variant=ship, note="Clear win.")
    exp.refresh_from_db()
    assert (exp.status, exp.decision, exp.decision_variant, exp.decision_note) == (
        "concluded",
        "ship",
        ship,
        "Clear win.",
    )


def test_a_stale_caller_cannot_repeat_a_transition_another_already_made():
    exp = builders.experiment(start=True)
    stale = Experiment.objects.get(pk=exp.pk)
    services.experiment_stop(experiment=exp)
    with pytest.raises(services.ExperimentError) as error:
        services.experiment_pause(experiment=stale)
    assert error.value.status == 409


def test_shipping_needs_a_treatment_variant():
    exp = builders.experiment(start=True)
    services.experiment_stop(experiment=exp)
    with pytest.raises(services.ExperimentError):
        services.experiment_conclude(experiment=exp, decision="ship", variant=exp.variants.get(key="control"))
    services.experiment_conclude(experiment=exp, decision="inconclusive")
    assert Experiment.objects.get(pk=exp.pk).decision_variant is None


def test_changing_weights_of_a_running_experiment_is_refused_with_an_explanation():
    exp = builders.experiment(start=True)
    variants = [
        {"key": v.key, "name": v.name, "weight": 0.9 if v.position == 0 else 0.1} for v in exp.variants.all()
    ]
    with pytest.raises(services.ExperimentError) as error:
        services.experiment_save(experiment=exp, variants=variants)
    assert "new phase" in str(error.value)
    assert sorted(exp.variants.values_list("weight", flat=True)) == [0.5, 0.5]


def test_changing_metrics_of_a_running_experiment_is_refused_but_the_name_may_change():
    exp = builders.experiment(start=True)
    other = builders.metric("plays", kind="mean", event_type="play")
    with pytest.raises(services.ExperimentError):
        services.experiment_save(experiment=exp, metrics=[(other, ExperimentMetric.Role.PRIMARY)])
    exp.name = "Renamed"
    services.experiment_save(experiment=exp, changed_fields=["name"])
    assert Experiment.objects.get(pk=exp.pk).name == "Renamed"


def test_a_new_phase_applies_the_change_and_re_randomises():
    exp = builders.experiment(start=True)
    old_seed = exp.seed
    variants = [
        {"key": v.key, "name": v.name, "weight": 0.8 if v.position == 0 else 0.2} for v in exp.variants.all()
    ]
    services.experiment_save(experiment=exp, variants=variants, new_phase_reason="Ramp down the treatment")
    exp.refresh_from_db()
    assert exp.phase == 2 and exp.seed != old_seed
    assert list(exp.phases.values_list("number", "reason")) == [
        (1, "Started"),
        (2, "Ramp down the treatment"),
    ]
    assert exp.phases.get(number=1).ended_at is not None
    assert sorted(exp.variants.values_list("weight", flat=True)) == [0.2, 0.8]


def test_only_one_primary_metric_per_experiment():
    exp = builders.experiment()
    other = builders.metric("plays", kind="mean", event_type="play")
    with pytest.raises(services.ExperimentError):
        services.experiment_save(
            experiment=exp,
            metrics=[(other, "primary"), (builders.metric("x"), "primary")],
        )


def test_a_refused_save_changes_nothing_and_the_same_instance_can_be_saved_again():
    exp = builders.experiment()
    seen = Experiment.objects.get(pk=exp.pk).version
    plays = builders.metric("plays", kind="mean", event_type="play")
    exp.name = "Renamed"
    with pytest.raises(services.ExperimentError, match="only one primary"):
        services.experiment_save(
            experiment=exp,
            changed_fields=["name"],
            metrics=[(plays, "primary"), (Experiment.objects.get(pk=exp.pk).metrics.get(), "primary")],
        )
    # The check ran before the version was claimed: nothing moved, in the database or in memory.
    assert Experiment.objects.get(pk=exp.pk).version == exp.version == seen
    services.experiment_save(experiment=exp, changed_fields=["name"])
    assert Experiment.objects.filter(pk=exp.pk).values_list("name", "version").get() == ("Renamed", seen + 1)


def test_renaming_a_variant_of_a_running_experiment_needs_no_new_phase():
    exp = builders.experiment(start=True)
    variants = [
        {"key": v.key, "name": f"{v.name} (renamed)", "weight": v.weight, "payload": v.payload}
        for v in exp.variants.all()
    ]
    services.experiment_save(experiment=exp, variants=variants)
    assert Experiment.objects.get(pk=exp.pk).phase == 1
    assert exp.variants.get(key="v1").name == "Variant B (renamed)"


def test_a_shipped_experiment_serves_the_winner_to_everybody():
    exp = builders.experiment(start=True)
    services.experiment_stop(experiment=exp)
    services.experiment_conclude(experiment=exp, decision="ship", variant=exp.variants.get(key="v1"))
    result = services.experiment_assign(key=exp.key, user_id="anyone")
    assert (result.variant.key, result.in_experiment) == ("v1", False)
