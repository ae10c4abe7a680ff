import io
import json

import pytest
from django.core.management import CommandError, call_command

from catalog import imports, services
from catalog.models import Item, ItemTag, ItemTagChange, Tag, TagAlias
from tests.conftest import SHARED_DATA

HEADER = "external_id,title,description,kind,tags,release_date,image_url,active\n"


def plan(text: str | bytes, **kwargs) -> imports.Plan:
    data = text.encode() if isinstance(text, str) else text
    return imports.import_plan(data=data, filename=kwargs.pop("filename", "items.csv"), **kwargs)


def apply(text: str | bytes, **kwargs) -> dict:
    return imports.import_apply(plan=plan(text, **kwargs))


def export(fmt: str = "csv", kind: str = "items") -> str:
    out = io.StringIO()
    imports.catalog_export(out=out, fmt=fmt, kind=kind)
    return out.getvalue()


def test_an_import_creates_items_and_missing_tags_then_upserts_by_external_id(db):
    counts = apply(
        HEADER + 'a1,Steel,"Robots, pilots",movie,Genre > Anime > Mecha|Mood > Dark,2019-05-01,,true\n'
    )
    assert counts["created"] == 1 and counts["tags_created"] == 5
    item = Item.objects.get(external_id="a1")
    assert item.release_date.isoformat() == "2019-05-01"
    assert sorted(item.item_tags.values_list("tag__slug_path", flat=True)) == [
        "genre/anime/mecha",
        "mood/dark",
    ]
    counts = apply(HEADER + "a1,Steel II,,series,Mood > Dark,,,false\n")
    assert (counts["created"], counts["updated"], counts["item_tags_removed"]) == (0, 1, 1)
    item.refresh_from_db()
    assert (item.title, item.kind, item.active) == ("Steel II", "series", False)
    assert ItemTagChange.objects.filter(item=item, source="import").count() == 3


def test_a_file_without_a_tags_column_leaves_tags_alone(db):
    apply("external_id,title,tags\na1,One,Mood > Dark\n")
    apply("external_id,title\na1,One again\n")
    assert ItemTag.objects.count() == 1


def test_strict_mode_reports_unknown_tag_paths_with_their_line_instead_of_creating_them(db):
    Tag.objects.add_root({"name": "Mood"})
    result = plan("external_id,title,tags\na1,One,Mood\na2,Two,Mood > Nope|Genre > X\n", strict=True)
    assert [(e.line, e.field) for e in result.errors] == [(3, "tags")]
    assert "Mood > Nope, Genre > X" in result.errors[0].message
    with pytest.raises(services.CatalogError, match="nothing was imported"):
        imports.import_apply(plan=result)
    assert Tag.objects.count() == 1 and Item.objects.count() == 0


def test_merged_tag_names_still_resolve_through_their_alias(db):
    mood = Tag.objects.add_root({"name": "Mood"})
    gloomy = services.tag_create(name="Gloomy", parent=mood)
    dark = services.tag_create(name="Dark", parent=mood)
    services.tag_merge(source=gloomy, target=dark)
    assert TagAlias.objects.filter(slug_path="mood/gloomy").exists()
    result = plan("external_id,title,tags\na1,One,Mood > Gloomy\n", strict=True)
    assert result.ok
    imports.import_apply(plan=result)
    assert Item.objects.get().item_tags.get().tag == dark


def test_duplicate_external_ids_in_a_file_are_reported_with_both_lines(db):
    result = plan("external_id,title\na1,One\na2,Two\na1,Again\n")
    assert [str(e) for e in result.errors] == ["line 4: external_id: 'a1' is also on line 2."]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("external_id,title\n,No id\n", 2, "external_id", "required"),
        ("external_id,title,release_date\na1,One,31/12/2020\n", 2, "release_date", "is not a date"),
        ("external_id,title,active\na1,One,maybe\n", 2, "active", "not true or false"),
        ("external_id,title,image_url\na1,One,not a url\n", 2, "image_url", "is not a URL"),
        ("external_id,title\na1,One,extra\n", 2, None, "expected 2 values, found 3"),
        ('external_id,title\na1,"unclosed\n', 2, None, "malformed CSV"),
        ("external_id,title,kind\na1,One,Not A Slug\n", 2, "kind", "short slug"),
        ("external_id,name\n", 1, None, "unknown column(s) name"),
        ("title\nOne\n", 1, None, "missing column(s) external_id"),
        ("external_id,title,tags\na1,One,Mood > |\n", 2, "tags", "empty level"),
    ],
)
def test_malformed_rows_are_reported_with_their_line_number(db, text, line, field, message):
    [error] = plan(text).errors
    assert (error.line, error.field) == (line, field)
    assert message in error.message


def test_a_multiline_description_keeps_line_numbers_right(db):
    result = plan('external_id,title,description\na1,One,"two\nlines"\na2,,x\n')
    assert [(e.line, e.field) for e in result.errors] == [(4, "title")]


def test_nothing_is_half_applied_when_a_write_fails(db, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    result = plan("external_id,title,tags\na1,One,Mood > Dark\n")
    monkeypatch.setattr(imports, "_item_tags_sync", fail)
    with pytest.raises(RuntimeError):
        imports.import_apply(plan=result)
    assert Item.objects.count() == 0 and Tag.objects.count() == 0


def test_latin_1_files_are_accepted(db):
    apply("external_id,title\na1,Amélie à Paris\n".encode("latin-1"))
    assert Item.objects.get().title == "Amélie à Paris"


def test_utf_8_with_a_bom_is_accepted(db):
    apply("external_id,title\na1,Ünïcode\n".encode("utf-8-sig"))
    assert Item.objects.get(external_id="a1").title == "Ünïcode"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("external_id,title\na1,x\n".encode("utf-16"), "UTF-16"),
        (
            "external_id,title\na1,“smart quotes”\n".encode("cp1252"),
            "line 2: the file is neither UTF-8 nor Latin-1",
        ),
    ],
)
def test_other_encodings_are_a_clear_error(db, data, message):
    with pytest.raises(imports.ImportFileError, match=message):
        plan(data)


