"""Events and interactions have no database foreign key to their profile: the paths that
delete or merge profiles, and those that delete items, must leave no row pointing nowhere."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection, connections

from catalog.models import Item
from personalization import identity, profiles, tracking
from personalization.models import Event, Interaction, Profile, Source

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def orphans() -> tuple[int, int]:
    """(events, interactions) whose profile does not exist."""
    known = Profile.objects.values("pk")
    return (
        Event.objects.exclude(profile_id__in=known).count(),
        Interaction.objects.exclude(profile_id__in=known).count(),
    )


def ingest(source: Source, *messages: dict) -> tracking.IngestReport:
    return tracking.events_ingest(source=source, messages=list(messages), received_at=NOW)


def play(message_id: str, item: str = "m1", **ids) -> dict:
    return {"type": "track", "event": "play", "messageId": message_id, "properties": {"item_id": item},
            "timestamp": "2026-11-30T11:00:00Z", **ids}  # fmt: skip


@pytest.fixture
def source(db):
    Item.objects.create(external_id="m1", title="Night Harbour")
    Item.objects.create(external_id="m2", title="Salt Road")
    return Source.objects.create(name="web")


def test_a_privacy_deletion_leaves_no_events_or_interactions_behind(source):
    ingest(source, play("a", userId="u1"), play("b", "m2", userId="u1"), play("c", userId="u2"))
    profiles.profile_delete(profile=Profile.objects.get(external_id="u1"))
    assert orphans() == (0, 0)
    assert Event.objects.count() == 1
    assert Interaction.objects.count() == 1


def test_a_bulk_deletion_of_profiles_cascades_like_a_single_one(source):
    ingest(source, play("a", userId="u1"), play("b", anonymousId="d1"), play("c", userId="u2"))
    Profile.objects.exclude(external_id="u2").delete()
    assert orphans() == (0, 0)
    assert list(Event.objects.values_list("message_id", flat=True)) == ["c"]


def test_a_merge_moves_everything_to_the_survivor(source):
    ingest(source, play("a", anonymousId="d1"), play("b", "m2", anonymousId="d1"), play("c", userId="u1"))
    anonymous = Profile.objects.get(anonymous_ids__anonymous_id="d1")
    report = ingest(source, {"type": "identify", "messageId": "i", "userId": "u1", "anonymousId": "d1"})
    assert report.merges == 1
    assert not Profile.objects.filter(pk=anonymous.pk).exists()
    assert orphans() == (0, 0)
    survivor = Profile.objects.get(external_id="u1")
    assert set(Event.objects.values_list("profile_id", flat=True)) == {survivor.pk}
    assert Interaction.objects.filter(profile=survivor).count() == 2


def test_deleting_an_item_clears_it_from_events_and_drops_its_interactions(source):
    ingest(source, play("a", userId="u1"), play("b", "m2", userId="u1"))
    Item.objects.get(external_id="m1").delete()
    assert Event.objects.get(message_id="a").item_id is None
    assert list(Interaction.objects.values_list("item__external_id", flat=True)) == ["m2"]
    assert orphans() == (0, 0)


def test_profiles_created_by_a_batch_span_all_its_events(source):
    ingest(
        source,
        {**play("a", userId="u1"), "timestamp": "2026-11-30T09:00:00Z"},
        {**play("b", userId="u1"), "timestamp": "2026-11-30T11:30:00Z"},
        {**play("c", anonymousId="d1"), "timestamp": "2026-11-30T08:00:00Z"},
        {**play("d", anonymousId="d1"), "timestamp": "2026-11-30T10:00:00Z"},
    )
    known = Profile.objects.get(external_id="u1")
    anonymous = Profile.objects.get(anonymous_ids__anonymous_id="d1")
    assert (known.first_seen.hour, known.last_seen.hour, known.last_seen.minute) == (9, 11, 30)
    assert (anonymous.first_seen.hour, anonymous.last_seen.hour) == (8, 10)


def _wait_until_blocked(pid: int) -> None:
    """Poll (bounded) until the backend ``pid`` waits for a lock."""
    with connections["default"].cursor() as cursor:
        for _ in range(2000):
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
            threading.Event().wait(0.01)
    raise AssertionError("the deletion never waited for the batch's lock")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["privacy deletion", "merge"])
def test_a_profile_deleted_while_a_batch_is_stored_takes_the_batch_events_with_it(monkeypatch, how):
    """A batch has resolved and locked its profile; a deletion (or a merge) of that profile
    starts before the batch commits. The deletion waits for the batch, then removes (or
    moves) its events too: without the lock-first deletion they would be left orphaned."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (SQLite serialises write transactions)")
    Item.objects.create(external_id="m1", title="Night Harbour")
    source = Source.objects.create(name="web")
    ingest(source, play("old", anonymousId="d1"))
    victim = Profile.objects.get(anonymous_ids__anonymous_id="d1")
    survivor = Profile.objects.create(external_id="u9")
    resolved, release = threading.Event(), threading.Event()
    items_resolve = tracking._items_resolve
    deleter_pid: list[int] = []
    errors: list[BaseException] = []

    def hold(messages):
        resolved.set()
        release.wait(30)
        return items_resolve(messages)

    monkeypatch.setattr(tracking, "_items_resolve", hold)

    def run(target):
        def body():
            try:
                target()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    def delete():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            deleter_pid.append(cursor.fetchone()[0])
        if how == "merge":
            identity.profile_merge(source=Profile.objects.get(pk=victim.pk), target=survivor, reason="test")
        else:
            profiles.profile_delete(profile=Profile.objects.get(pk=victim.pk))

    batch = run(lambda: ingest(source, play("new1", anonymousId="d1"), play("new2", anonymousId="d1")))
    assert resolved.wait(30)
    deleter = run(delete)
    while not deleter_pid and deleter.is_alive():
        threading.Event().wait(0.01)
    _wait_until_blocked(deleter_pid[0])
    release.set()
    batch.join(30)
    deleter.join(30)
    assert not errors
    assert orphans() == (0, 0)
    if how == "merge":
        assert Event.objects.filter(profile=survivor).count() == 3
    else:
        assert not Event.objects.exists()
        assert not Interaction.objects.exists()


def test_a_profile_gone_before_the_batch_locked_it_is_resolved_again(source):
    """Profiles from identity resolution are not locked by the look-ups; one deleted before
    the batch locks it sends the batch back to resolve its ids (here: a new profile)."""
    ingest(source, play("a", userId="u1"))
    old = Profile.objects.get(external_id="u1")
    message = tracking.message_parse(
        play("b", userId="u1"), index=0, kind=None, received_at=NOW, limits=tracking.limits_load()
    )
    ids = tracking._ProfileIds([message])
    message.profile_id = ids.profile_for(message)
    ids.locked.clear()  # as if identity resolution had found it
    Profile.objects.filter(pk=old.pk).delete()
    assert tracking._profiles_hold([message], ids) == 1
    assert message.profile_id != old.pk
    assert Profile.objects.get(external_id="u1").pk == message.profile_id
