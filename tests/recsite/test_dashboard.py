"""The dashboard KPIs and date range, the business-impact page and API, the user's time zone
and the help page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from experiments.models import AnalysisSnapshot, Experiment
from personalization import services
from personalization.models import Recommender, Segment, TrainingRun
from recsite import charts, impact
from recsite.models import ImpactDaily, RecommendationImpression, UserPreference
from tests import factories


def _impact_day(day, *, placement="home", recommender="ease"):
    cell = {"day": day, "placement": placement, "recommender": recommender}
    ImpactDaily.objects.bulk_create(
        [
            ImpactDaily(**cell, metric="impressions", count=200),
            ImpactDaily(**cell, metric="clicks", count=10),
            ImpactDaily(**cell, metric="play:attributed", count=3),
            ImpactDaily(day=day, metric="play", count=10),
        ]
    )


def test_the_dashboard_shows_kpis_with_their_change_against_the_previous_period(client_as):
    items = factories.items(2)
    people = factories.profiles(3)
    factories.events([(people[0], items[0], "play"), (people[1], items[1], "play")])
    older = timezone.now() - timedelta(days=10)
    factories.events([(people[2], items[0], "play")], start=older)
    impact.impact_refresh()
    html = client_as("marketer").get("/", {"days": "7"}).content.decode()
    assert 'aria-current="true">7 days' in html
    kpis = re.findall(r'<div class="label">([^<]+)</div>\s*<div class="value">([^<]+)</div>', html)
    assert ("Active profiles", "2") in kpis
    assert "vs the 7 days before" in html
    assert 'id="active-chart-data"' in html


def test_the_dashboard_takes_explicit_dates_and_explains_bad_ones(client_as):
    client = client_as("analyst")
    ok = client.get("/", {"start": "2026-01-01", "end": "2026-01-31"}).content.decode()
    assert "1 Jan 2026" in ok and "31 Jan 2026 (31 days)" in ok
    bad = client.get("/", {"start": "2026-02-01", "end": "2026-01-01"})
    assert bad.status_code == 200
    html = bad.content.decode()
    assert "The end date is before the start date." in html
    assert "Showing the last 30 days instead." in html
    assert client.get("/", {"days": "12"}).status_code == 200  # not a preset: a form error, no 500
    assert client.get("/", {"start": "yesterday"}).status_code == 200
    edge = client.get("/", {"start": "9999-12-30", "end": "9999-12-31"}).content.decode()
    assert "Choose a date between 1970 and 2999." in edge


def test_the_dashboard_lists_running_experiments_with_their_verdict_segments_and_model_health(client_as):
    experiment = Experiment.objects.create(
        key="home-ease", name="EASE on home", status="running", started_at=timezone.now()
    )
    AnalysisSnapshot.objects.create(
        experiment=experiment,
        as_of=timezone.now(),
        computed_at=timezone.now(),
        results={"verdicts": [{"role": "primary", "text": "EASE raised plays by 4.0%", "tone": "good"}]},
    )
    Segment.objects.create(key="fans", name="Anime fans", size=420)
    Segment.objects.create(key="few", name="Few", size=3)
    items = factories.items(2)
    people = factories.profiles(2)
    factories.events([(people[0], items[0], "play"), (people[1], items[1], "complete")])
    run = services.training_run_request(recommender=factories.trending())
    services.training_run_execute(run_id=run.pk)
    # Without a retraining schedule a model is stale after MODEL_STALE_AFTER_HOURS (a week)...
    TrainingRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=3))
    assert "stale:" not in client_as("marketer").get("/").content.decode()
    TrainingRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=8))
    html = client_as("marketer").get("/").content.decode()
    assert "EASE on home" in html and "EASE raised plays by 4.0%" in html
    assert "Anime fans</a>, 420 profiles" in html
    assert "stale: 8 days old" in html
    # ...and with one, once it missed its retraining (older than twice the interval).
    Recommender.objects.filter(pk=run.recommender_id).update(retrain_every_hours=24)
    TrainingRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=3))
    assert "stale: 3 days old" in client_as("marketer").get("/").content.decode()
    assert charts.recommender_colour("trending", "trending") in html


def test_the_dashboard_shows_impressions_ctr_and_share_from_recommendations(client_as):
    today = timezone.now().astimezone(UTC).date()
    _impact_day(today)
    html = client_as("analyst").get("/").content.decode()
    assert 'id="ctr-chart-data"' in html and 'id="impact-chart-data"' in html
    kpis = dict(re.findall(r'<div class="label">([^<]+)</div>\s*<div class="value">([^<]+)</div>', html))
    assert kpis["Click-through rate"] == "5.0%"
    assert kpis["Engagement from recommendations"] == "30.0%"


def test_the_impact_page_charts_shares_per_placement_and_recommender(client_as):
    today = timezone.now().astimezone(UTC).date()
    _impact_day(today)
    _impact_day(today - timedelta(days=1), placement="similar", recommender="item-knn")
    html = client_as("marketer").get(reverse("impact"), {"days": "7"}).content.decode()
    for chart in ("share-placement-data", "share-recommender-data", "ctr-placement-data"):
        assert f'id="{chart}"' in html
    figure = json.loads(re.search(r'id="share-placement-data"[^>]*>(.*?)</script>', html).group(1))
    names = {trace["name"]: trace for trace in figure["data"]}
    assert set(names) == {"home", "similar"}
    assert names["home"]["line"]["color"] == charts.placement_colour("home")
    assert names["home"]["y"][-1] == 30.0
    assert re.search(r'id="kpi-ctr">5.0%<', html)


def test_an_empty_impact_page_says_what_to_do_next(client_as):
    html = client_as("analyst").get(reverse("impact")).content.decode()
    assert "No recommendation traffic in this period" in html
    assert "recommendation_id" in html


def test_the_impact_api_returns_the_same_figures_as_json(client_as):
    today = timezone.now().astimezone(UTC).date()
    _impact_day(today)
    client = client_as("analyst")
    body = client.get("/api/v1/impact", {"days": 7, "by": "recommender"}).json()
    assert body["by"] == "recommender" and len(body["days"]) == 7
    ease = body["series"][0]
    assert ease["key"] == "ease" and ease["ctr"][-1] == 0.05 and ease["share"]["play"][-1] == 0.3
    assert body["summary"]["engagement"]["play"] == {"events": 10, "attributed": 3, "share": 0.3}
    assert body["window_hours"] == 24
    for params, field in (
        ({"by": "colour"}, "by"),
        ({"days": 12}, "days"),
        ({"start": "2026-01-02"}, "end"),
        ({"start": "2026-02-02", "end": "2026-01-01"}, "end"),
        ({"start": "nope", "end": "2026-01-01"}, "start"),
        ({"start": "9999-12-30", "end": "9999-12-31"}, "end"),
    ):
        response = client.get("/api/v1/impact", params)
        assert response.status_code == 400, params
        assert response.json()["field"] == field, params


def test_times_are_shown_in_the_time_zone_the_user_chose(client_as, personas):
    client = client_as("marketer")
    page = client.get(reverse("account_settings"))
    assert page.status_code == 200 and 'name="time_zone"' in page.content.decode()
    bad = client.post(reverse("account_settings"), {"time_zone": "Mars/Olympus"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()
    response = client.post(reverse("account_settings"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=personas["marketer"]).time_zone == "Asia/Tokyo"
    recommender = factories.trending()
    run = TrainingRun.objects.create(recommender=recommender, version=1)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=datetime(2026, 11, 30, 22, 30, tzinfo=UTC))
    html = client.get(reverse("account_settings")).content.decode()
    assert "JST" in html or "+0900" in html
    jobs_html = client.get("/").content.decode()
    assert "1 Dec 2026 07:30" in jobs_html  # 22:30 UTC is 07:30 the next day in Tokyo
    other = client_as("analyst").get("/").content.decode()
    assert "30 Nov 2026 22:30" in other  # the site's time zone (UTC) for everyone else


def test_the_help_page_shows_the_guide_with_anchors(client_as):
    html = client_as("editor").get(reverse("help")).content.decode()
    assert 'id="business-impact"' in html
    assert "Segments" in html


def test_the_impact_refresh_task_refreshes_and_tolerates_a_running_refresh(db):
    from recsite import tasks

    assert tasks.impact_refresh() == 0
    assert impact.last_refresh().status == "succeeded"
    RecommendationImpression.objects.create(
        recommendation_id="x", served_at=timezone.now(), placement="home", recommender="ease", item_id=1
    )
    assert tasks.impact_refresh() == 1
