import io

import pytest
from django.urls import reverse

from catalog import services
from catalog.models import ImportJob, Item, ItemTag, ItemTagChange, Tag, TagSuggestion


def test_an_editor_creates_a_tag_on_the_taxonomy_page_and_sees_it_in_the_tree(client_as, taxonomy):
    client = client_as("editor")
    response = client.post(
        reverse("catalog:tag_create"), {"name": "Isekai", "parent": taxonomy["anime"].pk}, follow=True
    )
    assert "Created Genre &gt; Anime &gt; Isekai" in response.content.decode()
    assert Tag.objects.get(slug_path="genre/anime/isekai")
    html = client.get(reverse("catalog:taxonomy")).content.decode()
    assert "Isekai" in html and 'name="csrfmiddlewaretoken"' in html


def test_a_duplicate_tag_name_is_a_form_error_not_a_crash(client_as, taxonomy):
    response = client_as("editor").post(
        reverse("catalog:tag_create"), {"name": "Comedy", "parent": taxonomy["genre"].pk}
    )
    assert response.status_code == 400
    assert "already exists under Genre" in response.content.decode()


def test_renaming_with_a_stale_version_shows_a_clear_message_and_keeps_the_other_edit(client_as, taxonomy):
    client = client_as("editor")
    anime = taxonomy["anime"]
    url = reverse("catalog:tag_edit", args=[anime.pk])
    assert client.post(url, {"name": "Anime series", "version": 1}).status_code == 302
    response = client.post(url, {"name": "Cartoons", "version": 1}, follow=True)
    assert "changed by someone else" in response.content.decode()
    assert Tag.objects.get(pk=anime.pk).name == "Anime series"


def test_moving_a_tag_below_its_own_child_is_a_form_error(client_as, taxonomy):
    anime = taxonomy["anime"]
    response = client_as("editor").post(
        reverse("catalog:tag_move", args=[anime.pk]),
        {"parent": taxonomy["mecha"].pk, "version": anime.version},
    )
    assert response.status_code == 400
    assert "cannot move below itself" in response.content.decode()


def test_the_delete_page_lists_what_will_be_untagged_and_needs_a_confirmation(
    client_as, taxonomy, catalog_items
):
    services.item_tag_add(item=catalog_items[0], tag=taxonomy["mecha"])
    client = client_as("editor")
    url = reverse("catalog:tag_delete", args=[taxonomy["anime"].pk])
    page = client.get(url).content.decode()
    assert catalog_items[0].title in page
    refused = client.post(url, {})
    assert refused.status_code == 400
    assert Tag.objects.filter(pk=taxonomy["anime"].pk).exists()
    assert client.post(url, {"confirm": "on"}).status_code == 302
    assert not Tag.objects.filter(pk=taxonomy["anime"].pk).exists()


def test_merging_from_the_tag_page_redirects_to_the_survivor(client_as, taxonomy):
    response = client_as("editor").post(
        reverse("catalog:tag_merge", args=[taxonomy["dark"].pk]), {"target": taxonomy["uplifting"].pk}
    )
    assert response.status_code == 302
    assert response.url == taxonomy["uplifting"].get_absolute_url()


def test_only_editors_and_admins_change_the_taxonomy(client_as, taxonomy):
    for persona in ("marketer", "analyst"):
        response = client_as(persona).post(reverse("catalog:tag_create"), {"name": "Nope"})
        assert response.status_code == 403


def test_the_item_page_adds_removes_and_undoes_and_shows_the_history(client_as, taxonomy, catalog_items):
    item = catalog_items[0]
    client = client_as("editor")
    client.post(reverse("catalog:item_tag_add", args=[item.pk]), {"tag_id": taxonomy["dark"].pk})
    client.post(reverse("catalog:item_tag_add", args=[item.pk]), {"tag": "Genre > Anime > Mecha"})
    assert set(item.item_tags.values_list("tag__name", flat=True)) == {"Dark", "Mecha"}
    client.post(reverse("catalog:item_tag_remove", args=[item.pk, taxonomy["dark"].pk]))
    assert set(item.item_tags.values_list("tag__name", flat=True)) == {"Mecha"}
    client.post(reverse("catalog:item_undo", args=[item.pk]))
    assert set(item.item_tags.values_list("tag__name", flat=True)) == {"Dark", "Mecha"}
    html = client.get(item.get_absolute_url()).content.decode()
    assert 'id="history"' in html and "Removed Mood &gt; Dark" in html
    assert 'id="tag-choices"' in html and "catalog_item.js" in html
    assert ItemTagChange.objects.filter(item=item).count() == 4


def test_an_unknown_tag_on_the_item_page_is_a_message_not_a_crash(client_as, taxonomy, catalog_items):
    response = client_as("editor").post(
        reverse("catalog:item_tag_add", args=[catalog_items[0].pk]), {"tag": "Nope > Nothing"}, follow=True
    )
    assert "No such tag" in response.content.decode()


def test_bulk_tagging_adds_and_removes_a_tag_on_the_selected_items(client_as, taxonomy, catalog_items):
    client = client_as("editor")
    ids = [i.pk for i in catalog_items[:3]]
    client.post(reverse("catalog:items_bulk_tag"), {"items": ids, "tag": "Mood > Dark", "action": "add"})
    assert ItemTag.objects.filter(tag=taxonomy["dark"]).count() == 3
    client.post(
        reverse("catalog:items_bulk_tag"), {"items": ids[:2], "tag": "Mood > Dark", "action": "remove"}
    )
    assert list(ItemTag.objects.filter(tag=taxonomy["dark"]).values_list("item_id", flat=True)) == [ids[2]]
    response = client.post(
        reverse("catalog:items_bulk_tag"), {"tag": "Mood > Dark", "action": "add"}, follow=True
    )
    assert "Select items first" in response.content.decode()


