"""Where a provider's URL settings may point: its own hosts, so its credentials go nowhere else.

Dhan's access token travels with every REST call (a header) and the feed handshake (the query
string): a ``rest_url`` or ``feed_url`` naming another host would hand it over. Every setting
whose name ends in ``_url`` of a kind listed in ``PROVIDER_HOSTS`` must name one of that kind's
hosts over TLS (https/wss). The deployment setting ``PROVIDER_URL_ALLOWED_HOSTS`` (``host`` or
``host:port`` entries; never settable over the API or the admin) adds hosts, plain http/ws
allowed, for a proxy or a local fake. The simulated and replay kinds hold no credentials.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from core.net import host_is_allowed

PROVIDER_HOSTS: dict[str, frozenset[str]] = {
    "dhan": frozenset({"api.dhan.co", "api-feed.dhan.co", "sandbox.dhan.co"}),
    "yahoo": frozenset({"streamer.finance.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com"}),
}
SECURE_SCHEMES = frozenset({"https", "wss"})
SCHEMES = frozenset({"http", "https", "ws", "wss"})


def deployment_allowed_hosts() -> tuple[str, ...]:
    return tuple(getattr(settings, "PROVIDER_URL_ALLOWED_HOSTS", ()) or ())


def _problem(kind: str, name: str, value: Any) -> str:
    if value in (None, ""):
        return ""  # the client falls back to the kind's default URL
    if not isinstance(value, str):
        return f"{name} must be a URL string."
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return f"{name} is not a valid URL."
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in SCHEMES or not host or parts.username is not None or parts.password is not None:
        return f"{name} must be an https or wss URL with a host and no user name."
    default_port = 443 if scheme in SECURE_SCHEMES else 80
    if host_is_allowed(host, port or default_port, deployment_allowed_hosts()):
        return ""
    if host in PROVIDER_HOSTS[kind] and scheme in SECURE_SCHEMES:
        return ""
    if host in PROVIDER_HOSTS[kind]:
        return f"{name} must use https or wss: the provider's credentials travel with it."
    return (
        f"{name} must point at one of the {kind} provider's hosts ({', '.join(sorted(PROVIDER_HOSTS[kind]))}): "
        "its credentials are sent there. An operator can allow another host with PROVIDER_URL_ALLOWED_HOSTS."
    )


def provider_url_problems(kind: str, provider_settings: Any) -> list[str]:
    """What is wrong with the ``*_url`` settings of a provider of ``kind`` (empty when nothing is)."""
    if kind not in PROVIDER_HOSTS or not isinstance(provider_settings, dict):
        return []
    return [
        problem
        for name in sorted(provider_settings, key=str)
        if str(name).endswith("_url") and (problem := _problem(kind, str(name), provider_settings[name]))
    ]
