"""Interaction strengths: the compact (profile, item, strength, count, last time) table.

Ingestion adds each event's weight in bulk (one upsert per batch); ``interactions_rebuild``
recomputes the table from raw events for backfills. Training and segments read this table
instead of scanning events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import eventstore
from .models import Event, Interaction

# Implicit-feedback weight of each canonical event type (negative = a bad signal), for
# training (services.EVENT_WEIGHTS) and, unless INTERACTION_WEIGHTS overrides them, here.
EVENT_WEIGHTS: dict[str, float] = {
    "complete": 3.0,
    "purchase": 3.0,
    "add_to_list": 2.0,
    "like": 2.0,
    "add_to_cart": 1.5,
    "play": 1.0,
    "rate": 1.0,
    "view": 0.5,
    "click": 0.5,
    "pause": 0.0,
    "abandon": -1.0,
    "dislike": -2.0,
}


def interaction_weights() -> dict[str, float]:
    """INTERACTION_WEIGHTS, falling back to the training weights for unlisted types."""
    return {**EVENT_WEIGHTS, **settings.INTERACTION_WEIGHTS}


def event_weight(
    *, event_type: str, value: float | None, properties: Mapping, weights: Mapping[str, float]
) -> float:
    """The strength one event adds to its (profile, item) pair. Pure: no database."""
    weight = weights.get(event_type, 0.0)
    if event_type == "rate":
        if value is None:
            return 0.0
        return weight * (value - settings.INTERACTION_RATING_MIDPOINT)
    if event_type == "abandon":
        progress = _progress(properties)
        # Leaving after most of it is not a bad signal; leaving early is.
        if progress is not None and progress >= settings.INTERACTION_EARLY_ABANDON:
            return 0.0
    return weight


def _progress(properties: Mapping) -> float | None:
    progress = properties.get("progress")
    if isinstance(progress, int | float):
        return progress / 100 if progress > 1 else progress
    position, length = properties.get("position"), properties.get("total_length")
    if isinstance(position, int | float) and isinstance(length, int | float) and length > 0:
        return position / length
    return None


def decay_factor(*, age_seconds: float, half_life_days: float) -> float:
    """2^(-age / half-life); 1 when decay is off."""
    if half_life_days <= 0:
        return 1.0
    return math.pow(2.0, -age_seconds / (half_life_days * 86400.0))


@dataclass
class Delta:
    strength: float
    count: int
    last_at: datetime


def deltas_collect(rows: Iterable[tuple[int, int, float, datetime]]) -> dict[tuple[int, int], Delta]:
    """Sum (profile_id, item_id, weight, time) rows per pair."""
    half_life = settings.INTERACTION_HALF_LIFE_DAYS
    out: dict[tuple[int, int], Delta] = {}
    for profile_id, item_id, weight, at in rows:
        key = (profile_id, item_id)
        delta = out.get(key)
        if delta is None:
            out[key] = Delta(weight, 1, at)
        elif half_life <= 0:
            delta.strength += weight
            delta.count += 1
            if at > delta.last_at:
                delta.last_at = at
        else:
            # Strengths are kept decayed to last_at.
            if at >= delta.last_at:
                age = (at - delta.last_at).total_seconds()
                delta.strength = delta.strength * decay_factor(age_seconds=age, half_life_days=half_life)
                delta.strength += weight
                delta.last_at = at
            else:
                age = (delta.last_at - at).total_seconds()
                delta.strength += weight * decay_factor(age_seconds=age, half_life_days=half_life)
            delta.count += 1
    return out


def interactions_add(*, deltas: Mapping[tuple[int, int], Delta]) -> int:
    """Add deltas to the table: one INSERT ... ON CONFLICT DO UPDATE (additive), or with time
    decay a locked read-modify-write. Runs inside the caller's transaction."""
    if not deltas:
        return 0
    if settings.INTERACTION_HALF_LIFE_DAYS > 0:
        return _interactions_add_decayed(deltas)
    eventstore.interactions_add(
        [(p, i, d.strength, d.count, d.last_at) for (p, i), d in sorted(deltas.items())]
    )
    return len(deltas)


def _interactions_add_decayed(deltas: Mapping[tuple[int, int], Delta]) -> int:
    """Read-modify-write under row locks. Missing pairs are first inserted empty (skipping
    any a concurrent batch just made), so two batches creating the same pair queue on its
    row lock instead of one failing on the unique constraint."""
    half_life = settings.INTERACTION_HALF_LIFE_DAYS
    pairs = sorted(deltas)
    Interaction.objects.bulk_create(
        [
            Interaction(profile_id=p, item_id=i, strength=0.0, count=0, last_at=deltas[p, i].last_at)
            for p, i in pairs
        ],
        ignore_conflicts=True,
    )
    rows = (
        Interaction.objects.select_for_update()
        .filter(profile_id__in={p for p, _ in pairs}, item_id__in={i for _, i in pairs})
        .order_by("profile_id", "item_id")
    )
    changed = []
    for row in rows:
        delta = deltas.get((row.profile_id, row.item_id))
        if delta is None:
            continue
        older, newer = sorted([(row.last_at, row.strength), (delta.last_at, delta.strength)])
        age = (newer[0] - older[0]).total_seconds()
        row.strength = newer[1] + older[1] * decay_factor(age_seconds=age, half_life_days=half_life)
        row.last_at = newer[0]
        row.count += delta.count
        changed.append(row)
    Interaction.objects.bulk_update(changed, ["strength", "count", "last_at"])
    return len(deltas)


def interaction_strength_now(*, strength: float, last_at: datetime, now: datetime | None = None) -> float:
    """A stored strength decayed from its last event to ``now`` (unchanged without decay)."""
    now = now or timezone.now()
    return strength * decay_factor(
        age_seconds=max(0.0, (now - last_at).total_seconds()),
        half_life_days=settings.INTERACTION_HALF_LIFE_DAYS,
    )


def interactions_rebuild(*, profile_ids: Iterable[int] | None = None, chunk_size: int = 20_000) -> int:
    """Recompute the table from raw events (all profiles, or only ``profile_ids``). Returns
    the number of pairs written."""
    weights = interaction_weights()
    events = Event.objects.filter(item__isnull=False).order_by("profile_id", "timestamp")
    existing = Interaction.objects.all()
    if profile_ids is not None:
        profile_ids = list(profile_ids)
        events = events.filter(profile_id__in=profile_ids)
        existing = existing.filter(profile_id__in=profile_ids)
    written = 0
    with transaction.atomic():
        existing.delete()
        rows = events.values_list("profile_id", "item_id", "type", "value", "properties", "timestamp")
        pending: list[tuple[int, int, float, datetime]] = []
        for profile_id, item_id, kind, value, properties, at in rows.iterator(chunk_size=chunk_size):
            weight = event_weight(event_type=kind, value=value, properties=properties or {}, weights=weights)
            pending.append((profile_id, item_id, weight, at))
            # Flush on a profile boundary only, so each pair is complete in one flush.
            if len(pending) >= max(chunk_size, 2) and pending[-2][0] != profile_id:
                last = pending.pop()
                written += _rebuild_flush(pending)
                pending = [last]
        written += _rebuild_flush(pending)
    return written


def _rebuild_flush(rows: list[tuple[int, int, float, datetime]]) -> int:
    deltas = deltas_collect(rows)
    Interaction.objects.bulk_create(
        [
            Interaction(profile_id=p, item_id=i, strength=d.strength, count=d.count, last_at=d.last_at)
            for (p, i), d in deltas.items()
        ],
        batch_size=2000,
    )
    return len(deltas)
