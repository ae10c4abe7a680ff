"""The dashboard's date range and the business-impact page, as a marketer sees them."""

import urllib.request
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from recsite.models import ImpactDaily
from tests import factories
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def traffic(transactional_db, live_server):
    """Two weeks of activity and of daily impact figures on two placements."""
    # The first request imports every view module; on a loaded machine that alone can take
    # most of Playwright's navigation timeout, so it is made here, outside the journey.
    urllib.request.urlopen(live_server.url + "/healthz", timeout=120).read()
    items = factories.items(4)
    people = factories.profiles(4)
    kinds = ["play", "complete"]
    factories.events(
        [(p, items[(n + k) % 4], kind) for n, p in enumerate(people) for k, kind in enumerate(kinds)],
        step=timedelta(days=1),
    )
    today = timezone.now().astimezone(UTC).date()
    rows = []
    for back in range(14):
        day = today - timedelta(days=back)
        for placement, recommender, clicks in (("home", "ease", 12), ("similar", "item-knn", 5)):
            cell = {"day": day, "placement": placement, "recommender": recommender}
            rows += [
                ImpactDaily(**cell, metric="impressions", count=200),
                ImpactDaily(**cell, metric="clicks", count=clicks),
                ImpactDaily(**cell, metric="play:attributed", count=clicks // 2),
            ]
        rows.append(ImpactDaily(day=day, metric="play", count=20))
        rows.append(ImpactDaily(day=day, metric="active_profiles", count=3 + back % 4))
    ImpactDaily.objects.bulk_create(rows)


def test_a_marketer_changes_the_dashboard_range_and_sees_the_kpis_follow(login, traffic):
    page = login("marketer")
    expect(page.locator("#range-label")).to_contain_text("(30 days)")
    page.get_by_role("group", name="Preset ranges").get_by_role("link", name="7 days").click()
    expect(page.locator("#range-label")).to_contain_text("(7 days)")
    expect(page.get_by_role("link", name="7 days")).to_have_attribute("aria-current", "true")
    expect(page.locator(".kpi", has_text="Click-through rate")).to_contain_text("4.2%")
    expect(page.locator(".kpi", has_text="Engagement from recommendations")).to_contain_text("40.0%")
    for chart in ("#ctr-chart", "#impact-chart", "#active-chart"):
        expect(page.locator(chart)).to_have_attribute("data-rendered", "true")
    screenshot(page, "dashboard-range")
    # An end before the start is explained, not a crash.
    page.get_by_label("From", exact=True).fill("2026-03-10")
    page.get_by_label("To", exact=True).fill("2026-03-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("The end date is before the start date.")


def test_a_marketer_reads_the_business_impact_page(login, traffic):
    page = login("marketer")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Business impact").click()
    expect(page).to_have_title("Business impact · recsite")
    expect(page.locator("#kpi-ctr")).to_have_text("4.2%")
    for chart in ("#share-placement-chart", "#share-recommender-chart", "#ctr-placement-chart"):
        expect(page.locator(chart)).to_have_attribute("data-rendered", "true")
        expect(page.locator(chart).locator(".main-svg").first).to_be_visible()
    expect(page.locator("#share-placement-chart .legend")).to_contain_text("home")
    expect(page.locator("#share-recommender-chart .legend")).to_contain_text("item-knn")
    expect(page.get_by_role("cell", name="similar")).to_be_visible()
    screenshot(page, "impact")


def test_an_editor_has_no_business_impact_page(login, traffic):
    page = login("editor")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Business impact")).to_have_count(0)
    page.get_by_role("link", name="Help").click()
    expect(page.get_by_role("heading", name="Business impact")).to_be_visible()