def test_files_over_the_size_limit_are_refused(db, settings):
    settings.CATALOG_IMPORT_MAX_BYTES = 10
    with pytest.raises(imports.ImportFileError, match="larger than"):
        plan("external_id,title\na1,One\n")


def test_json_items_are_imported_with_tag_lists(db):
    apply(
        json.dumps([{"external_id": "j1", "title": "J", "tags": ["Genre > Drama"], "active": False}]),
        filename="x.json",
    )
    item = Item.objects.get()
    assert item.active is False and item.item_tags.get().tag.slug_path == "genre/drama"


def test_json_errors_are_numbered_by_entry(db):
    result = plan(
        json.dumps([{"external_id": "j1", "title": "J"}, {"external_id": "j2"}, 3]), filename="x.json"
    )
    assert [(e.line, e.field) for e in result.errors] == [(2, "title"), (3, None)]


CATALOG = (
    HEADER
    + 'a1,"Steel, the ""robot""","Line one\nline two",movie,Genre > Anime > Mecha|Mood > Dark,2019-05-01,'
    "https://example.com/a.jpg,true\n"
    + "a2,Ümlaut & Co,,series,,,,false\n"
    + "a3,Plain,Text,movie,Mood > Dark,,,true\n"
)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_then_import_into_an_empty_catalog_round_trips_exactly(db, django_db_reset_sequences, fmt):
    apply(CATALOG)
    first = export(fmt)
    taxonomy = export("csv", "taxonomy")
    ItemTag.objects.all().delete()
    Item.objects.all().delete()
    Tag.objects.all().delete()
    apply(taxonomy)
    apply(first, filename=f"catalog.{fmt}")
    assert export(fmt) == first
    assert export("csv", "taxonomy") == taxonomy


def test_the_taxonomy_imports_paths_with_descriptions(db):
    counts = apply("path,description\nGenre,Kinds of story\nGenre > Anime > Mecha,Giant robots\n")
    assert counts["tags_created"] == 3
    assert Tag.objects.get(slug_path="genre/anime/mecha").description == "Giant robots"
    again = plan("path\nGenre > Anime\nGenre > Anime\n")
    assert [str(e) for e in again.errors] == ["line 3: path: 'Genre > Anime' is also on line 2."]


def test_the_command_line_import_supports_dry_run_and_strict(db, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("external_id,title,tags\na1,One,Mood > Dark\n")
    out = io.StringIO()
    call_command("import_catalog", str(path), "--dry-run", stdout=out)
    assert "1 to create" in out.getvalue() and Item.objects.count() == 0
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_catalog", str(path), "--strict", stdout=io.StringIO(), stderr=io.StringIO())
    call_command("import_catalog", str(path), stdout=io.StringIO())
    assert Item.objects.count() == 1
    call_command("export_catalog", str(tmp_path / "out.json"), stdout=io.StringIO())
    assert json.loads((tmp_path / "out.json").read_text())[0]["tags"] == ["Mood > Dark"]


def test_a_large_import_runs_on_a_worker_and_reports_progress(
    client_as, settings, django_capture_on_commit_callbacks
):
    from catalog.models import ImportJob

    settings.CATALOG_IMPORT_INLINE_ROWS = 1
    job = imports.import_job_create(data=b"external_id,title\na1,One\na2,Two\n", filename="big.csv")
    with django_capture_on_commit_callbacks(execute=True):
        queued = imports.import_job_start(job=job)
    assert queued.status == ImportJob.Status.QUEUED
    job.refresh_from_db()
    assert (job.status, job.progress, Item.objects.count()) == ("succeeded", 100, 2)
    with pytest.raises(services.CatalogError, match="already started"):
        imports.import_job_start(job=job)


def test_movielens_themes_are_normalised_and_kept_above_a_minimum_frequency():
    rows = [("1", "Dark  Humor"), ("2", "dark humor"), ("3", "DARK HUMOR "), ("1", "funny"), ("2", "Funny")]
    themes = imports.movielens_themes(rows, min_movies=3)
    assert themes == {"dark-humor": ("Dark humor", {"1", "2", "3"})}


MOVIELENS = SHARED_DATA / "ml-latest-small"


@pytest.mark.movielens
def test_movielens_imports_movies_genres_themes_and_ratings_idempotently(db):
    if not (MOVIELENS / "movies.csv").exists():
        pytest.skip(
            f"MovieLens data not found at {MOVIELENS}; download ml-latest-small there to run this test."
        )
    from personalization.models import Event

    counts = imports.movielens_import(directory=MOVIELENS)
    assert counts["created"] == 9742 and counts["events"] == 100836
    toy = Item.objects.get(external_id="ml-1")
    assert (toy.title, toy.release_date.year) == ("Toy Story", 1995)
    assert "genre/animation" in set(toy.item_tags.values_list("tag__slug_path", flat=True))
    assert Tag.objects.filter(slug_path__startswith="theme/").count() > 10
    rating = Event.objects.filter(item=toy, type="rate").order_by("timestamp").first()
    assert rating.value is not None and rating.timestamp.year < 2020
    again = imports.movielens_import(directory=MOVIELENS)
    assert (again["created"], again["updated"], again["events"]) == (0, 0, 0)
    assert Event.objects.count() == 100836
