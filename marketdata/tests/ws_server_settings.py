"""Settings for the daphne/uvicorn processes the ``/ws`` server tests start.

The project's settings, plus what the tests pass in the environment: a channel-layer prefix
of their own (Redis pub/sub ignores database numbers) and short time limits.
"""

import os

from marketapp.settings import *  # noqa: F403
from marketapp.settings import CHANNEL_LAYERS

CHANNEL_LAYERS["default"].setdefault("CONFIG", {})["prefix"] = os.environ["WS_TEST_LAYER_PREFIX"]
WS_STUCK_TIMEOUT_S = float(os.environ.get("WS_STUCK_TIMEOUT_S", "2"))
WS_SYMBOL_CACHE_TTL_S = 1.0
WS_TRANSPORT_BUFFER_BYTES = int(os.environ.get("WS_TRANSPORT_BUFFER_BYTES", 256 * 1024))
WS_AUTH_TIMEOUT_S = 1.0
