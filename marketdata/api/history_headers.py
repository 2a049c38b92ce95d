"""The headers Django's stack puts on a history answer, for the fast route (``history_route``).

A 200 of ``/marketdata/intraday`` or ``/marketdata/daily`` through Django carries the view's
``Content-Type`` and DRF's ``Allow``, then on the way out the
middleware's: CORS (``Vary: origin``; for an allowed ``Origin`` the ``Access-Control-*``
headers, computed by django-cors-headers' own middleware here too), the security headers
(``X-Content-Type-Options``, ``Referrer-Policy``, ``Cross-Origin-Opener-Policy``, HSTS on
HTTPS), ``X-Frame-Options``, ``Content-Security-Policy`` and ``Content-Length``. Everything
but CORS and the length depends on settings only, so it is built once and rebuilt when a
setting changes. ``marketdata/tests/test_history_route.py`` checks the result against Django's.
"""

from __future__ import annotations

import re
from typing import Any

from corsheaders.conf import conf as cors_conf
from corsheaders.middleware import CorsMiddleware
from corsheaders.signals import check_request_enabled
from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpResponse

_ALLOW = b"GET, HEAD, OPTIONS"  # DRF's Allow for a view with get (Django adds head)
_cache: dict[bool, list[tuple[bytes, bytes]]] = {}
_cors = CorsMiddleware(lambda request: None)


def _static(secure: bool) -> list[tuple[bytes, bytes]]:
    """The settings-only headers: the view's and the security middleware's."""
    from csp.utils import build_policy

    headers = [(b"Content-Type", b"application/json"), (b"Allow", _ALLOW), (b"X-Frame-Options", b"DENY")]
    if settings.X_FRAME_OPTIONS:
        headers[-1] = (b"X-Frame-Options", settings.X_FRAME_OPTIONS.upper().encode())
    else:
        headers.pop()
    if settings.SECURE_HSTS_SECONDS and secure:
        value = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            value += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            value += "; preload"
        headers.append((b"Strict-Transport-Security", value.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"X-Content-Type-Options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        if not isinstance(policy, str):
            policy = ",".join(policy)
        headers.append((b"Referrer-Policy", policy.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    csp = getattr(settings, "CONTENT_SECURITY_POLICY", None)
    if csp is not None:
        headers.append((b"Content-Security-Policy", build_policy().encode()))
    report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
    if report_only is not None:
        headers.append((b"Content-Security-Policy-Report-Only", build_policy(report_only=True).encode()))
    return headers


def _forget(**_kwargs: Any) -> None:
    _cache.clear()


setting_changed.connect(_forget, dispatch_uid="history-route-headers")


class _CorsRequest:
    """What django-cors-headers reads of a request: its headers, path and method."""

    method = "GET"

    def __init__(self, path: str, origin: str) -> None:
        self.path_info = path
        self.headers = {"origin": origin}


def response_headers(*, body: bytes, origin: bytes | None, path: str, secure: bool) -> list[tuple[bytes, bytes]]:
    """The headers of a 200 history answer with ``body`` to a GET of ``path`` (``Origin`` if sent)."""
    static = _cache.get(secure)
    if static is None:
        static = _cache[secure] = _static(secure)
    headers = [*static, (b"Content-Length", str(len(body)).encode())]
    if not re.match(cors_conf.CORS_URLS_REGEX, path):
        return headers
    if origin is None:
        headers.append((b"Vary", b"origin"))
        return headers
    response = HttpResponse()
    _cors.add_response_headers(_CorsRequest(path, origin.decode("latin-1")), response)  # type: ignore[arg-type]
    return headers + [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items() if k != "Content-Type"
    ]


def cors_signal_in_use() -> bool:
    """Whether a receiver may enable CORS per request (then only Django can tell)."""
    return bool(check_request_enabled.receivers)
