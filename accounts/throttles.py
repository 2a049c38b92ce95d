"""Rate limits for the credential endpoints: per client address (login, register) and per account (login).

The address is ``core.api.client_ip.client_address``: ``X-Forwarded-For`` counts only when the
socket peer is one of ``TRUSTED_PROXIES``, so forging the header gives an attacker nothing.

The per-account limit counts failed logins per email (whether or not an account has it, so
the answer does not tell) in the cache, shared by every process in stack mode (Redis): after
``LOGIN_FAILURE_LIMIT`` failures (default 10) within ``LOGIN_FAILURE_WINDOW_S`` (default 900,
counted from the first failure) the email answers 429 with ``Retry-After`` until the window
ends, even with the right password. A successful login clears the count. Rotating addresses
therefore gets no more guesses per account, and rotating accounts from one address meets the
address limit (``AUTH_THROTTLE_RATE``).
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.api.client_ip import client_address

LOGIN_LOCKED_MESSAGE = "Too many failed sign-ins for this account; try again later."


class AuthRateThrottle(SimpleRateThrottle):
    """Limits login and registration attempts per client address (scope ``auth``).

    DRF copies ``DEFAULT_THROTTLE_RATES`` onto the class at import time; reading the rate at
    call time lets ``AUTH_THROTTLE_RATE`` and ``override_settings`` take effect.
    """

    scope = "auth"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request) -> str:
        # DRF's own get_ident trusts any X-Forwarded-For when NUM_PROXIES is unset.
        return client_address(request)

    def get_cache_key(self, request, view) -> str:
        # Per address even for authenticated callers: the point is to slow down password guessing.
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def _limit() -> int:
    return int(getattr(settings, "LOGIN_FAILURE_LIMIT", 10))


def _window_s() -> int:
    return max(1, int(getattr(settings, "LOGIN_FAILURE_WINDOW_S", 900)))


def _key(email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"auth:login-fail:{digest}"


def login_lock_check(*, email: str) -> None:
    """Raise ``Throttled`` (429, ``Retry-After``) while the email has ``LOGIN_FAILURE_LIMIT`` recent failures."""
    limit = _limit()
    if limit <= 0:
        return
    key = _key(email)
    state = cache.get_many([key, f"{key}:until"])
    if int(state.get(key) or 0) < limit:
        return
    until = state.get(f"{key}:until") or (time.time() + _window_s())
    raise Throttled(wait=max(1, math.ceil(until - time.time())), detail=LOGIN_LOCKED_MESSAGE)


def login_failure_record(*, email: str) -> None:
    """Count one failed login for the email (the window starts at the first failure)."""
    if _limit() <= 0:
        return
    key, window = _key(email), _window_s()
    if cache.add(key, 0, timeout=window):
        cache.set(f"{key}:until", time.time() + window, timeout=window)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        cache.set(f"{key}:until", time.time() + window, timeout=window)


def login_failures_clear(*, email: str) -> None:
    """Forget the email's failures (after a successful login)."""
    key = _key(email)
    cache.delete_many([key, f"{key}:until"])
