"""Pages: marketers create, edit and run experiments; analysts read reports and export."""

from __future__ import annotations

import pytest
from django.utils import timezone

from experiments import services
from experiments.models import Experiment, Metric
from tests.experiments import builders
from tests.experiments.test_analysis import populate

pytestmark = pytest.mark.django_db


def form_data(metric, **overrides):
    data = {
        "key": "home-row",
        "name": "Home row ranker",
        "hypothesis": "Fresher picks raise completion.",
        "traffic_percent": 100,
        "namespace_start": 0,
        "namespace_end": 1,
        "holdout_percent": 0,
        "alpha": 0.05,
        "correction": "holm",
        "cuped": "on",
        "primary_metric": metric.pk,
        "variants-TOTAL_FORMS": 3,
        "variants-INITIAL_FORMS": 0,
        "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 1000,
        "variants-0-key": "control",
        "variants-0-name": "Control",
        "variants-0-weight": 0.5,
        "variants-1-key": "fresh",
        "variants-1-name": "Fresh picks",
        "variants-1-weight": 0.5,
        "variants-1-payload": '{"recommender": "fresh"}',
    }
    data.update(overrides)
    return data


def test_a_marketer_creates_an_experiment_with_variants_and_metrics(client_as):
    metric = builders.metric()
    response = client_as("marketer").post("/experiments/new/", form_data(metric))
    assert response.status_code == 302, response.content.decode()[:3000]
    exp = Experiment.objects.get(key="home-row")
    assert [(v.key, v.weight, v.payload) for v in exp.variants.all()] == [
        ("control", 0.5, {}),
        ("fresh", 0.5, {"recommender": "fresh"}),
    ]
    assert exp.experiment_metrics.get().role == "primary"


def test_the_form_explains_weights_that_do_not_add_up_and_bad_json(client_as):
    metric = builders.metric()
    data = form_data(metric, **{"variants-1-weight": 0.2, "variants-1-payload": "{oops"})
    response = client_as("marketer").post("/experiments/new/", data)
    assert response.status_code == 200
    assert "Not valid JSON" in response.content.decode()
    data = form_data(metric, **{"variants-1-weight": 0.2})
    assert "add up to 1" in client_as("marketer").post("/experiments/new/", data).content.decode()
    assert not Experiment.objects.exists()


def test_editing_weights_of_a_running_experiment_is_refused_in_the_ui(client_as):
    exp = builders.experiment(start=True)
    metric = Metric.objects.get()
    data = form_data(
        metric,
        key=exp.key,
        **{
            "variants-0-weight": 0.7,
            "variants-1-weight": 0.3,
            "variants-1-key": "v1",
            "variants-1-payload": "",
        },
    )
    response = client_as("marketer").post(f"/experiments/{exp.key}/edit/", data)
    assert response.status_code == 200
    assert "Start a new phase" in response.content.decode()
    data["new_phase_reason"] = "Ramp down"
    assert client_as("marketer").post(f"/experiments/{exp.key}/edit/", data).status_code == 302
    assert Experiment.objects.get(pk=exp.pk).phase == 2


def test_start_pause_and_stop_buttons_are_for_marketers_only(client_as):
    exp = builders.experiment()
    assert client_as("analyst").post(f"/experiments/{exp.key}/start/").status_code == 403
    assert "Start</button>" not in client_as("analyst").get(exp.get_absolute_url()).content.decode()
    client = client_as("marketer")
    assert "Start</button>" in client.get(exp.get_absolute_url()).content.decode()
    client.post(f"/experiments/{exp.key}/start/")
    client.post(f"/experiments/{exp.key}/pause/")
    client.post(f"/experiments/{exp.key}/stop/")
    assert Experiment.objects.get(pk=exp.pk).status == "stopped"
    ship = exp.variants.get(key="v1")
    client.post(f"/experiments/{exp.key}/conclude/", {"decision": "ship", "variant": ship.pk, "note": "Win"})
    assert Experiment.objects.get(pk=exp.pk).decision == "ship"


