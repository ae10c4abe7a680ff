"""Profiles: traits, the customer-360 view, declared preferences, privacy and retention."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone
from django.utils.crypto import salted_hmac

from catalog.models import ItemTag, Tag
from recsite.services import audit_record

from .models import (
    AnonymousId,
    DeclaredPreference,
    DeletionLog,
    Event,
    Interaction,
    MergeRequest,
    Profile,
    ProfileMerge,
)

logger = logging.getLogger(__name__)

SET_ONCE = "$set_once"


class ProfileError(Exception):
    """A profile request was refused; ``field`` names the offending input."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


# --- Traits -------------------------------------------------------------------------------


def traits_merge(current: Mapping, incoming: Mapping) -> dict:
    """Segment ``identify`` semantics: incoming traits overwrite; the ``$set_once`` object's
    keys are written only when absent. Pure."""
    merged = dict(current)
    for key, value in incoming.items():
        if key == SET_ONCE:
            continue
        merged[key] = value
    once = incoming.get(SET_ONCE)
    if isinstance(once, Mapping):
        for key, value in once.items():
            merged.setdefault(key, value)
    return merged


def traits_apply(*, profile: Profile, traits: Mapping) -> Profile:
    """Apply identify traits to a profile (a locked read-modify-write)."""
    if not traits:
        return profile
    with transaction.atomic():
        locked = Profile.objects.select_for_update().only("traits").get(pk=profile.pk)
        merged = traits_merge(locked.traits, traits)
        if merged != locked.traits:
            Profile.objects.filter(pk=profile.pk).update(traits=merged)
        profile.traits = merged
    return profile


def profile_find(*, user_id: str | None = None, anonymous_id: str | None = None) -> Profile | None:
    if user_id:
        return Profile.objects.filter(external_id=user_id).first()
    if anonymous_id:
        return Profile.objects.filter(anonymous_ids__anonymous_id=anonymous_id).first()
    return None


# --- Customer 360 ---------------------------------------------------------------------------


@dataclass
class TagAffinity:
    facet: str
    tag: str
    path: str
    strength: float
    items: int


def tag_affinities(*, profile: Profile, per_facet: int = 8) -> list[TagAffinity]:
    """Interaction strength summed per tag of the items this profile interacted with,
    grouped by facet (top ``per_facet`` tags each). Two queries."""
    rows = (
        ItemTag.objects.filter(item__interactions__profile=profile)
        .values("tag_id", "tag__name", "tag__slug_path", "tag__path", "tag__depth")
        .annotate(strength=Sum("item__interactions__strength"), items=Count("item_id", distinct=True))
    )
    rows = [r for r in rows if r["tag__depth"] > 1]
    steplen = Tag.steplen
    facet_names = dict(
        Tag.objects.filter(depth=1, path__in={r["tag__path"][:steplen] for r in rows}).values_list(
            "path", "name"
        )
    )
    by_facet: dict[str, list[TagAffinity]] = defaultdict(list)
    for r in rows:
        facet = facet_names.get(r["tag__path"][:steplen], "")
        by_facet[facet].append(
            TagAffinity(
                facet, r["tag__name"], r["tag__slug_path"], round(r["strength"] or 0.0, 3), r["items"]
            )
        )
    out: list[TagAffinity] = []
    for facet in sorted(by_facet):
        out += sorted(by_facet[facet], key=lambda a: (-a.strength, a.tag))[:per_facet]
    return out


def interaction_totals(*, profile: Profile) -> dict:
    return Interaction.objects.filter(profile=profile).aggregate(
        pairs=Count("pk"), strength=Sum("strength"), last_at=Max("last_at")
    )


# --- Zero-party data ------------------------------------------------------------------------


def preferences_declare(
    *,
    profile: Profile,
    liked: Iterable[str],
    disliked: Iterable[str],
    origin: str = "api",
    replace: bool = True,
) -> list[DeclaredPreference]:
    """Store what a person said they like and dislike, by tag slug path ("genre/anime").

    With ``replace`` the previous declarations are dropped (a quiz answers everything again).
    """
    liked, disliked = list(dict.fromkeys(liked)), list(dict.fromkeys(disliked))
    both = set(liked) & set(disliked)
    if both:
        raise ProfileError(f"Tags both liked and disliked: {', '.join(sorted(both))}.", field="disliked")
    tags = dict(Tag.objects.filter(slug_path__in=[*liked, *disliked]).values_list("slug_path", "pk"))
    for field, paths in (("liked", liked), ("disliked", disliked)):
        unknown = [p for p in paths if p not in tags]
        if unknown:
            raise ProfileError(f"Unknown tags: {', '.join(unknown[:10])}.", field=field)
    rows = [
        DeclaredPreference(profile=profile, tag_id=tags[path], sentiment=sentiment, origin=origin)
        for paths, sentiment in ((liked, 1), (disliked, -1))
        for path in paths
    ]
    with transaction.atomic():
        if replace:
            DeclaredPreference.objects.filter(profile=profile).delete()
        else:
            DeclaredPreference.objects.filter(profile=profile, tag_id__in=[r.tag_id for r in rows]).delete()
        DeclaredPreference.objects.bulk_create(rows)
    return rows


