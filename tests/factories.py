"""Small builders for tests whose object graphs get deep (events need items, profiles, a source)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from catalog.models import Item
from personalization.interactions import interactions_rebuild
from personalization.models import Event, Profile, Recommender, Source


def items(n: int, *, prefix: str = "m") -> list[Item]:
    return Item.objects.bulk_create(
        [Item(external_id=f"{prefix}{i:03d}", title=f"Title {prefix}{i:03d}") for i in range(n)]
    )


def profiles(n: int) -> list[Profile]:
    return Profile.objects.bulk_create([Profile(external_id=f"u{i:03d}") for i in range(n)])


def events(
    rows: list[tuple[Profile, Item | None, str]],
    *,
    start: datetime | None = None,
    step: timedelta | None = None,
) -> list[Event]:
    """One event per (profile, item, type) row, one ``step`` apart, ending before now."""
    source, _ = Source.objects.get_or_create(name="test")
    step = step or timedelta(minutes=10)
    start = start or timezone.now() - step * (len(rows) + 1)
    offset = Event.objects.count()
    created = Event.objects.bulk_create(
        [
            Event(
                source=source,
                message_id=f"t{offset + n}",
                name=kind,
                type=kind,
                profile=profile,
                item=item,
                timestamp=start + step * n,
                received_at=start + step * n,
            )
            for n, (profile, item, kind) in enumerate(rows)
        ]
    )
    # Keep the interaction table in step, as ingestion does.
    interactions_rebuild(profile_ids={profile.pk for profile, _, _ in rows})
    return created


def trending(**params) -> Recommender:
    return Recommender.objects.create(name="trending", algorithm="trending", params=params)
