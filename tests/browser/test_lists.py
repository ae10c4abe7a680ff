"""List pages: a marketer sorts and filters a list the way every list works."""

from django.urls import reverse

from personalization.models import Segment

from .conftest import screenshot


def test_a_marketer_sorts_segments_by_size_and_filters_them_keeping_the_order(login, personas):
    for key, name, size in [("a", "Anime fans", 120), ("b", "Big spenders", 4_500), ("c", "Casual", 800)]:
        Segment.objects.create(key=key, name=name, kind="static", size=size)
    page = login("marketer")
    page.goto(reverse("personalization:segment_list"))
    names = page.locator("table.table tbody tr td:first-child a")
    assert names.all_inner_texts() == ["Anime fans", "Big spenders", "Casual"]

    page.get_by_role("link", name="Size").click()  # sizes start with the biggest
    page.wait_for_url("**sort=-size")
    assert names.all_inner_texts() == ["Big spenders", "Casual", "Anime fans"]
    assert page.locator("th[aria-sort=descending]").inner_text().startswith("SIZE")

    page.get_by_label("Search").fill("a")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**q=a**")
    assert "sort=-size" in page.url
    assert names.all_inner_texts() == ["Casual", "Anime fans"]
    screenshot(page, "segment-list-sorted")
