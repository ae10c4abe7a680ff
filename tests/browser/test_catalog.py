import pytest
from playwright.sync_api import expect

from catalog import services
from catalog.models import Item, Tag, TagSuggestion
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def catalog(transactional_db):
    genre = Tag.objects.add_root({"name": "Genre"})
    mood = Tag.objects.add_root({"name": "Mood"})
    anime = services.tag_create(name="Anime", parent=genre)
    services.tag_create(name="Mecha", parent=anime)
    dark = services.tag_create(name="Dark", parent=mood)
    first = Item.objects.create(external_id="b1", title="Steel Titans", description="Giant robots.")
    second = Item.objects.create(external_id="b2", title="Second Story")
    TagSuggestion.objects.create(item=first, tag=dark, confidence=0.87)
    return first, second


def test_an_editor_tags_an_item_from_the_keyboard_and_accepts_a_suggestion(login, catalog):
    first, _ = catalog
    page = login("editor")
    page.goto(f"/catalog/items/{first.pk}/?queue=untagged")
    picker = page.get_by_role("combobox")
    expect(picker).to_be_focused()
    picker.type("mech")
    expect(page.get_by_role("option", name="Genre > Anime > Mecha")).to_be_visible()
    picker.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Added Genre > Anime > Mecha")
    expect(page.locator("#tagging .tag-chip")).to_have_count(1)
    # Alt+A accepts the pending suggestions while the picker has focus.
    page.get_by_role("combobox").press("Alt+a")
    expect(page.get_by_role("status")).to_contain_text("Accepted 1 suggestion")
    expect(page.locator("#tagging .tag-chip")).to_have_count(2)
    assert sorted(first.item_tags.values_list("source", flat=True)) == ["editor", "suggestion"]
    expect(page.locator("#history")).to_contain_text("Suggestion accepted")
    screenshot(page, "catalog-item-tagging")
    # One click removes a tag; U undoes it.
    page.get_by_role("button", name="Remove Dark").click()
    expect(page.locator("#tagging .tag-chip")).to_have_count(1)
    page.get_by_role("combobox").press("Alt+u")
    expect(page.locator("#tagging .tag-chip")).to_have_count(2)
    # N opens the next item in the queue.
    page.get_by_role("combobox").press("Alt+n")
    expect(page.get_by_role("heading", name="Second Story")).to_be_visible()
