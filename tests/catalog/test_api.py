import pytest

from catalog import services
from catalog.models import Item, ItemTagChange, TagSuggestion
from tests import factories


@pytest.fixture
def tagged(taxonomy, catalog_items):
    a, b, c, _ = catalog_items
    services.item_tag_add(item=a, tag=taxonomy["mecha"])
    services.item_tag_add(item=a, tag=taxonomy["dark"])
    services.item_tag_add(item=b, tag=taxonomy["comedy"])
    services.item_tag_add(item=c, tag=taxonomy["uplifting"])
    Item.objects.filter(pk=c.pk).update(description="A cheerful robot story")
    return catalog_items


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"tag": "genre/anime"}, ["m000"]),
        ({"tag": "Genre > Anime > Mecha"}, ["m000"]),
        ({"facet": "mood"}, ["m000", "m002"]),
        ({"q": "robot"}, ["m002"]),
        ({}, ["m000", "m001", "m002", "m003"]),
    ],
)
def test_items_are_filtered_by_tag_path_facet_and_text(client_as, tagged, params, expected):
    body = client_as("analyst").get("/api/v1/items", params).json()
    assert [r["external_id"] for r in body["results"]] == expected


def test_an_unknown_tag_filter_is_a_400_naming_the_field(client_as, tagged):
    response = client_as("analyst").get("/api/v1/items", {"tag": "genre/nope"})
    assert response.status_code == 400
    assert response.json()["field"] == "tag"


def test_the_item_list_runs_a_fixed_number_of_queries_whatever_the_page_size(
    client_as, tagged, django_assert_num_queries
):
    client = client_as("analyst")
    factories.items(30, prefix="x")
    # session, user, the user's permissions (groups + user perms), count, items, their item tags + tags
    with django_assert_num_queries(7):
        body = client.get("/api/v1/items").json()
    assert body["count"] == 34
    assert [t["path"] for t in body["results"][0]["tags"]] == ["genre/anime/mecha", "mood/dark"]


def test_editors_create_update_and_deactivate_items(client_as, db):
    client = client_as("editor")
    created = client.post(
        "/api/v1/items", {"external_id": "n1", "title": "New"}, content_type="application/json"
    )
    assert created.status_code == 201
    patched = client.patch("/api/v1/items/n1", {"title": "Renamed"}, content_type="application/json")
    assert patched.json()["title"] == "Renamed"
    assert client.post("/api/v1/items/n1/deactivate").json()["active"] is False
    duplicate = client.post(
        "/api/v1/items", {"external_id": "n1", "title": "x"}, content_type="application/json"
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["field"] == "external_id"


@pytest.mark.parametrize("persona", ["marketer", "analyst"])
def test_other_roles_read_but_cannot_write(client_as, tagged, persona):
    client = client_as(persona)
    assert client.get("/api/v1/items/m000").status_code == 200
    assert client.get("/api/v1/taxonomy").status_code == 200
    assert client.post("/api/v1/items", {"external_id": "n", "title": "t"}).status_code == 403
    assert (
        client.patch("/api/v1/items/m000", {"title": "x"}, content_type="application/json").status_code == 403
    )
    assert client.post("/api/v1/items/m000/tags", {"tag": "mood/dark"}).status_code == 403
    assert client.post("/api/v1/items/m000/deactivate").status_code == 403
    assert "error" in client.post("/api/v1/items/m000/deactivate").json()


def test_outsiders_cannot_read_the_catalog(client_as, tagged):
    assert client_as("outsider").get("/api/v1/items").status_code == 403


def test_item_tags_are_added_and_removed_through_the_api_and_recorded(client_as, tagged):
    client = client_as("editor")
    added = client.post("/api/v1/items/m003/tags", {"tag": "Mood > Dark"}, content_type="application/json")
    assert added.status_code == 201
    assert [t["path"] for t in added.json()["tags"]] == ["mood/dark"]
    again = client.post("/api/v1/items/m003/tags", {"tag": "mood/dark"}, content_type="application/json")
    assert again.status_code == 200
    assert client.delete("/api/v1/items/m003/tags/mood/dark").json()["tags"] == []
    assert client.delete("/api/v1/items/m003/tags/mood/dark").status_code == 404
    assert list(ItemTagChange.objects.filter(item__external_id="m003").values_list("action", "source")) == [
        ("remove", "api"),
        ("add", "api"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [({"tag": "mood/nope"}, 400, "tag"), ({}, 400, "tag"), ({"tag": "mood"}, 400, "tag")],
)
def test_bad_item_tag_requests_get_a_json_error_naming_the_field(client_as, tagged, body, status, field):
    response = client_as("editor").post("/api/v1/items/m003/tags", body, content_type="application/json")
    assert response.status_code == status
    assert response.json()["field"] == field


def test_unknown_items_are_a_json_404(client_as, tagged):
    response = client_as("editor").post("/api/v1/items/nope/tags", {"tag": "mood/dark"})
    assert response.status_code == 404
    assert response.json()["error"]


def test_suggestions_are_listed_accepted_and_rejected(client_as, tagged, taxonomy):
    item = tagged[3]
    keep = TagSuggestion.objects.create(item=item, tag=taxonomy["dark"], confidence=0.8)
    drop = TagSuggestion.objects.create(item=item, tag=taxonomy["comedy"], confidence=0.3)
    client = client_as("editor")
    listed = client.get("/api/v1/suggestions", {"item": "m003"}).json()["results"]
    assert [s["tag"] for s in listed] == ["mood/dark", "genre/comedy"]
    assert client.post(f"/api/v1/suggestions/{keep.pk}/accept").json()["status"] == "accepted"
    assert client.post(f"/api/v1/suggestions/{drop.pk}/reject").json()["status"] == "rejected"
    assert client.post(f"/api/v1/suggestions/{drop.pk}/accept").status_code == 409
    assert item.item_tags.get().source == "suggestion"
    assert client_as("analyst").post(f"/api/v1/suggestions/{keep.pk}/accept").status_code == 403
    bad = client.get("/api/v1/suggestions", {"status": "maybe"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_the_taxonomy_tree_nests_tags_with_counts(client_as, tagged):
    tree = client_as("analyst").get("/api/v1/taxonomy").json()
    genre = tree[0]
    assert genre["path"] == "genre"
    anime = next(c for c in genre["children"] if c["name"] == "Anime")
    assert anime["children"][0] == {
        "id": anime["children"][0]["id"], "name": "Mecha", "path": "genre/anime/mecha", "description": "",
        "retired": False, "items": 1, "children": [],
    }  # fmt: skip


def test_every_catalog_endpoint_is_in_the_openapi_schema(client, db):
    schema = client.get("/api/schema/").content.decode()
    for path in (
        "/api/v1/items:", "/api/v1/items/{external_id}:", "/api/v1/items/{external_id}/deactivate:",
        "/api/v1/items/{external_id}/tags:", "/api/v1/items/{external_id}/tags/{tag_path}:",
        "/api/v1/taxonomy:",
        "/api/v1/suggestions:", "/api/v1/suggestions/{id}/accept:", "/api/v1/suggestions/{id}/reject:",
    ):  # fmt: skip
        assert path in schema, path
