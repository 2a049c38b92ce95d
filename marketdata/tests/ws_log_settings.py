"""``ws_server_settings`` plus the token-redacting access-log configuration the project documents.

The ``LOGGING`` additions below are the lines ``marketapp/settings.py`` takes (see ``ws_logging``).
"""

from marketdata.tests.ws_server_settings import *  # noqa: F403
from marketdata.tests.ws_server_settings import LOGGING

LOGGING["filters"] = {"redact_token": {"()": "marketdata.ws_logging.RedactTokenFilter"}}
for _name in ("uvicorn.error", "uvicorn.access"):
    LOGGING["loggers"][_name] = {
        "handlers": ["console"],
        "level": "INFO",
        "propagate": False,
        "filters": ["redact_token"],
    }
