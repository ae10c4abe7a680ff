import pytest

from catalog import services
from catalog.models import ItemTag, ItemTagChange, Tag, TagAlias


def fresh(tag: Tag) -> Tag:
    return Tag.objects.get(pk=tag.pk)


def test_creating_a_tag_refuses_a_duplicate_name_under_the_same_parent(taxonomy):
    with pytest.raises(services.CatalogError) as error:
        services.tag_create(name="comedy", parent=taxonomy["genre"])
    assert error.value.field == "name"
    assert services.tag_create(name="Comedy", parent=taxonomy["mood"]).slug_path == "mood/comedy"


def test_tag_names_cannot_contain_the_import_separators(taxonomy):
    with pytest.raises(services.CatalogError, match="cannot contain"):
        services.tag_create(name="Sci > Fi", parent=taxonomy["genre"])


def test_renaming_a_tag_rewrites_the_slug_path_of_its_whole_subtree_and_keeps_aliases(taxonomy):
    anime = services.tag_update(tag=taxonomy["anime"], version=1, name="Japanese animation")
    assert anime.slug_path == "genre/japanese-animation"
    assert fresh(taxonomy["mecha"]).slug_path == "genre/japanese-animation/mecha"
    assert services.tag_resolve(path="Genre > Anime > Mecha") == taxonomy["mecha"]
    assert anime.version == 2


def test_a_stale_edit_is_refused_and_the_first_edit_is_kept(taxonomy):
    anime = taxonomy["anime"]
    services.tag_update(tag=anime, version=anime.version, name="Anime series")
    with pytest.raises(services.StaleEdit, match="changed by someone else"):
        services.tag_update(tag=anime, version=anime.version, name="Cartoons")
    assert fresh(anime).name == "Anime series"


def test_moving_a_tag_below_itself_or_its_descendants_is_refused(taxonomy):
    for parent in (taxonomy["anime"], taxonomy["mecha"]):
        with pytest.raises(services.CatalogError, match="below itself"):
            services.tag_move(tag=taxonomy["anime"], parent=parent)


def test_moving_a_tag_keeps_the_slug_paths_of_the_subtree_correct(taxonomy):
    services.tag_move(tag=taxonomy["anime"], parent=taxonomy["mood"], version=1)
    assert fresh(taxonomy["anime"]).slug_path == "mood/anime"
    mecha = fresh(taxonomy["mecha"])
    assert mecha.slug_path == "mood/anime/mecha"
    assert Tag.objects.get_parent(mecha).pk == taxonomy["anime"].pk
    assert fresh(taxonomy["genre"]).numchild == 1
    # every tag's slug path matches the one save() would compute from the tree
    for tag in Tag.objects.all():
        names = [a.slug for a in Tag.objects.get_ancestors(tag)] + [tag.slug]
        assert tag.slug_path == "/".join(names)
    assert services.tag_resolve(path="genre/anime/mecha") == mecha


def test_moving_a_tag_to_the_top_makes_it_a_facet(taxonomy):
    services.tag_move(tag=taxonomy["anime"], parent=None)
    assert fresh(taxonomy["anime"]).is_facet
    assert fresh(taxonomy["mecha"]).slug_path == "anime/mecha"


def test_merging_moves_item_tags_to_the_survivor_without_duplicates_and_keeps_an_alias(
    taxonomy, catalog_items, personas
):
    a, b, c, _ = catalog_items
    services.item_tag_add(item=a, tag=taxonomy["comedy"])
    services.item_tag_add(item=b, tag=taxonomy["comedy"])
    services.item_tag_add(item=b, tag=taxonomy["anime"])
    services.item_tag_add(item=c, tag=taxonomy["anime"])
    survivor = services.tag_merge(
        source=taxonomy["comedy"], target=taxonomy["anime"], user=personas["editor"]
    )
    assert not Tag.objects.filter(pk=taxonomy["comedy"].pk).exists()
    assert sorted(ItemTag.objects.filter(tag=survivor).values_list("item_id", flat=True)) == [
        a.pk,
        b.pk,
        c.pk,
    ]
    assert ItemTag.objects.count() == 3
    assert TagAlias.objects.get(slug_path="genre/comedy").tag == survivor
    assert services.tag_resolve(path="Genre > Comedy") == survivor
    assert ItemTagChange.objects.filter(item=a, action="add", tag=survivor).exists()


def test_merging_moves_the_children_under_the_survivor(taxonomy):
    services.tag_merge(source=taxonomy["anime"], target=taxonomy["comedy"])
    assert fresh(taxonomy["mecha"]).slug_path == "genre/comedy/mecha"


def test_a_tag_cannot_merge_into_its_own_descendant(taxonomy):
    with pytest.raises(services.CatalogError, match="merge the other way round"):
        services.tag_merge(source=taxonomy["anime"], target=taxonomy["mecha"])


def test_deleting_a_tag_in_use_needs_a_merge_target_or_a_confirmation(taxonomy, catalog_items):
    services.item_tag_add(item=catalog_items[0], tag=taxonomy["mecha"])
    with pytest.raises(services.TagInUse) as error:
        services.tag_delete(tag=taxonomy["anime"])
    assert [it.item for it in error.value.affected] == [catalog_items[0]]
    assert Tag.objects.filter(pk=taxonomy["anime"].pk).exists()
    assert services.tag_delete(tag=taxonomy["anime"], confirm=True) == 1
    assert not Tag.objects.filter(slug_path__startswith="genre/anime").exists()
    assert ItemTagChange.objects.filter(action="remove", tag_label="Genre > Anime > Mecha").exists()


def test_deleting_with_a_merge_target_keeps_the_items_tagged(taxonomy, catalog_items):
    services.item_tag_add(item=catalog_items[0], tag=taxonomy["dark"])
    services.tag_delete(tag=taxonomy["dark"], merge_into=taxonomy["uplifting"])
    assert list(catalog_items[0].item_tags.values_list("tag_id", flat=True)) == [taxonomy["uplifting"].pk]


def test_an_unused_tag_is_deleted_without_confirmation(taxonomy):
    assert services.tag_delete(tag=taxonomy["comedy"]) == 0


def test_retired_tags_cannot_be_added_but_stay_on_items(taxonomy, catalog_items):
    services.item_tag_add(item=catalog_items[0], tag=taxonomy["dark"])
    services.tag_retire(tag=taxonomy["dark"], version=1)
    with pytest.raises(services.CatalogError, match="retired"):
        services.item_tag_add(item=catalog_items[1], tag=fresh(taxonomy["dark"]))
    assert catalog_items[0].item_tags.count() == 1


def test_the_tree_counts_usage_per_tag_and_subtree(taxonomy, catalog_items):
    services.item_tag_add(item=catalog_items[0], tag=taxonomy["mecha"])
    services.item_tag_add(item=catalog_items[1], tag=taxonomy["anime"])
    genre = services.taxonomy_tree()[0]
    assert genre.tag.name == "Genre"
    anime = next(n for n in genre.children if n.tag.name == "Anime")
    assert (anime.items, anime.total) == (1, 2)
    assert services.tag_usage(tag=taxonomy["genre"]) == 2
