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


def test_the_builder_offers_restarted_watch_time_and_experiment_variant(login, transactional_db):
    from datetime import timedelta

    from django.utils import timezone

    from experiments.models import Assignment, Experiment, Variant

    source = Source.objects.create(name="web")
    now = timezone.now()
    people = [Profile.objects.create(external_id=f"r{n}") for n in range(3)]
    for n, (person, days) in enumerate([(people[0], 60), (people[0], 2), (people[1], 2)]):
        Event.objects.create(
            source=source, message_id=f"r{n}", name="play", type="play", profile=person,
            properties={"watch_seconds": 1800}, timestamp=now - timedelta(days=days), received_at=now,
        )  # fmt: skip
    experiment = Experiment.objects.create(key="new-home", name="New home")
    variant = Variant.objects.create(experiment=experiment, key="b", name="B", position=1)
    Assignment.objects.create(experiment=experiment, profile=people[2], variant=variant, assigned_at=now)

    page = login("marketer")
    page.goto("/segments/new/")
    page.get_by_role("button", name="Add condition").click()
    page.get_by_label("Condition 1 kind").select_option("restarted")
    # Played 30-90 days ago, not 7-30 days ago, and again in the last 7 days: only r0.
    expect(page.locator("#segment-estimate")).to_have_text("1")
    page.get_by_label("Condition 1 kind").select_option("engagement")
    page.get_by_label("Condition 1 metric").select_option("watch_time")
    page.get_by_label("Condition 1 value").fill("60")  # minutes: r0 watched 60 in the last 30 days
    expect(page.locator("#segment-estimate")).to_have_text("1")
    page.get_by_label("Condition 1 value").fill("30")
    expect(page.locator("#segment-estimate")).to_have_text("2")
    page.get_by_label("Condition 1 kind").select_option("experiment_variant")
    page.get_by_label("Condition 1 variant").select_option("b")
    expect(page.locator("#segment-estimate")).to_have_text("1")
    page.get_by_label("Condition 1 kind").select_option("performed")
    page.get_by_role("button", name="Add a property filter to Condition 1").click()
    page.get_by_label("Condition 1 property 1 name").fill("watch_seconds")
    page.get_by_label("Condition 1 property 1 operator").select_option("gt")
    page.get_by_label("Condition 1 property 1 value").fill("1000")
    expect(page.locator("#segment-estimate")).to_have_text("2")


def test_a_condition_takes_several_property_filters_and_a_window_between_dates(login, transactional_db):
    from datetime import UTC, datetime

    source = Source.objects.create(name="web")
    march = datetime(2026, 3, 10, 12, tzinfo=UTC)
    last_evening = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)  # "to" is inclusive
    april = datetime(2026, 4, 20, 12, tzinfo=UTC)
    plays = [  # (person, when, device, minutes)
        ("d0", march, "tv", 50),
        ("d1", march, "tv", 10),
        ("d2", march, "phone", 50),
        ("d3", april, "tv", 50),
        ("d4", last_evening, "tv", 50),
    ]
    for n, (external_id, when, device, minutes) in enumerate(plays):
        Event.objects.create(
            source=source, message_id=f"d{n}", name="play", type="play",
            profile=Profile.objects.create(external_id=external_id),
            properties={"device": device, "minutes": minutes}, timestamp=when, received_at=when,
        )  # fmt: skip

    page = login("marketer")
    page.goto("/segments/new/")
    page.get_by_label("Name").fill("March TV bingers")
    page.get_by_label("Key").fill("march-tv")
    page.get_by_role("button", name="Add condition").click()
    estimate, error = page.locator("#segment-estimate"), page.locator("#estimate-error")
    expect(estimate).to_have_text("0")  # nobody played in the last 30 days
    page.get_by_label("Condition 1 window").select_option("between")
    page.get_by_label("Condition 1 from date").fill("2026-03-01")
    page.get_by_label("Condition 1 to date").fill("2026-03-31")
    expect(estimate).to_have_text("4")

    add = page.get_by_role("button", name="Add a property filter to Condition 1")
    add.click()
    # An empty filter is an error that names the part of the rule, in the builder's words.
    expect(error).to_have_text("Condition 1, property filter 1, property: is required.")
    expect(page.locator(".rb-property.rb-invalid")).to_have_count(1)
    page.get_by_label("Condition 1 property 1 name").fill("device")
    page.get_by_label("Condition 1 property 1 value").fill("tv")
    expect(estimate).to_have_text("3")
    expect(error).to_have_text("")
    add.click()
    page.get_by_label("Condition 1 property 2 name").fill("minutes")
    page.get_by_label("Condition 1 property 2 operator").select_option("gt")
    page.get_by_label("Condition 1 property 2 value").fill("30")
    expect(estimate).to_have_text("2")  # d0 and d4: on TV, over 30 minutes, in March
    screenshot(page, "segment-builder-properties-and-dates")

    page.get_by_role("button", name="Remove Condition 1 property 1").click()
    expect(estimate).to_have_text("3")  # over 30 minutes on any device: d0, d2, d4
    expect(page.get_by_label("Condition 1 property 1 name")).to_have_value("minutes")
    page.get_by_label("Condition 1 from date").fill("2026-04-01")
    page.get_by_label("Condition 1 to date").fill("2026-03-01")
    expect(error).to_have_text("Condition 1, to: must not be before 'from'.")
    page.get_by_label("Condition 1 from date").fill("2026-03-01")
    page.get_by_label("Condition 1 to date").fill("2026-04-30")
    expect(estimate).to_have_text("4")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="March TV bingers")).to_be_visible()
    # The estimates of the invalid rules answered 400, which the browser logs; nothing else.
    assert page.console_errors and all("status of 400" in e for e in page.console_errors)
    page.console_errors.clear()
    assert Segment.objects.get(key="march-tv").rule["root"]["conditions"] == [
        {
            "kind": "performed", "event": "play", "count_op": "at_least", "count": 1,
            "from": "2026-03-01", "to": "2026-04-30",
            "properties": [{"property": "minutes", "op": "gt", "value": 30}],
        }
    ]  # fmt: skip
