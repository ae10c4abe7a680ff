import pytest
from playwright.sync_api import expect

from personalization.models import Event, Profile, Segment, Source
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def audience(transactional_db):
    from django.utils import timezone

    source = Source.objects.create(name="web")
    now = timezone.now()
    people = [
        Profile.objects.create(external_id=f"u{n}", traits={"plan": "gold" if n % 2 else "free"})
        for n in range(6)
    ]
    for n, person in enumerate(people[:4]):
        Event.objects.create(
            source=source, message_id=f"m{n}", name="Video Playback Started", type="play", profile=person,
            timestamp=now, received_at=now,
        )  # fmt: skip
    return people


def test_a_marketer_builds_a_segment_and_sees_the_live_size_estimate(login, audience):
    page = login("marketer")
    page.goto("/segments/new/")
    page.get_by_label("Name").fill("Recent players")
    page.get_by_label("Key").fill("recent-players")
    page.get_by_role("button", name="Add condition").click()
    # The default condition: played at least once in the last 30 days.
    expect(page.locator("#segment-estimate")).to_have_text("4")
    page.get_by_role("button", name="Add group").click()
    group = page.locator("fieldset fieldset")
    group.get_by_label("Condition 2.1 kind").select_option("trait")
    group.get_by_label("Condition 2.1 trait").fill("plan")
    group.get_by_label("Condition 2.1 value").fill("gold")
    expect(page.locator("#segment-estimate")).to_have_text("2")
    page.get_by_label("Rule NOT").check()
    expect(page.locator("#segment-estimate")).to_have_text("4")
    page.get_by_label("Rule NOT").uncheck()
    expect(page.locator("#segment-estimate")).to_have_text("2")
    screenshot(page, "segment-builder")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Recent players")).to_be_visible()
    segment = Segment.objects.get(key="recent-players")
    assert segment.rule["root"]["conditions"][1]["conditions"][0] == {
        "kind": "trait", "field": "plan", "op": "eq", "value": "gold",
    }  # fmt: skip
    expect(page.locator("#segment-size")).to_have_text(str(segment.size))
