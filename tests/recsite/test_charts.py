"""The shared palette: the same colour for a recommender, variant or placement on every chart."""

from datetime import date

import pytest
from django.urls import reverse
from django.utils import timezone

from experiments import charts as experiment_charts
from experiments.charts import colour as experiment_variant_colour
from personalization import charts as personalization_charts
from personalization.models import Recommender, TrainingRun
from recsite import charts
from recsite.charts import ALGORITHM_COLOURS
from recsite.models import ImpactDaily


def test_a_recommender_keeps_its_algorithms_colour_whatever_its_name():
    assert charts.recommender_colour("home-picks", "ease") == ALGORITHM_COLOURS["ease"]
    assert charts.recommender_colour("item-knn") == ALGORITHM_COLOURS["item_knn"]
    assert charts.recommender_colour("my-blend") == charts.recommender_colour("my-blend")


def test_variants_get_the_experiment_reports_colours():
    assert [charts.variant_colour(i) for i in range(3)] == [experiment_variant_colour(i) for i in range(3)]


def test_a_placement_colour_is_stable_across_processes_and_empty_keys_are_neutral():
    # crc32, not hash(): the value is fixed, so every worker and page agrees.
    assert charts.placement_colour("home") == "#10b981"
    assert charts.placement_colour("") == charts.NEUTRAL


def test_line_charts_leave_gaps_for_days_without_data_and_show_percentages():
    figure = charts.lines_over_time(
        days=[date(2026, 11, 1), date(2026, 11, 2)],
        series=[("home", [0.25, None], "#123456")],
        y_title="share",
    )
    trace = figure["data"][0]
    assert trace["y"] == [25.0, None] and trace["line"]["color"] == "#123456"
    assert figure["layout"]["yaxis"]["ticksuffix"] == "%"


def test_experiment_report_charts_colour_variants_from_the_shared_palette():
    figure = experiment_charts.metric_over_time(
        times=["t1", "t2"], series=[("control", [1, 2]), ("b", [1, 3]), ("c", [2, 2])], metric_name="plays"
    )
    assert [t["line"]["color"] for t in figure["data"]] == [charts.variant_colour(i) for i in range(3)]
    assert charts.variant_colour(0) != charts.variant_colour(1)


def test_event_charts_colour_event_types_from_the_shared_palette():
    figure = personalization_charts.events_per_day(
        [(date(2026, 11, 1), "play", 3), (date(2026, 11, 1), "odd", 1)]
    )
    colours = {t["name"]: t["marker"]["color"] for t in figure["data"]}
    assert colours == {"play": charts.event_type_colour("play"), "odd": charts.TYPE_COLOURS["other"]}


@pytest.mark.django_db
def test_a_recommender_has_the_same_colour_on_the_dashboard_the_comparison_and_the_impact_page(client_as):
    # One per way of choosing the colour: by algorithm, by a name that spells an algorithm,
    # and by a stable hash of a name that says nothing.
    names = {"home-picks": "ease", "item-knn": "item_knn", "my-blend": "hybrid", "zz-custom": "trending"}
    today = timezone.now().date()
    for name, algorithm in names.items():
        recommender = Recommender.objects.create(name=name, algorithm=algorithm)
        run = TrainingRun.objects.create(
            recommender=recommender, version=1, status=TrainingRun.Status.SUCCEEDED,
            finished_at=timezone.now(), metrics={"ndcg@10": 0.2, "recall@10": 0.3, "coverage": 0.5},
        )  # fmt: skip
        Recommender.objects.filter(pk=recommender.pk).update(active_run=run)
        ImpactDaily.objects.create(
            day=today, placement="home", recommender=name, metric="impressions", count=5
        )
    client = client_as("analyst")
    dashboard = {m["recommender"].name: m["colour"] for m in client.get("/").context["data"].models}
    listing = client.get(reverse("personalization:recommender_list")).context
    comparison = {t["name"]: t["marker"]["color"] for t in listing["comparison_chart"]["data"]}
    tradeoff = {t["name"].split(" v")[0]: t["marker"]["color"] for t in listing["tradeoff_chart"]["data"]}
    impact_rows = client.get(reverse("impact"), {"days": "7"}).context["rows"]["recommender"]
    impact = {row["label"]: row["colour"] for row in impact_rows}
    expected = {name: charts.recommender_colour(name, algorithm) for name, algorithm in names.items()}
    assert dashboard == comparison == tradeoff == expected
    assert {name: impact[name] for name in names} == expected
    assert expected["home-picks"] == ALGORITHM_COLOURS["ease"]