def test_the_queue_lists_items_missing_a_required_facet_and_links_to_the_next(
    client_as, taxonomy, catalog_items
):
    a, b, c, d = catalog_items
    for item in (a, b):
        services.item_tag_add(item=item, tag=taxonomy["dark"])
        services.item_tag_add(item=item, tag=taxonomy["comedy"])
        services.item_tag_add(item=item, tag=taxonomy["mecha"])
    services.item_tag_add(item=c, tag=taxonomy["dark"])
    assert list(services.item_queue(reason="untagged")) == [d]
    assert list(services.item_queue(reason="missing")) == [c, d]
    assert list(services.item_queue(reason="thin")) == [c]
    assert list(services.item_queue(reason="attention")) == [c, d]
    assert services.item_queue_next(item=c) == d
    assert services.item_queue_next(item=d) == c
    client = client_as("editor")
    assert "Start tagging" in client.get(reverse("catalog:queue") + "?queue=missing").content.decode()
    html = client.get(f"{c.get_absolute_url()}?queue=missing").content.decode()
    assert f'href="{d.get_absolute_url()}?queue=missing"' in html


def test_suggestions_are_accepted_and_rejected_with_one_click(client_as, taxonomy, catalog_items):
    item = catalog_items[0]
    keep = TagSuggestion.objects.create(item=item, tag=taxonomy["dark"], confidence=0.9)
    drop = TagSuggestion.objects.create(item=item, tag=taxonomy["comedy"], confidence=0.4)
    client = client_as("editor")
    html = client.get(item.get_absolute_url()).content.decode()
    assert "Accept Dark" in html
    client.post(reverse("catalog:suggestion_decide", args=[keep.pk, "accept"]))
    client.post(reverse("catalog:suggestion_decide", args=[drop.pk, "reject"]))
    item_tag = item.item_tags.get()
    assert (item_tag.tag, item_tag.source, item_tag.confidence) == (taxonomy["dark"], "suggestion", 0.9)
    assert TagSuggestion.objects.get(pk=drop.pk).status == "rejected"
    again = client.post(reverse("catalog:suggestion_decide", args=[drop.pk, "accept"]), follow=True)
    assert "already decided" in again.content.decode()


def test_the_coverage_page_renders_four_plotly_charts_from_json_script(
    client_as, personas, taxonomy, catalog_items
):
    services.item_tag_add(item=catalog_items[0], tag=taxonomy["dark"])
    services.item_tag_add(item=catalog_items[1], tag=taxonomy["dark"], user=personas["editor"])
    services.item_tag_add(item=catalog_items[2], tag=taxonomy["comedy"], user=personas["editor"])
    client = client_as("editor")
    html = client.get(reverse("catalog:coverage")).content.decode()
    for chart in ("facet-chart", "missing-chart", "rare-chart", "throughput-chart"):
        assert f'data-plotly="{chart}-data"' in html
    assert "vendor/plotly.min.js" in html
    coverage = services.catalog_coverage()
    assert dict(coverage.per_facet) == {"Genre": 1, "Mood": 2}
    assert dict(coverage.missing) == {"Genre": 0.75, "Mood": 0.5}
    assert [(editor, n) for _, editor, n in coverage.throughput] == [("editor", 2)]


def test_an_import_is_previewed_with_errors_and_applied_only_when_clean(client_as, taxonomy):
    client = client_as("editor")
    bad = b"external_id,title,tags\nx1,First,Genre > Comedy\nx1,Again,\n,No id,\n"
    response = client.post(reverse("catalog:import_upload"), {"file": io.BytesIO(bad)}, follow=True)
    html = response.content.decode()
    assert "2 errors" in html and "is also on line 2" in html and "Apply the import" not in html
    good = io.BytesIO(b"external_id,title,tags\nx1,First,Genre > Comedy|Mood > New mood\nx2,Second,\n")
    good.name = "items.csv"
    response = client.post(reverse("catalog:import_upload"), {"file": good}, follow=True)
    html = response.content.decode()
    assert 'id="to-create">2<' in html and "Mood &gt; New mood" in html
    job = ImportJob.objects.get(filename="items.csv")
    response = client.post(reverse("catalog:import_apply", args=[job.pk]), follow=True)
    assert "Imported" in response.content.decode()
    assert Item.objects.count() == 2
    assert client.get(reverse("catalog:import_status", args=[job.pk])).json()["status"] == "succeeded"


def test_a_file_in_another_encoding_is_a_form_error(client_as, db):
    response = client_as("editor").post(
        reverse("catalog:import_upload"), {"file": io.BytesIO("external_id,title\nx,Ünï\n".encode("utf-16"))}
    )
    assert response.status_code == 400
    assert "UTF-16" in response.content.decode()


@pytest.mark.parametrize("kind", ["items", "taxonomy"])
def test_export_downloads_a_csv(client_as, taxonomy, catalog_items, kind):
    response = client_as("analyst").get(reverse("catalog:export"), {"kind": kind})
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.csv"')
