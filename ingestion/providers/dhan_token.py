"""Dhan access tokens: when one expires, and its renewal through Dhan's REST API.

A Dhan access token is a JWT valid for 24 hours; its ``exp`` claim (epoch seconds) says when it
ends. It is read without verifying the signature: we only schedule the renewal with it, Dhan
verifies the token. ``GET {rest_url}/RenewToken`` with the headers ``access-token`` and
``dhanClientId`` answers a fresh token for another 24 hours::

    {"dhanClientId": "1000000001", "dhanClientName": "...", "accessToken": "eyJ...",
     "expiryTime": "2025-06-04T09:30:00.000"}

``expiryTime`` is IST wall-clock time without an offset; the new token's own ``exp`` is
preferred when present. Errors come back as a non-200 status with Dhan's error body
(``{"errorType", "errorCode", "errorMessage"}``). No Django here: the caller stores the token.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import requests

DEFAULT_REST_URL = "https://api.dhan.co/v2"
IST = timezone(timedelta(hours=5, minutes=30))


class DhanTokenError(Exception):
    """Dhan did not renew the token (refused, unreachable, or an answer without a token)."""


@dataclass(frozen=True)
class RenewedToken:
    """A token Dhan issued and when it ends (``None`` when neither the token nor the answer says)."""

    access_token: str
    expires_at: datetime | None


def token_expiry(token: str) -> datetime | None:
    """The ``exp`` of a JWT as an aware UTC datetime; ``None`` when it is not a JWT with one."""
    parts = str(token or "").strip().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload["exp"] if isinstance(payload, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return datetime.fromtimestamp(exp, UTC)
    except (binascii.Error, ValueError, KeyError, OverflowError, OSError):
        return None


def _expiry_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=IST)).astimezone(UTC)


def renew_token(*, access_token: str, client_id: str, rest_url: str = "", timeout_s: float = 10.0) -> RenewedToken:
    """Ask Dhan for a fresh token in place of ``access_token``; raises ``DhanTokenError``."""
    url = f"{(rest_url or DEFAULT_REST_URL).rstrip('/')}/RenewToken"
    headers = {"access-token": access_token, "dhanClientId": client_id, "Accept": "application/json"}
    try:
        response = requests.get(url, headers=headers, timeout=timeout_s, allow_redirects=False)
    except requests.RequestException as exc:
        raise DhanTokenError(f"RenewToken unreachable: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        detail = ""
        if isinstance(body, dict):
            detail = " ".join(str(body.get(k) or "") for k in ("errorCode", "errorMessage")).strip()
        raise DhanTokenError(f"RenewToken answered HTTP {response.status_code}{': ' + detail if detail else ''}")
    if not isinstance(body, dict):
        raise DhanTokenError("RenewToken answered a body that is not a JSON object")
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    token = data.get("accessToken")
    if not isinstance(token, str) or not token.strip():
        raise DhanTokenError("RenewToken answered no accessToken")
    token = token.strip()
    return RenewedToken(token, token_expiry(token) or _expiry_time(data.get("expiryTime")))
