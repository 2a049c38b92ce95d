"""Fetching a URL given by a user without handing them the server's own network (SSRF).

``safe_download(url, ...)`` fetches http(s) only. Each hop's host is resolved once; unless the
host is in ``allowed_hosts`` every address it resolves to must be public (no loopback, private,
link-local, metadata, multicast, reserved or unspecified address, IPv4 and IPv6, IPv4-mapped and
NAT64/6to4 forms included), and the connection goes to the address that was checked (no DNS
rebinding between check and connect; TLS still verifies the certificate for the host name).
Redirects are followed by hand, each one checked like the first. The body is capped before and
after decompression (gzip/deflate are undone here, a bounded piece at a time), and
``lines(chunks, max_line)`` caps the line length.

Failures raise ``FetchError`` in generic words: never the body, never the address a redirect
pointed at, and the same words for a closed port, a timeout and a server that does not speak HTTP.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

CHUNK = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NOT_ALLOWED = "The URL's address is not allowed (only public http and https hosts are fetched)."
UNREACHABLE = "Could not download the file (no usable answer from the server)."

# Ranges that carry an IPv4 address inside an IPv6 one: NAT64 (RFC 6052, 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class FetchError(Exception):
    """The download was refused or failed; the message is safe to show to whoever asked for it."""


def address_is_public(address: str) -> bool:
    """Whether ``address`` (IPv4 or IPv6 text) is a globally routed unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return address_is_public(str(ip.ipv4_mapped))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not address_is_public(str(embedded)):
            return False
    return bool(
        ip.is_global
        and not (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )
    )


