"""Drive an ASGI application in-process with one HTTP request, as a server would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass
class AsgiAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


async def asgi_request(
    app: Any,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    scheme: str = "http",
) -> AsgiAnswer:
    """One request through ``app``; headers are answered lower-cased and sorted (order is not part of HTTP)."""
    sent = [(b"host", b"testserver")] + [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": sent,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    done = asyncio.Event()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    start: dict = {}
    body = bytearray()

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await asyncio.wait_for(app(scope, receive, send), 30)
    answer_headers = sorted((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start.get("headers", ()))
    return AsgiAnswer(status=start["status"], headers=answer_headers, body=bytes(body))
