"""A local stand-in for Google's OAuth token and userinfo endpoints, served over real HTTP.

It speaks the documented wire format: ``POST /token`` takes the form-encoded authorization-code
grant and answers ``{access_token, expires_in, id_token, scope, token_type}``; ``GET /userinfo``
takes ``Authorization: Bearer <access_token>`` and answers the v2 userinfo document. Every
request is recorded so tests can check what allauth sent.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt

ISSUER = "https://accounts.google.com"


@dataclass
class GoogleIdentity:
    """The Google account the stub signs in."""

    sub: str = "109876543210987654321"
    email: str = "ada.lovelace@example.com"
    email_verified: bool = True
    given_name: str = "Ada"
    family_name: str = "Lovelace"
    picture: str = "https://lh3.googleusercontent.com/a/ada-portrait"


@dataclass
class GoogleStub:
    """Token and userinfo endpoints for one expected authorization code."""

    client_id: str
    identity: GoogleIdentity = field(default_factory=GoogleIdentity)
    code: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    access_token: str = field(default_factory=lambda: "ya29." + secrets.token_urlsafe(24))
    token_requests: list[dict[str, str]] = field(default_factory=list)
    userinfo_requests: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def id_token(self) -> str:
        now = int(time.time())
        identity = self.identity
        claims = {
            "iss": ISSUER,
            "aud": self.client_id,
            "azp": self.client_id,
            "sub": identity.sub,
            "email": identity.email,
            "email_verified": identity.email_verified,
            "given_name": identity.given_name,
            "family_name": identity.family_name,
            "name": f"{identity.given_name} {identity.family_name}",
            "iat": now,
            "exp": now + 3600,
            "jti": secrets.token_hex(8),
        }
        # No "picture" claim, so allauth (FETCH_USERINFO) has to ask the userinfo endpoint.
        # allauth does not check the signature of an id_token it fetched itself from the token
        # endpoint (OpenID Connect Core 3.1.3.7), so any key will do here.
        return jwt.encode(claims, secrets.token_hex(32), algorithm="HS256", headers={"kid": "stub"})

    def token_response(self, form: dict[str, str]) -> tuple[int, dict]:
        self.token_requests.append(form)
        if form.get("grant_type") != "authorization_code" or form.get("code") != self.code:
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        return 200, {
            "access_token": self.access_token,
            "expires_in": 3599,
            "id_token": self.id_token(),
            "scope": "openid https://www.googleapis.com/auth/userinfo.email "
            "https://www.googleapis.com/auth/userinfo.profile",
            "token_type": "Bearer",
        }

    def userinfo_response(self, headers: dict[str, str]) -> tuple[int, dict]:
        self.userinfo_requests.append(headers)
        if headers.get("authorization") != f"Bearer {self.access_token}":
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        identity = self.identity
        return 200, {
            "id": identity.sub,
            "email": identity.email,
            "verified_email": identity.email_verified,
            "name": f"{identity.given_name} {identity.family_name}",
            "given_name": identity.given_name,
            "family_name": identity.family_name,
            "picture": identity.picture,
        }


def _handler_for(stub: GoogleStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path != "/token":
                self._send(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            self._send(*stub.token_response(form))

        def do_GET(self) -> None:
            if self.path != "/userinfo":
                self._send(404, {"error": "not_found"})
                return
            self._send(*stub.userinfo_response({k.lower(): v for k, v in self.headers.items()}))

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler


class GoogleStubServer:
    """Runs a ``GoogleStub`` on 127.0.0.1 in a background thread (context manager)."""

    def __init__(self, stub: GoogleStub) -> None:
        self.stub = stub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(stub))
        host, port = self._server.server_address[:2]
        stub.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GoogleStub:
        self._thread.start()
        return self.stub

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
