"""The shared table behaviour of list pages: sorting from the URL, filters kept, pagination."""

import re

import pytest
from django.test import RequestFactory
from django.urls import reverse

from catalog.models import Item
from recsite import tables

COLUMNS = [
    tables.Column("title", "Title", ("title",)),
    tables.Column("id", "External id", ("external_id",)),
    tables.Column("kind", "Kind", ("kind", "title"), descending_first=True),
    tables.Column("note", "Note"),
]


@pytest.fixture
def three_items(db):
    for external_id, title, kind in [
        ("b", "Beta", "movie"),
        ("a", "Alpha", "series"),
        ("c", "Gamma", "movie"),
    ]:
        Item.objects.create(external_id=external_id, title=title, kind=kind)


def _titles(table):
    return [item.title for item in table.page.object_list]


def test_the_default_sort_applies_without_a_parameter(three_items):
    table = tables.table(RequestFactory().get("/"), Item.objects.all(), COLUMNS, default_sort="title")
    assert _titles(table) == ["Alpha", "Beta", "Gamma"]
    assert table.sort == "title"


def test_a_descending_sort_on_a_column_with_a_tie_breaker(three_items):
    request = RequestFactory().get("/", {"sort": "-kind"})
    table = tables.table(request, Item.objects.all(), COLUMNS, default_sort="title")
    assert _titles(table) == ["Alpha", "Gamma", "Beta"]
    assert table.headers[2].direction == "desc" and table.headers[2].aria_sort == "descending"


@pytest.mark.parametrize("sort", ["note", "pk", "title__nope", "-", "password", "-external_id"])
def test_an_unknown_or_unsortable_key_falls_back_to_the_default(three_items, sort):
    request = RequestFactory().get("/", {"sort": sort})
    table = tables.table(request, Item.objects.all(), COLUMNS, default_sort="-title")
    assert _titles(table) == ["Gamma", "Beta", "Alpha"]


def test_header_links_keep_the_filters_flip_the_current_column_and_drop_the_page(three_items):
    request = RequestFactory().get(
        "/", {"q": "a b", "kind": ["movie", "series"], "sort": "title", "page": "2"}
    )
    table = tables.table(request, Item.objects.all(), COLUMNS, default_sort="title")
    title, external_id, kind, note = table.headers
    assert title.url == "?q=a+b&kind=movie&kind=series&sort=-title"
    assert external_id.url.endswith("&sort=id") and external_id.direction is None
    assert kind.url.endswith("&sort=-kind")  # starts descending
    assert note.url is None and note.direction is None


def test_pages_hold_the_requested_size_and_a_bad_page_number_is_the_last_page(three_items):
    request = RequestFactory().get("/", {"page": "99"})
    table = tables.table(request, Item.objects.all(), COLUMNS, default_sort="title", per_page=2)
    assert table.page.number == 2 and _titles(table) == ["Gamma"]


def test_the_catalog_list_sorts_by_a_header_and_marks_it(client_as, three_items):
    html = client_as("editor").get(reverse("catalog:item_list"), {"sort": "-title"}).content.decode()
    assert html.index("Gamma") < html.index("Beta") < html.index("Alpha")
    assert re.search(r'aria-sort="descending"><a class="sort" href="\?sort=title">Title', html)


LIST_PAGES = [
    ("catalog:item_list", "catalog.views.ITEM_COLUMNS", "editor"),
    ("personalization:profile_list", "personalization.views.PROFILE_COLUMNS", "marketer"),
    ("personalization:segment_list", "personalization.views.SEGMENT_COLUMNS", "marketer"),
    ("experiments:experiment_list", "experiments.views.EXPERIMENT_COLUMNS", "analyst"),
    ("audit_log", "recsite.views.AUDIT_COLUMNS", "admin"),
]


@pytest.mark.parametrize(("url_name", "columns", "role"), LIST_PAGES)
def test_every_sortable_column_of_every_list_page_sorts_both_ways(client_as, url_name, columns, role):
    """Each declared column names real fields: a typo would be a 500 here, not in production."""
    from django.utils.module_loading import import_string

    client = client_as(role)
    sortable = [c.key for c in import_string(columns) if c.ordering]
    assert sortable
    for key in sortable:
        for sort in (key, f"-{key}"):
            response = client.get(reverse(url_name), {"sort": sort})
            assert response.status_code == 200, (url_name, sort)


def test_the_segment_and_experiment_lists_filter_and_say_so_when_nothing_matches(client_as, db):
    from experiments.models import Experiment
    from personalization.models import Segment

    Segment.objects.create(key="anime-fans", name="Anime fans", kind="static")
    Segment.objects.create(key="lapsed", name="Lapsed", kind="static")
    client = client_as("marketer")
    html = client.get(reverse("personalization:segment_list"), {"q": "anime"}).content.decode()
    assert "Anime fans" in html and "Lapsed" not in html
    html = client.get(reverse("personalization:segment_list"), {"kind": "dynamic"}).content.decode()
    assert "No segments match this filter" in html

    Experiment.objects.create(key="hero-test", name="Hero test")
    html = client.get(reverse("experiments:experiment_list"), {"status": "running"}).content.decode()
    assert "No experiments match this filter" in html and "Hero test" not in html
    html = client.get(reverse("experiments:experiment_list"), {"q": "hero"}).content.decode()
    assert "Hero test" in html


def test_filtering_keeps_the_current_sort_and_the_audit_log_filters_by_action(client_as, db):
    from recsite.models import AuditEntry

    AuditEntry.objects.create(actor_label="ann", action="role.change", target_label="bob")
    AuditEntry.objects.create(actor_label="cy", action="experiment.start", target_label="hero")
    client = client_as("admin")
    html = client.get(reverse("audit_log"), {"action": "role.change", "sort": "who"}).content.decode()
    assert '<input type="hidden" name="sort" value="who">' in html
    assert '<option value="role.change" selected>' in html
    assert ">bob<" in html and ">hero<" not in html
