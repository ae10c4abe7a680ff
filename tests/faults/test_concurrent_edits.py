"""Two editors changing the same object at once: no lost update, and a clear message for the
one who saved second (optimistic concurrency).

Tags and experiments carry a version (compare-and-set in catalog.services._claim and
experiments.services._version_claim).
"""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from django.test import Client

from catalog import services as catalog_services
from catalog.models import Tag
from experiments import services as experiment_services
from experiments.models import Experiment
from tests.experiments import builders

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def drama(db):
    genre = Tag.objects.add_root({"name": "Genre"})
    return catalog_services.tag_create(name="Drama", parent=genre)


def test_the_second_of_two_editors_saving_a_tag_gets_a_clear_message_and_loses_nothing(personas, drama):
    from django.contrib.auth.models import Group

    second_editor = type(personas["editor"]).objects.create_user("editor2", password="pw")
    second_editor.groups.add(Group.objects.get(name="Editor"))
    ann, bob = Client(), Client()
    ann.force_login(personas["editor"])
    bob.force_login(second_editor)
    # Both open the tag page: the form carries the version they saw.
    for client in (ann, bob):
        page = client.get(f"/catalog/tags/{drama.pk}/")
        assert page.context["edit_form"].initial["version"] == drama.version
    seen = drama.version

    saved = ann.post(f"/catalog/tags/{drama.pk}/edit/", {"name": "Drama films", "version": seen})
    assert saved.status_code == 302
    stale = bob.post(f"/catalog/tags/{drama.pk}/edit/", {"name": "Dramas", "version": seen}, follow=True)
    text = stale.content.decode()
    assert "was changed by someone else since you opened it" in text
    drama.refresh_from_db()
    assert drama.name == "Drama films", "the first save stands"
    assert drama.version == seen + 1


def test_two_simultaneous_tag_saves_with_the_same_version_let_exactly_one_through(drama):
    """Real concurrency (two threads, two database connections) on the compare-and-set."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL (DATABASE_URL=postgres://...)")
    seen = drama.version
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def save(name: str):
        try:
            barrier.wait(timeout=10)
            catalog_services.tag_update(tag=Tag.objects.get(pk=drama.pk), version=seen, name=name)
            outcomes.append("saved")
        except catalog_services.StaleEdit:
            outcomes.append("stale")
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=save, args=(name,)) for name in ("Drama films", "Dramas")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["saved", "stale"]
    drama.refresh_from_db()
    assert drama.version == seen + 1
    assert drama.name in ("Drama films", "Dramas")


def test_the_second_of_two_editors_saving_an_experiment_is_refused(db):
    builders.experiment(key="home-row")
    ann = Experiment.objects.get(key="home-row")
    bob = Experiment.objects.get(key="home-row")
    ann.name = "Home row: ann's hypothesis"
    experiment_services.experiment_save(experiment=ann, changed_fields=["name"])
    bob.hypothesis = "bob's notes"
    with pytest.raises(experiment_services.ExperimentError, match="changed by someone else"):
        experiment_services.experiment_save(experiment=bob, changed_fields=["hypothesis"])
    assert Experiment.objects.get(key="home-row").name == "Home row: ann's hypothesis"
