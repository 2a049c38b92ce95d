"""The JSON log format (``LOG_FORMAT=json``): one JSON object per line, for log collectors.

Every line has ``timestamp`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; inside an
HTTP request or a WebSocket connection also ``request_id`` (``core.request_id``); with an
exception ``exc_info`` (the formatted traceback); and any ``extra`` fields the caller passed.
The filters of ``LOGGING`` (the ``token=`` redaction on the server's loggers) run before the
formatter, so they hold in both formats.
"""

from __future__ import annotations

import logging
import logging.config

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from core.request_id import request_id_get

# Record attributes that are not worth a field: uvicorn's colored copy of its format string,
# and Django's request object (its repr carries the query string, where tokens may be).
_LEFT_OUT = ("taskName", "color_message", "request")


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with the project's field names and the request id."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *_LEFT_OUT],
            timestamp=True,
            **kwargs,
        )

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        fields: dict = {}
        super().add_fields(fields, record, message_dict)
        log_data["timestamp"] = fields.pop("timestamp")  # first, as a reader scans a line
        log_data.update(fields)
        if request_id := request_id_get():
            log_data["request_id"] = request_id


def configure(config: dict) -> None:
    """``LOGGING_CONFIG`` in JSON mode: ``dictConfig``, and Python's warnings go through logging
    (``py.warnings``) instead of onto stderr as bare text."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