def test_the_report_shows_verdicts_warnings_and_charts(client_as):
    exp = builders.experiment(start=True)
    populate(exp, n=300, rates=(0.3, 0.5), seed=1)
    services.analysis_backfill(experiment=exp, points=3)
    page = client_as("analyst").get(exp.get_absolute_url()).content.decode()
    assert "raised completion by" in page
    for chart in ("chart-over-time", "chart-lift", "chart-forest", "chart-distribution"):
        assert f'data-plotly="{chart}"' in page
    assert "Export CSV" in page
    assert "{&quot;arm&quot;: 1}" in page  # payloads are shown as JSON


def test_analysts_export_the_results_as_csv_and_marketers_cannot(client_as):
    exp = builders.experiment(start=True)
    populate(exp, n=60)
    services.experiment_analyze(experiment_id=exp.pk, as_of=timezone.now())
    assert client_as("marketer").get(f"/experiments/{exp.key}/export.csv").status_code == 403
    response = client_as("analyst").get(f"/experiments/{exp.key}/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().strip().splitlines()
    assert lines[0].startswith("experiment,phase,as_of,metric")
    assert len(lines) == 3


def test_the_power_calculator_gives_a_sample_size(client_as):
    page = client_as("analyst").get(
        "/experiments/power/", {"baseline": 0.2, "mde": 5, "alpha": 0.05, "power": 0.8}
    )
    assert "profiles per variant" in page.content.decode()
    assert page.context["plan"]["n_per_variant"] > 20000
    bad = client_as("analyst").get("/experiments/power/", {"baseline": 0.2, "alpha": 0.05, "power": 0.8})
    assert "Give a minimum detectable lift" in bad.content.decode()


def test_a_marketer_defines_a_metric_and_gets_told_what_is_missing(client_as):
    client = client_as("marketer")
    response = client.post(
        "/experiments/metrics/new/",
        {"key": "ctr", "name": "CTR", "kind": "ratio", "event_type": "click", "aggregation": "count"},
    )
    assert "denominator" in response.content.decode()
    data = {
        "key": "ctr",
        "name": "CTR",
        "kind": "ratio",
        "event_type": "click",
        "aggregation": "count",
        "denominator_event_type": "view",
        "higher_is_better": "on",
    }
    assert client.post("/experiments/metrics/new/", data).status_code == 302
    assert "CTR" in client.get("/experiments/metrics/").content.decode()


def test_the_edit_form_shows_payloads_as_json_so_a_plain_resubmit_changes_nothing(client_as):
    exp = builders.experiment(start=True)
    client = client_as("marketer")
    page = client.get(f"/experiments/{exp.key}/edit/")
    formset = page.context["formset"]
    assert formset.forms[1].initial["payload"] == '{"arm": 1}'
    data = form_data(Metric.objects.get(), key=exp.key, name="Renamed")
    for i, v in enumerate(exp.variants.all()):
        data.update(
            {f"variants-{i}-key": v.key, f"variants-{i}-name": v.name, f"variants-{i}-weight": v.weight}
        )
        data[f"variants-{i}-payload"] = formset.forms[i].initial["payload"]
    assert client.post(f"/experiments/{exp.key}/edit/", data).status_code == 302
    exp.refresh_from_db()
    assert (exp.name, exp.phase) == ("Renamed", 1)


def test_the_second_of_two_marketers_saving_the_same_experiment_gets_a_clear_message(client_as):
    exp = builders.experiment(start=True)
    client = client_as("marketer")
    page = client.get(f"/experiments/{exp.key}/edit/")
    seen = page.context["form"].initial["version"]
    assert f'name="version" value="{seen}"' in page.content.decode()
    formset = page.context["formset"]

    def posted(name):
        data = form_data(Metric.objects.get(), key=exp.key, name=name, version=seen)
        for i, v in enumerate(exp.variants.all()):
            data.update(
                {
                    f"variants-{i}-key": v.key,
                    f"variants-{i}-name": v.name,
                    f"variants-{i}-weight": v.weight,
                    f"variants-{i}-payload": formset.forms[i].initial["payload"],
                }
            )
        return data

    # Both opened the form at the same version; the first save wins, the second is told.
    assert client.post(f"/experiments/{exp.key}/edit/", posted("Ann's name")).status_code == 302
    response = client.post(f"/experiments/{exp.key}/edit/", posted("Bob's name"))
    assert response.status_code == 200
    assert "changed this experiment after you opened it" in response.content.decode()
    exp.refresh_from_db()
    assert (exp.name, exp.version) == ("Ann's name", seen + 1)
