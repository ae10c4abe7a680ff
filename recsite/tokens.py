"""API tokens stored hashed: create (the key is shown once), authenticate, revoke.

Replaces ``rest_framework.authtoken``, which keeps keys in clear. The header format stays the
same (``Authorization: Token KEY``), and keys issued by DRF before the switch keep working:
migration ``recsite.0002_api_tokens`` stores their hash and deletes the clear copies.
The views are in ``recsite.token_views`` (DRF imports this module while it starts).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiToken
from .services import audit_record

KEY_PREFIX = "rs_tk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 6
MAX_NAME_LENGTH = 100
# last_used_at is written at most this often per token, to keep the hot path read-only.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(
    *, user: AbstractBaseUser, name: str = "", created_by: AbstractBaseUser | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``. The clear key is returned once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    creator = created_by if created_by is not None and created_by.is_authenticated else None
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name.strip()[:MAX_NAME_LENGTH],
            prefix=key[:PREFIX_LENGTH],
            key_hash=token_hash(key),
            created_by=creator,
        )
        audit_record(
            actor=creator or user,
            action="api_token.create",
            target=token,
            detail={"user": user.get_username(), "name": token.name},
        )
    return token, key


def token_revoke(*, token: ApiToken, revoked_by: AbstractBaseUser | None = None) -> bool:
    """Revoke a token (conditional: revoking twice is a no-op). Effective on the next request."""
    revoked = (
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()) == 1
    )
    if revoked:
        audit_record(
            actor=revoked_by,
            action="api_token.revoke",
            target=token,
            detail={"user": token.user.get_username()},
        )
    return revoked


def token_authenticate(*, key: str, now: datetime | None = None) -> ApiToken | None:
    """The active token with this key, its user loaded; records when it was last used."""
    if not key:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(key), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = now or timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_may_manage(*, user: AbstractBaseUser, token: ApiToken) -> bool:
    """Everyone manages their own tokens; admins (change_apitoken) manage everyone's."""
    return token.user_id == user.pk or user.has_perm("recsite.change_apitoken")


class HashedTokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token KEY`` checked against the stored hashes (DRF's header parsing)."""

    def authenticate_credentials(self, key):
        token = token_authenticate(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
