"""API tokens stored hashed: create (the key is shown once), authenticate, revoke.

Replaces ``rest_framework.authtoken``, which keeps keys in clear. The header format stays the
same (``Authorization: Token KEY``), and keys issued by DRF before the switch keep working:
migration ``recsite.0002_api_tokens`` stores their hash and deletes the clear copies.
The views are in ``recsite.token_views`` (DRF imports this module while it starts).

Each web process remembers the tokens it checked, with their users (and so their users'
permissions), for ``SERVING_CACHE_SECONDS``: a script's requests then cost no query for
authentication. A revoked token, a deactivated user or a changed role therefore takes up to
that long to apply; 0 turns the cache off.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiToken
from .services import audit_record

KEY_PREFIX = "rs_tk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 6
MAX_NAME_LENGTH = 100
# last_used_at is written at most this often per token, to keep the hot path read-only.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def key_hash(key: str) -> str:
    """How API tokens and tracking write keys are stored: SHA-256 of the key (random, long)."""
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
            key_hash=key_hash(key),
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


def key_lookup(queryset: QuerySet, *, key_hash: str, now: datetime | None = None) -> Model | None:
    """The unrevoked row of ``queryset`` (API tokens, tracking write keys: a ``key_hash``,
    ``revoked_at`` and ``last_used_at``) with this hash. Records when it was last used, at
    most once per ``LAST_USED_GRANULARITY`` so that the hot path stays read-only."""
    row = queryset.filter(key_hash=key_hash, revoked_at__isnull=True).first()
    if row is None:
        return None
    now = now or timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        type(row)._default_manager.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def token_authenticate(*, key: str, now: datetime | None = None) -> ApiToken | None:
    """The active token with this key, its user loaded; records when it was last used."""
    if not key:
        return None
    return key_lookup(ApiToken.objects.select_related("user"), key_hash=key_hash(key), now=now)


# Token hash -> (when it was checked, the token with its user); see the module's docstring.
_checked: dict[str, tuple[float, ApiToken]] = {}
_CHECKED_MAX = 10_000
_checked_lock = threading.Lock()


def token_authenticate_cached(*, key: str) -> ApiToken | None:
    """``token_authenticate`` remembered for ``SERVING_CACHE_SECONDS`` in this process (hashes
    only: no clear key is kept in memory). Unknown keys are not remembered."""
    seconds = settings.SERVING_CACHE_SECONDS
    if seconds <= 0 or not key:
        return token_authenticate(key=key)
    digest = key_hash(key)
    now = time.monotonic()
    hit = _checked.get(digest)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    token = token_authenticate(key=key)
    if token is not None:
        with _checked_lock:
            if len(_checked) >= _CHECKED_MAX:
                _checked.clear()
            _checked[digest] = (now, token)
    return token


def token_cache_clear() -> None:
    """Forget the tokens this process checked (tests; after restoring a backup)."""
    with _checked_lock:
        _checked.clear()


def token_may_manage(*, user: AbstractBaseUser, token: ApiToken) -> bool:
    """Everyone manages their own tokens; admins (change_apitoken) manage everyone's."""
    return token.user_id == user.pk or user.has_perm("recsite.change_apitoken")


class HashedTokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token KEY`` checked against the stored hashes (DRF's header parsing)."""

    def authenticate_credentials(self, key):
        token = token_authenticate_cached(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
