"""Identity resolution: link anonymous ids to user ids, alias, and merge profiles.

Rules: ``identify`` links an anonymous id to a user id (an anonymous profile is merged into
the known one); ``alias`` merges explicitly; two profiles that both have a user id are never
merged automatically: a MergeRequest is recorded for an admin to decide.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import interactions
from .models import AnonymousId, DeclaredPreference, Event, Interaction, MergeRequest, Profile, ProfileMerge

logger = logging.getLogger(__name__)

# Values that SDKs send when they have no real id; linking on them would merge strangers.
PLACEHOLDER_IDS = frozenset(
    {
        "", "0", "-1", "anonymous", "anon", "guest", "null", "nil", "none", "undefined", "unknown",
        "nan", "n/a", "na", "false", "true", "[object object]", "{}", "[]", "user", "visitor",
        "00000000-0000-0000-0000-000000000000",
    }
)  # fmt: skip
MAX_ID_LENGTH = 200


class IdentityError(Exception):
    """An id or a merge was refused; ``field`` names the offending input."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def id_clean(value: object, *, field: str) -> str | None:
    """A usable id as a string, None when absent; refuses placeholders and junk."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise IdentityError(f"{field} must be a string.", field=field)
    text = str(value).strip()
    if text.lower() in PLACEHOLDER_IDS:
        raise IdentityError(f"{field} {text!r} is a placeholder, not an id; omit it instead.", field=field)
    if len(text) > MAX_ID_LENGTH:
        raise IdentityError(f"{field} is longer than {MAX_ID_LENGTH} characters.", field=field)
    return text


def _profile_for_user(user_id: str, *, at: datetime | None) -> Profile:
    profile = Profile.objects.filter(external_id=user_id).first()
    if profile is not None:
        return profile
    try:
        with transaction.atomic():
            return Profile.objects.create(external_id=user_id, first_seen=at, last_seen=at)
    except IntegrityError:  # created meanwhile by another request
        return Profile.objects.get(external_id=user_id)


def _anonymous_attach(anonymous_id: str, profile: Profile) -> Profile:
    """Link ``anonymous_id`` to ``profile``; returns the profile that owns it in the end."""
    try:
        with transaction.atomic():
            AnonymousId.objects.create(anonymous_id=anonymous_id, profile=profile)
            return profile
    except IntegrityError:
        return AnonymousId.objects.select_related("profile").get(anonymous_id=anonymous_id).profile


def merge_request_record(*, profile: Profile, into: Profile, reason: str) -> MergeRequest:
    """Record (once) that two known profiles look like one person."""
    existing = MergeRequest.objects.filter(
        profile=profile, into=into, status=MergeRequest.Status.OPEN
    ).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return MergeRequest.objects.create(profile=profile, into=into, reason=reason[:300])
    except IntegrityError:
        return MergeRequest.objects.get(profile=profile, into=into, status=MergeRequest.Status.OPEN)


def profile_identify(
    *, user_id: str | None, anonymous_id: str | None, at: datetime | None = None
) -> tuple[Profile, bool]:
    """The profile for these ids, creating and linking as needed (``identify`` semantics).

    Returns the profile and whether a merge happened (callers holding id caches reload them).
    """
    if not user_id and not anonymous_id:
        raise IdentityError("userId or anonymousId is required.", field="userId")
    anon = None
    if anonymous_id:
        anon = AnonymousId.objects.select_related("profile").filter(anonymous_id=anonymous_id).first()
    if not user_id:
        if anon is not None:
            return anon.profile, False
        with transaction.atomic():
            profile = Profile.objects.create(first_seen=at, last_seen=at)
            owner = _anonymous_attach(anonymous_id, profile)
        if owner.pk != profile.pk:
            profile.delete()
        return owner, False

    user = Profile.objects.filter(external_id=user_id).first()
    if anon is None:
        user = user or _profile_for_user(user_id, at=at)
        if anonymous_id:
            _anonymous_attach(anonymous_id, user)
        return user, False
    if user is not None and anon.profile_id == user.pk:
        return user, False
    if user is None:
        # An anonymous profile becomes known (conditional: another request may win).
        if anon.profile.external_id is None:
            try:
                with transaction.atomic():
                    claimed = Profile.objects.filter(pk=anon.profile_id, external_id__isnull=True).update(
                        external_id=user_id
                    )
            except IntegrityError:
                claimed = 0
            if claimed:
                anon.profile.external_id = user_id
                return anon.profile, False
        user = _profile_for_user(user_id, at=at)
        if anon.profile_id == user.pk:
            return user, False
    if anon.profile.external_id is None:
        profile_merge(source=anon.profile, target=user, reason="identify")
        return user, True
    merge_request_record(
        profile=anon.profile,
        into=user,
        reason=f"Anonymous id seen with user ids {anon.profile.external_id!r} and {user_id!r}.",
    )
    return user, False


def profile_alias(*, previous_id: str, user_id: str, at: datetime | None = None) -> tuple[Profile, bool]:
    """Segment ``alias``: ``previous_id`` (an anonymous or older user id) is the same person
    as ``user_id``. Returns the surviving profile and whether a merge happened."""
    previous = Profile.objects.filter(external_id=previous_id).first()
    if previous is None:
        return profile_identify(user_id=user_id, anonymous_id=previous_id, at=at)
    target = Profile.objects.filter(external_id=user_id).first()
    if target is None:
        target = _profile_for_user(user_id, at=at)
    if target.pk == previous.pk:
        return target, False
    merge_request_record(
        profile=previous, into=target, reason=f"Alias of user id {previous_id!r} to {user_id!r}."
    )
    return target, False


def profile_merge(
    *,
    source: Profile,
    target: Profile,
    reason: str,
    merged_by: AbstractBaseUser | None = None,
    allow_known: bool = False,
) -> ProfileMerge:
    """Move everything of ``source`` to ``target`` and delete ``source``. Idempotent: a
    second call for the same source returns the recorded merge.

    Two known profiles merge only with ``allow_known`` (an admin approving a MergeRequest).
    """
    if source.pk == target.pk:
        raise IdentityError("A profile cannot be merged into itself.", field="profile")
    with transaction.atomic():
        done = ProfileMerge.objects.filter(merged_profile_id=source.pk).first()
        if done is not None:
            return done
        # Lock both rows in a fixed order so that two merges cannot deadlock.
        locked = {p.pk: p for p in Profile.objects.select_for_update().filter(pk__in=[source.pk, target.pk])}
        if target.pk not in locked:
            raise IdentityError("The surviving profile no longer exists.", field="into")
        if source.pk not in locked:
            return ProfileMerge.objects.get(merged_profile_id=source.pk)
        source, target = locked[source.pk], locked[target.pk]
        if source.external_id and target.external_id and not allow_known:
            raise IdentityError(
                "Both profiles have a user id; only an admin can merge them.", field="profile"
            )
        moved = {
            "events": Event.objects.filter(profile=source).update(profile=target),
            "anonymous_ids": AnonymousId.objects.filter(profile=source).update(profile=target),
        }
        rows = list(
            Interaction.objects.filter(profile=source).values_list("item_id", "strength", "count", "last_at")
        )
        interactions.interactions_add(
            deltas={
                (target.pk, item_id): interactions.Delta(strength, count, last_at)
                for item_id, strength, count, last_at in rows
            }
        )
        moved["interactions"] = len(rows)
        target_tags = DeclaredPreference.objects.filter(profile=target).values("tag_id")
        moved["preferences"] = (
            DeclaredPreference.objects.filter(profile=source)
            .exclude(tag_id__in=target_tags)
            .update(profile=target)
        )
        ProfileMerge.objects.filter(survivor=source).update(survivor=target)
        moved["assignments"] = _assignments_merge(source=source, target=target)
        target.traits = {**source.traits, **target.traits}
        target.first_seen = min(filter(None, [source.first_seen, target.first_seen]), default=None)
        target.last_seen = max(filter(None, [source.last_seen, target.last_seen]), default=None)
        inherited_id = source.external_id if not target.external_id else None
        record = ProfileMerge.objects.create(
            survivor=target,
            merged_profile_id=source.pk,
            reason=reason,
            moved=moved,
            merged_by=merged_by if merged_by is not None and merged_by.is_authenticated else None,
        )
        source.delete()
        fields = ["traits", "first_seen", "last_seen"]
        if inherited_id:
            target.external_id = inherited_id
            fields.append("external_id")
        target.save(update_fields=fields)
    logger.info("profile %s merged into %s (%s): %s", source.pk, target.pk, reason, moved)
    return record


def _assignments_merge(*, source: Profile, target: Profile) -> int | None:
    """Experiment assignments follow the person, when the experiments app supports it."""
    try:
        from experiments.services import assignments_merge
    except ImportError:
        return None
    result = assignments_merge(source=source, target=target)
    return result if isinstance(result, int) else None


def merge_request_resolve(
    *, request: MergeRequest, approve: bool, resolved_by: AbstractBaseUser | None = None
) -> MergeRequest:
    """An admin's decision on an open merge request (compare-and-set on the status)."""
    with transaction.atomic():
        status = MergeRequest.Status.MERGED if approve else MergeRequest.Status.DISMISSED
        taken = MergeRequest.objects.filter(pk=request.pk, status=MergeRequest.Status.OPEN).update(
            status=status, resolved_at=timezone.now(), resolved_by=resolved_by
        )
        if not taken:
            raise IdentityError("This merge request was already resolved.", field="status")
        if approve:
            profile_merge(
                source=request.profile,
                target=request.into,
                reason="admin",
                merged_by=resolved_by,
                allow_known=True,
            )
    request.status = status
    return request
