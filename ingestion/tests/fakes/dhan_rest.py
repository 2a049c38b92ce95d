"""A local fake of Dhan's REST token renewal, ``GET /v2/RenewToken``, speaking Dhan's JSON.

``mode`` decides the answer: ``ok`` (a fresh JWT valid 24 h, ``expiryTime`` in IST),
``unauthorized`` (401 with Dhan's error body), ``malformed`` (200 with a body that is not
JSON) or ``no_token`` (200 JSON without ``accessToken``). ``requests`` records the headers of
every call; ``issued`` the tokens handed out.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IST = timezone(timedelta(hours=5, minutes=30))


def make_jwt(*, exp: float, client_id: str = "1000000001") -> str:
    """An unsigned-looking JWT shaped like Dhan's (``iss``, ``exp``, ``dhanClientId``)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": "dhan", "partnerId": "", "exp": int(exp), "tokenConsumerType": "SELF", "dhanClientId": client_id}
    return f"{part({'typ': 'JWT', 'alg': 'HS512'})}.{part(claims)}.c2lnbmF0dXJl"


class FakeDhanRest:
    """``with FakeDhanRest() as fake: fake.url`` is the v2 base URL (``http://127.0.0.1:port/v2``)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, str]] = []
        self.issued: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeDhanRest:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if self.path != "/v2/RenewToken":
                    return self._answer(404, {"errorType": "Invalid", "errorCode": "DH-900", "errorMessage": "no"})
                if fake.mode == "unauthorized":
                    body = {"errorType": "Invalid_Authentication", "errorCode": "DH-901", "errorMessage": "expired"}
                    return self._answer(401, body)
                if fake.mode == "malformed":
                    return self._answer(200, b"<html>maintenance</html>")
                if fake.mode == "no_token":
                    return self._answer(200, {"dhanClientId": self.headers.get("dhanClientId")})
                expires = time.time() + 24 * 3600
                token = make_jwt(exp=expires, client_id=self.headers.get("dhanClientId") or "")
                fake.issued.append(token)
                expiry_time = datetime.fromtimestamp(expires, UTC).astimezone(IST).replace(tzinfo=None)
                body = {
                    "dhanClientId": self.headers.get("dhanClientId"),
                    "dhanClientName": "TEST USER",
                    "accessToken": token,
                    "expiryTime": expiry_time.isoformat(timespec="milliseconds"),
                }
                return self._answer(200, body)

            def _answer(self, status: int, body: dict | bytes) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v2"
