"""Hostile text in every place users and tracked clients can put it renders inert, and the
pages run under the content security policy without violations (the ``page`` fixture fails
on any console error, which is where Chromium reports CSP violations)."""

from __future__ import annotations

import pytest

from catalog.models import Item, Tag
from personalization.models import Profile, Segment
from tests import factories

pytestmark = pytest.mark.browser

PAYLOAD = "<img src=x onerror=window.__xss=1><script>window.__xss=1</script>\"'><svg onload=window.__xss=1>"


@pytest.fixture
def hostile(transactional_db, personas):
    item = Item.objects.create(external_id="x1", title=f"Title {PAYLOAD}", description=PAYLOAD)
    tag = Tag.objects.add_root({"name": f"Tag {PAYLOAD}"[:100]})
    profile = Profile.objects.create(external_id="u-xss", traits={"name": PAYLOAD, PAYLOAD[:30]: "x"})
    factories.events([(profile, item, "view")])
    profile.events.update(properties={"note": PAYLOAD})
    recommender = factories.trending()
    recommender.description = PAYLOAD
    recommender.save(update_fields=["description"])
    segment = Segment.objects.create(key="xss", name=f"Seg {PAYLOAD}"[:200], description=PAYLOAD)
    return {
        "pages": [
            "/",
            "/catalog/",
            f"/catalog/items/{item.pk}/",
            "/catalog/taxonomy/",
            f"/catalog/tags/{tag.pk}/",
            "/audience/",
            f"/audience/profiles/{profile.pk}/",
            "/recommendations/",
            f"/recommendations/{recommender.pk}/",
            "/segments/",
            f"/segments/{segment.pk}/",
        ]
    }


def test_script_payloads_in_titles_tags_traits_events_and_descriptions_never_run(login, hostile):
    page = login("admin")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for url in hostile["pages"]:
        response = page.goto(url)
        assert response.status == 200, url
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.__xss") == "undefined", url
        # The payload is shown as text, not parsed as markup.
        assert page.locator("script:text('window.__xss')").count() == 0, url
    assert dialogs == []


def test_the_dashboard_chart_and_the_api_docs_run_under_the_csp(login, transactional_db, personas):
    items = factories.items(2)
    users = factories.profiles(2)
    factories.events([(users[0], items[0], "play"), (users[1], items[1], "view")])
    page = login("admin")
    page.goto("/")
    page.locator(".js-plotly-plot, .plotly").first.wait_for()
    page.goto("/api/docs/")
    page.locator(".swagger-ui .info").first.wait_for()
    # Any CSP violation would be a console error, failing the ``page`` fixture.
