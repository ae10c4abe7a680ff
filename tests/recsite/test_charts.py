"""The shared palette: the same colour for a recommender, variant or placement on every chart."""

from datetime import date

from experiments.charts import colour as experiment_variant_colour
from personalization.charts import ALGORITHM_COLOURS
from recsite import charts


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
