import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def activity(transactional_db):
    items = factories.items(5)
    users = factories.profiles(6)
    factories.events([(u, items[(n + k) % 5], kind) for n, u in enumerate(users) for k, kind in
                      enumerate(["view", "play", "complete"])])  # fmt: skip
    return factories.trending()


def test_a_marketer_logs_in_and_sees_the_events_chart(login, activity):
    page = login("marketer")
    expect(page).to_have_title("Dashboard · recsite")
    chart = page.locator("#events-chart")
    expect(chart).to_have_attribute("data-rendered", "true")
    expect(chart.locator(".main-svg").first).to_be_visible()
    expect(page.get_by_role("link", name="Recommendations")).to_be_visible()
    screenshot(page, "dashboard")


def test_an_editor_sees_only_the_catalog(login, activity):
    page = login("editor")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Catalog")).to_be_visible()
    expect(nav.get_by_role("link", name="Recommendations")).to_have_count(0)
    page.goto("/recommendations/")
    expect(page.get_by_role("heading", name="You don't have access to this page")).to_be_visible()
    # Chromium logs the 403 of the page itself; that is the expected answer, not a script error.
    page.console_errors[:] = [e for e in page.console_errors if "403 (Forbidden)" not in e]


def test_a_marketer_trains_a_recommender_and_the_run_completes(login, activity):
    page = login("marketer")
    page.get_by_role("link", name="Recommendations").click()
    page.get_by_role("link", name="trending").click()
    page.get_by_role("button", name="Train now").click()
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#run-progress")).to_have_attribute("value", "100")
    expect(page.locator("#run-metrics")).to_contain_text("ndcg@10")
    screenshot(page, "training-run")


def test_a_wrong_password_shows_a_form_error(page, personas):
    page.goto("/login/")
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
