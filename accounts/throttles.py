"""Rate limits for the credential endpoints (login, register)."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class AuthRateThrottle(SimpleRateThrottle):
    """Limits login and registration attempts per client address (scope ``auth``).

    DRF copies ``DEFAULT_THROTTLE_RATES`` onto the class at import time; reading the rate at
    call time lets ``AUTH_THROTTLE_RATE`` and ``override_settings`` take effect.
    """

    scope = "auth"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        # Per address even for authenticated callers: the point is to slow down password guessing.
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
