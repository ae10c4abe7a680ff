"""Browser journeys of the audience pages: customer 360, quiz, write keys."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from catalog.models import ItemTag, Tag
from personalization import interactions
from personalization.models import Profile
from tests import factories
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def person(transactional_db):
    genre = Tag.objects.add_root({"name": "Genre"})
    anime = Tag.objects.add_child(genre, {"name": "Anime"})
    drama = Tag.objects.add_child(genre, {"name": "Drama"})
    items = factories.items(2)
    ItemTag.objects.create(item=items[0], tag=anime)
    ItemTag.objects.create(item=items[1], tag=drama)
    profile = Profile.objects.create(external_id="u1", traits={"plan": "pro"})
    factories.events(
        [(profile, items[0], "complete"), (profile, items[1], "play"), (profile, None, "search")]
    )
    interactions.interactions_rebuild()
    return profile


def test_an_admin_reads_a_customer_360_filters_the_timeline_and_fills_the_quiz(login, person):
    page = login("admin")
    page.goto(person.get_absolute_url())
    chart = page.locator("#affinity-chart")
    expect(chart).to_have_attribute("data-rendered", "true")
    expect(page.get_by_text("pro", exact=True)).to_be_visible()
    screenshot(page, "profile-360")
    page.get_by_label("Type").select_option("search")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#events tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Preferences quiz").click()
    page.locator('input[name="liked"][value="genre/anime"]').check()
    page.locator('input[name="disliked"][value="genre/anime"]').check()
    expect(page.locator('input[name="liked"][value="genre/anime"]')).not_to_be_checked()
    page.locator('input[name="liked"][value="genre/drama"]').check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("♥ genre/drama")).to_be_visible()
    expect(page.get_by_text("✕ genre/anime")).to_be_visible()


def test_an_admin_creates_a_write_key_and_sees_it_once(login, transactional_db):
    page = login("admin")
    page.goto("/audience/write-keys/")
    page.get_by_label("Source").fill("web")
    page.get_by_role("button", name="Create write key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("rs_wk_")
    page.goto("/audience/write-keys/")
    expect(page.get_by_text(key)).to_have_count(0)
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator(".badge.failed")).to_contain_text("revoked")
    screenshot(page, "write-keys")
