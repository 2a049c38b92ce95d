"""The client's address for rate limits: ``X-Forwarded-For`` is trusted only from configured proxies.

``TRUSTED_PROXIES`` (comma-separated IPs or CIDR networks of the reverse proxies in front of
the app; default none) decides. When the socket peer (``REMOTE_ADDR``) is not one of them the
header is ignored: anyone can send it. When it is, the header is read from the right (each
proxy appends the address it received the request from) and the first address that is not a
trusted proxy is the client; the left part, which the client wrote itself, is never read. If
every hop is trusted the left-most one is used; an unparsable entry stops the walk at the last
trusted hop.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def trusted_proxies() -> tuple[Network, ...]:
    """The ``TRUSTED_PROXIES`` networks (a comma-separated string or a list of them)."""
    spec = getattr(settings, "TRUSTED_PROXIES", "") or ""
    if not isinstance(spec, str):
        spec = ",".join(spec)
    return _networks(spec)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def _trusted(address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(request) -> str:
    """The address rate limits key on: ``REMOTE_ADDR``, or the right-most untrusted forwarded hop behind a proxy."""
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR", "") or ""
    networks = trusted_proxies()
    peer = _parse(remote)
    if not networks or peer is None or not _trusted(peer, networks):
        return str(peer) if peer is not None else remote
    client = peer
    for hop in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        if not hop.strip():
            continue
        address = _parse(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)
