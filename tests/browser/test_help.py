import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


def test_the_guide_reads_as_a_formatted_page_without_breaking_the_csp(login):
    # The page fixture fails the test on any console error, CSP violations included.
    page = login("editor")
    page.goto("/help/")
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    segments = page.locator("section#segments")
    expect(segments.locator("ol > li").first).to_contain_text("New segment. Combine conditions")
    expect(segments.locator("strong", has_text="estimated size")).to_be_visible()
    page.get_by_role("link", name="Business impact").click()
    expect(page).to_have_url(re.compile(r"/help/#business-impact$"))
    screenshot(page, "help")
