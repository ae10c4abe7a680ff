import pytest

from catalog import services
from catalog.models import Tag
from tests import factories


@pytest.fixture
def taxonomy(db):
    """Genre > Anime > Mecha, Genre > Comedy, Mood > Dark, Mood > Uplifting."""
    genre = Tag.objects.add_root({"name": "Genre"})
    mood = Tag.objects.add_root({"name": "Mood"})
    anime = services.tag_create(name="Anime", parent=genre)
    tags = {
        "genre": genre,
        "mood": mood,
        "anime": anime,
        "mecha": services.tag_create(name="Mecha", parent=anime),
        "comedy": services.tag_create(name="Comedy", parent=genre),
        "dark": services.tag_create(name="Dark", parent=mood),
        "uplifting": services.tag_create(name="Uplifting", parent=mood),
    }
    return {k: Tag.objects.get(pk=v.pk) for k, v in tags.items()}


@pytest.fixture
def catalog_items(db):
    return factories.items(4)