def host_is_allowed(host: str, port: int, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` (or ``host:port``) is one of the operator's entries (``host`` or ``host:port``)."""
    host = host.lower().strip("[]")
    for entry in allowed_hosts:
        entry = str(entry).strip().lower()
        if not entry:
            continue
        name, port_text = entry, ""
        if entry.startswith("["):  # [v6] or [v6]:port
            name, _, rest = entry[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif entry.count(":") == 1:
            name, port_text = entry.split(":")
        if name == host and (not port_text or port_text == str(port)):
            return True
    return False


def _resolve(host: str, port: int, allowed_hosts: Iterable[str]) -> list[str]:
    """The addresses to connect to, in order; refuses a host that is (or resolves to) a non-public address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError(UNREACHABLE) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FetchError(UNREACHABLE)
    if not host_is_allowed(host, port, allowed_hosts) and not all(address_is_public(a) for a in addresses):
        raise FetchError(NOT_ALLOWED)
    return addresses


def url_problem(url: str, allowed_hosts: Iterable[str] = ()) -> str:
    """Why ``url`` will be refused, found without a DNS lookup ('' when it may be fetched; the
    download still checks what the host resolves to)."""
    try:
        _scheme, host, port, _path = _split(url)
    except FetchError as exc:
        return str(exc)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return ""  # a name: resolved and checked when fetched
    if not host_is_allowed(host, port, allowed_hosts) and not address_is_public(host.strip("[]")):
        return NOT_ALLOWED
    return ""


def _split(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("The URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise FetchError(NOT_ALLOWED)
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise FetchError("The URL is not valid (a host and no user name are required).")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def _pool(scheme: str, host: str, address: str, port: int, timeout: tuple[float, float]):
    kwargs = {"timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1]), "retries": False, "maxsize": 1}
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **kwargs,
        )
    return urllib3.HTTPConnectionPool(address, port, **kwargs)


def _request(scheme: str, host: str, port: int, path: str, addresses: list[str], headers: dict, timeout):
    """GET ``path`` from the first of the checked ``addresses`` that answers (never a fresh lookup)."""
    for address in addresses:
        pool = _pool(scheme, host, address, port, timeout)
        try:
            response = pool.urlopen(
                "GET",
                path,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                assert_same_host=False,
            )
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError):
            pool.close()
            continue  # e.g. an IPv6 address without an IPv6 route: the next one may answer
        except (urllib3.exceptions.HTTPError, OSError):
            pool.close()
            raise FetchError(UNREACHABLE) from None
        return pool, response
    raise FetchError(UNREACHABLE)


def _open(url: str, *, allowed_hosts: tuple[str, ...], timeout: tuple[float, float], max_redirects: int):
    """Follow redirects by hand, checking every hop; returns (pool, response) of the final 2xx answer."""
    for _hop in range(max_redirects + 1):
        scheme, host, port, path = _split(url)
        default_port = 443 if scheme == "https" else 80
        host_header = (f"[{host}]" if ":" in host else host) + ("" if port == default_port else f":{port}")
        headers = {"Host": host_header, "Accept-Encoding": "gzip, deflate", "User-Agent": "marketapp-import"}
        pool, response = _request(scheme, host, port, path, _resolve(host, port, allowed_hosts), headers, timeout)
        if response.status in REDIRECTS and response.headers.get("Location"):
            location = response.headers["Location"]
            response.release_conn()
            pool.close()
            url = urljoin(url, location)
            continue
        if not 200 <= response.status < 300:
            status = response.status
            response.release_conn()
            pool.close()
            raise FetchError(f"Could not download the file: the server answered HTTP {status}.")
        return pool, response
    raise FetchError("Could not download the file: too many redirects.")


def _decoder(encoding: str):
    encoding = encoding.strip().lower()
    if encoding in {"", "identity"}:
        return None
    if encoding in {"gzip", "x-gzip"}:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise FetchError("Could not download the file: unsupported content encoding.")


@contextmanager
def safe_download(
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    max_bytes: int,
    timeout: tuple[float, float] = (10, 60),
    max_seconds: float = 1800,
    max_redirects: int = 5,
) -> Iterator[Iterator[bytes]]:
    """Yield the body of ``url`` as decoded byte chunks, at most ``max_bytes`` of them either side of
    decompression; everything wrong raises ``FetchError``."""
    too_large = f"The file is larger than the limit of {max_bytes} bytes."
    pool, response = _open(url, allowed_hosts=tuple(allowed_hosts), timeout=timeout, max_redirects=max_redirects)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > max_bytes:
            raise FetchError(too_large)
        decoder = _decoder(response.headers.get("Content-Encoding", ""))

        def chunks() -> Iterator[bytes]:
            deadline = time.monotonic() + max_seconds
            raw = decoded = 0
            try:
                for data in response.stream(CHUNK, decode_content=False):
                    raw += len(data)
                    if raw > max_bytes:
                        raise FetchError(too_large)
                    if time.monotonic() > deadline:
                        raise FetchError("Could not download the file: it took too long.")
                    pieces = [data] if decoder is None else _inflate(decoder, data)
                    for piece in pieces:
                        decoded += len(piece)
                        if decoded > max_bytes:
                            raise FetchError(too_large)
                        yield piece
                if decoder is not None and (tail := decoder.flush()):
                    decoded += len(tail)
                    if decoded > max_bytes:
                        raise FetchError(too_large)
                    yield tail
            except (urllib3.exceptions.HTTPError, OSError, zlib.error):
                raise FetchError("Could not download the file: the transfer broke off.") from None

        yield chunks()
    finally:
        response.release_conn()
        pool.close()


def _inflate(decoder, data: bytes) -> Iterator[bytes]:
    """Decompress ``data`` in pieces of at most ``CHUNK`` bytes: a bomb never sits in memory whole."""
    piece = decoder.decompress(data, CHUNK)
    yield piece
    while decoder.unconsumed_tail:
        yield decoder.decompress(decoder.unconsumed_tail, CHUNK)


def lines(chunks: Iterable[bytes], *, max_line: int) -> Iterator[bytes]:
    """Split byte chunks into lines (each with its ``\\n``); a line over ``max_line`` bytes raises."""
    too_long = f"The file has a line longer than {max_line} bytes; it is not an instrument list."
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            if end + 1 - start > max_line:
                raise FetchError(too_long)
            yield buffer[start : end + 1]
            start = end + 1
        buffer = buffer[start:]
        if len(buffer) > max_line:
            raise FetchError(too_long)
    if buffer:
        yield buffer
