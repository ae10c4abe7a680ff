"""A marketer creates and starts an experiment; an analyst reads its report with rendered charts."""

import pytest
from playwright.sync_api import expect

from experiments import services
from experiments.models import Experiment
from tests.browser.conftest import screenshot
from tests.experiments import builders
from tests.experiments.test_analysis import populate

pytestmark = pytest.mark.browser


def test_a_marketer_creates_and_starts_an_experiment(login, transactional_db):
    builders.metric("completion", name="7-day completion", window_hours=168)
    page = login("marketer")
    page.goto("/experiments/")
    page.get_by_role("link", name="New experiment").click()
    page.get_by_label("Key", exact=True).fill("home-row-ranker")
    page.get_by_label("Name", exact=True).fill("Home row ranker")
    page.get_by_label("Primary metric").select_option(label="7-day completion")
    page.locator("[name=variants-1-payload]").fill('{"recommender": "fresh"}')
    page.get_by_role("button", name="Create experiment").click()
    expect(page.get_by_role("heading", name="Home row ranker")).to_be_visible()
    page.get_by_role("button", name="Start").click()
    expect(page.locator("h1 .badge")).to_have_text("Running")
    assert Experiment.objects.get(key="home-row-ranker").status == "running"
    screenshot(page, "experiment-started")


def test_an_analyst_opens_the_report_and_the_charts_render(login, transactional_db):
    exp = builders.experiment("home-row-ranker", start=True)
    populate(exp, n=300, rates=(0.3, 0.42), seed=2)
    services.analysis_backfill(experiment=exp, points=4)
    page = login("analyst")
    page.goto(exp.get_absolute_url())
    expect(page.locator(".verdict").first).to_contain_text("chance to beat control")
    for chart in ("chart-over-time", "chart-lift", "chart-forest", "chart-distribution"):
        element = page.locator(f'[data-plotly="{chart}"]')
        expect(element).to_have_attribute("data-rendered", "true")
        expect(element.locator(".main-svg").first).to_be_visible()
    screenshot(page, "experiment-report")
