"""A logging filter that keeps JWTs passed as ``?token=`` out of server logs.

uvicorn logs a WebSocket handshake's path WITH its query string on ``uvicorn.error`` (and
HTTP requests on ``uvicorn.access``); old clients still send ``/ws?token=<JWT>``. Put this
filter on those loggers (settings ``LOGGING``): every ``token=...`` (also ``access_token=``,
``refresh_token=``) in the message and its arguments becomes ``token=[redacted]``.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(token=)[^&\s\"';#]+", re.IGNORECASE)
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    return _TOKEN.sub(REDACTED, text) if "token=" in text.lower() else text


class RedactTokenFilter(logging.Filter):
    """Rewrites ``token=<value>`` in a record's message and string arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True
