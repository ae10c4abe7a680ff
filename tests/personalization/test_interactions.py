"""Interaction strengths: weights per canonical type, ratings, early abandons, decay, rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from personalization import interactions
from personalization.models import Interaction
from tests import factories

WEIGHTS = {"complete": 3.0, "play": 1.0, "rate": 1.0, "abandon": -1.0, "dislike": -2.0}


@pytest.mark.parametrize(
    ("kind", "value", "properties", "expected"),
    [
        ("complete", None, {}, 3.0),
        ("rate", 5.0, {}, 2.0),
        ("rate", 1.0, {}, -2.0),
        ("rate", None, {}, 0.0),
        ("abandon", None, {"position": 300, "total_length": 6000}, -1.0),
        ("abandon", None, {"progress": 80}, 0.0),
        ("dislike", None, {}, -2.0),
        ("search", None, {}, 0.0),
    ],
)
def test_each_event_adds_its_configured_weight(settings, kind, value, properties, expected):
    settings.INTERACTION_RATING_MIDPOINT = 3.0
    settings.INTERACTION_EARLY_ABANDON = 0.5
    assert (
        interactions.event_weight(event_type=kind, value=value, properties=properties, weights=WEIGHTS)
        == expected
    )


def test_decay_halves_a_strength_every_half_life():
    assert interactions.decay_factor(age_seconds=0, half_life_days=7) == 1.0
    assert interactions.decay_factor(age_seconds=14 * 86400, half_life_days=7) == pytest.approx(0.25)
    assert interactions.decay_factor(age_seconds=10**9, half_life_days=0) == 1.0


def test_decayed_deltas_match_a_brute_force_sum(settings):
    settings.INTERACTION_HALF_LIFE_DAYS = 10.0
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(1, 1, 3.0, t0 + timedelta(days=d)) for d in (5, 0, 20)]
    delta = interactions.deltas_collect(rows)[(1, 1)]
    last = t0 + timedelta(days=20)
    brute = sum(w * 0.5 ** ((last - at).total_seconds() / 86400 / 10) for _, _, w, at in rows)
    assert delta.strength == pytest.approx(brute)
    assert (delta.count, delta.last_at) == (3, last)


def test_decayed_strengths_added_batch_by_batch_equal_one_batch(db, settings):
    settings.INTERACTION_HALF_LIFE_DAYS = 10.0
    item, person = factories.items(1)[0], factories.profiles(1)[0]
    Interaction.objects.all().delete()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(person.pk, item.pk, 3.0, t0 + timedelta(days=d)) for d in (5, 0, 20)]
    for row in rows:  # the first creates the pair, the others update it
        interactions.interactions_add(deltas=interactions.deltas_collect([row]))
    whole = interactions.deltas_collect(rows)[(person.pk, item.pk)]
    pair = Interaction.objects.get()
    assert pair.strength == pytest.approx(whole.strength)
    assert (pair.count, pair.last_at) == (3, whole.last_at)


def test_a_rebuild_gives_the_same_table_as_incremental_maintenance(db):
    items = factories.items(3)
    people = factories.profiles(2)
    events = factories.events(
        [(people[0], items[0], "complete"), (people[0], items[0], "play"), (people[1], items[1], "dislike"),
         (people[1], items[2], "view"), (people[0], None, "search")]
    )  # fmt: skip
    Interaction.objects.all().delete()  # the factory keeps the table in step; start empty
    weights = interactions.interaction_weights()
    interactions.interactions_add(
        deltas=interactions.deltas_collect(
            (e.profile_id, e.item_id, interactions.event_weight(
                event_type=e.type, value=e.value, properties=e.properties, weights=weights), e.timestamp)
            for e in events if e.item_id
        )
    )  # fmt: skip
    incremental = set(Interaction.objects.values_list("profile_id", "item_id", "strength", "count"))
    assert interactions.interactions_rebuild(chunk_size=2) == 3
    assert set(Interaction.objects.values_list("profile_id", "item_id", "strength", "count")) == incremental
    assert (people[0].pk, items[0].pk, 4.0, 2) in incremental


def test_the_rebuild_command_reports_the_pairs(db, capsys):
    from django.core.management import call_command

    items, people = factories.items(1), factories.profiles(1)
    factories.events([(people[0], items[0], "play")])
    call_command("rebuild_interactions")
    assert "1 profile-item interactions written." in capsys.readouterr().out