def preferences_for(*, profile: Profile) -> dict[str, list[str]]:
    rows = DeclaredPreference.objects.filter(profile=profile).values_list("sentiment", "tag__slug_path")
    out: dict[str, list[str]] = {"liked": [], "disliked": []}
    for sentiment, path in rows.order_by("tag__slug_path"):
        out["liked" if sentiment > 0 else "disliked"].append(path)
    return out


# --- Privacy --------------------------------------------------------------------------------


def profile_export(*, profile: Profile) -> dict:
    """Everything we hold about one person, as JSON-ready data."""
    events = (
        Event.objects.filter(profile=profile).select_related("item", "source").order_by("timestamp", "pk")
    )
    interactions = Interaction.objects.filter(profile=profile).select_related("item").order_by("item_id")
    return {
        "profile": {
            "id": profile.pk,
            "user_id": profile.external_id,
            "traits": profile.traits,
            "first_seen": _iso(profile.first_seen),
            "last_seen": _iso(profile.last_seen),
            "created_at": _iso(profile.created_at),
        },
        "anonymous_ids": list(profile.anonymous_ids.order_by("pk").values_list("anonymous_id", flat=True)),
        "declared_preferences": preferences_for(profile=profile),
        "interactions": [
            {"item": i.item.external_id, "strength": i.strength, "count": i.count, "last_at": _iso(i.last_at)}
            for i in interactions
        ],
        "events": [
            {
                "message_id": e.message_id,
                "source": e.source.name,
                "name": e.name,
                "type": e.type,
                "item": e.item.external_id if e.item else None,
                "value": e.value,
                "properties": e.properties,
                "timestamp": _iso(e.timestamp),
                "received_at": _iso(e.received_at),
            }
            for e in events.iterator(chunk_size=2000)
        ],
        "merges": list(
            ProfileMerge.objects.filter(survivor=profile).values("merged_profile_id", "reason", "created_at")
        ),
        "exported_at": _iso(timezone.now()),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def id_hash(value: str) -> str:
    """A keyed hash of an id: lets an admin check "was this id deleted?" without storing it."""
    return salted_hmac("recsite.deletion", value, algorithm="sha256").hexdigest()


def profile_delete(*, profile: Profile, deleted_by: AbstractBaseUser | None = None) -> DeletionLog:
    """Delete one person: events, traits, identities, interactions, preferences, merge history,
    and (by cascade) segment memberships and experiment assignments. Logged without personal data."""
    with transaction.atomic():
        anonymous_ids = list(profile.anonymous_ids.values_list("anonymous_id", flat=True))
        counts = {
            "events": Event.objects.filter(profile=profile).count(),
            "anonymous_ids": len(anonymous_ids),
            "interactions": Interaction.objects.filter(profile=profile).count(),
        }
        # Reasons name user ids; an approved request whose profile is gone keeps only its status.
        MergeRequest.objects.filter(profile=profile).delete()
        # Events first, in one statement, so the cascade below has nothing large to collect.
        Event.objects.filter(profile=profile).delete()
        ident = profile.external_id or (anonymous_ids[0] if anonymous_ids else f"profile:{profile.pk}")
        profile.delete()
        log = DeletionLog.objects.create(
            id_hash=id_hash(ident),
            deleted_by=deleted_by if deleted_by is not None and deleted_by.is_authenticated else None,
            counts=counts,
        )
        audit_record(actor=deleted_by, action="profile.delete", target=log, detail=counts)
    logger.info("profile deleted: %s %s", log.id_hash[:12], counts)
    return log


def events_retention_apply(
    *, now: datetime | None = None, days: int | None = None, chunk_size: int = 10_000
) -> int:
    """Delete events older than EVENT_RETENTION_DAYS (0 keeps everything), in chunks so that
    no transaction holds locks for long. Interaction strengths are left as they are."""
    days = settings.EVENT_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(Event.objects.filter(timestamp__lt=cutoff).values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return deleted
        deleted += Event.objects.filter(pk__in=ids).delete()[0]


def anonymous_ids_of(*, profile: Profile) -> list[AnonymousId]:
    return list(profile.anonymous_ids.order_by("created_at", "pk"))
