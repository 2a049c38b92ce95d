"""The history endpoints' JWT authentication, with the user row cached for a few seconds."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.authentication import ApprovedJWTAuthentication, user_access_check


class _UserCache:
    """Users authenticated by JWT, by id, for a few seconds (per process).

    simplejwt reads the whole user row on every request; on the history endpoints that query
    cost as much as reading the bars. Only active, approved users that passed every check are
    kept; saving or deleting a user in this process drops its entry, other processes see the
    change (a deactivation, a rejection) within ``HISTORY_AUTH_CACHE_S`` (default 10; 0 turns
    the cache off). Read-only objects.
    """

    max_entries = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, user_id: str):
        hit = self._entries.get(user_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, user_id: str, user, ttl_s: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[user_id] = (time.monotonic() + ttl_s, user)

    def forget(self, sender=None, instance=None, **_kwargs) -> None:
        if instance is not None:
            self._entries.pop(str(getattr(instance, jwt_settings.USER_ID_FIELD, instance.pk)), None)


_user_cache = _UserCache()
post_save.connect(_user_cache.forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="history-user-cache-save")
post_delete.connect(_user_cache.forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="history-user-cache-delete")


def cached_jwt_user(validated_token):
    """The user ``CachedUserJWTAuthentication`` would take from its cache for this token, or None.

    None also when the cache is off or bypassed (``CHECK_REVOKE_TOKEN``); no query either way.
    The caller still applies the checks a cache hit gets (approval, token version).
    """
    user_id = validated_token.get(jwt_settings.USER_ID_CLAIM)
    if (
        float(getattr(settings, "HISTORY_AUTH_CACHE_S", 10.0)) <= 0
        or user_id is None
        or jwt_settings.CHECK_REVOKE_TOKEN
    ):
        return None
    return _user_cache.get(str(user_id))


class CachedUserJWTAuthentication(ApprovedJWTAuthentication):
    """simplejwt's authentication (approved users only) with the user row cached briefly (``_UserCache``)."""

    def get_user(self, validated_token):
        ttl_s = float(getattr(settings, "HISTORY_AUTH_CACHE_S", 10.0))
        user_id = validated_token.get(jwt_settings.USER_ID_CLAIM)
        # Revocation by password change compares the token with the current row: no cache then.
        if ttl_s <= 0 or user_id is None or jwt_settings.CHECK_REVOKE_TOKEN:
            return super().get_user(validated_token)
        key = str(user_id)  # simplejwt writes the claim as a string
        user = _user_cache.get(key)
        if user is None:
            # Unknown, inactive or non-approved users raise: never cached.
            user = super().get_user(validated_token)
            _user_cache.put(key, user, ttl_s)
        else:
            user_access_check(user)
        return user
