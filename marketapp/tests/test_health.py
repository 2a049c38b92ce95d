"""``GET /health/``: real database, cache and Redis; failures use servers that are really down."""

from __future__ import annotations

import socket
import time

import orjson
import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import override_settings

from marketdata.live import store as tickstore
from marketdata.live.store import StoreBatch
from marketdata.live.store.memory import MemoryTickStore
from marketdata.live.store.redis import PERSIST
from marketdata.live.types import MINUTE_MS, Bar

pytestmark = pytest.mark.django_db

DOWN_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_all_checks_pass(api_client, persist_stream):
    assert settings.REDIS_URL, "the suite runs in the stack mode"
    response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    for name in ("database", "cache", "redis", "persistence"):
        assert body[name]["ok"] is True
        assert isinstance(body[name]["latency_ms"], float)
        assert body[name]["latency_ms"] >= 0
        assert "error" not in body[name]


@pytest.mark.parametrize("path", ["/health", "/health/"])
def test_open_to_anyone_even_with_a_bad_token(api_client, path):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert api_client.get(path).status_code == 200


def test_unreachable_redis_is_503_and_fast(api_client):
    began = time.monotonic()
    with override_settings(REDIS_URL=DOWN_REDIS):
        response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["redis"]["ok"] is False
    assert body["redis"]["error"] == "ConnectionError"  # no host details on a public endpoint
    assert body["database"]["ok"] is True
    assert body["cache"]["ok"] is True
    assert time.monotonic() - began < 5


def test_unreachable_cache_is_503(api_client):
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DOWN_REDIS}}
    with override_settings(CACHES=caches):
        response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 503
    assert body["cache"]["ok"] is False
    assert body["cache"]["error"]
    assert body["redis"]["ok"] is True


def test_without_redis_url_there_is_no_redis_check(api_client):
    with override_settings(REDIS_URL=""):
        body = api_client.get("/health/").json()
    assert body["status"] == "ok"
    assert "redis" not in body


# --- persistence lag -----------------------------------------------------------------------------


@pytest.fixture
def persist_stream():
    """The real persist stream on the test Redis database, empty before and after."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(PERSIST)
    yield client
    client.delete(PERSIST)
    client.close()


def _queue_bars(client: redis.Redis, count: int, *, waited_s: float) -> None:
    """``count`` closed bars handed to the saver ``waited_s`` ago, as the engine queues them.

    Redis stamps an entry id with the time it was added; an explicit id dates the entries back.
    """
    seconds, micros = client.time()
    added_ms = seconds * 1000 + micros // 1000 - int(waited_s * 1000)
    for n in range(count):
        bar = Bar(n + 1, added_ms - added_ms % MINUTE_MS, 1.0, 2.0, 0.5, 1.5, 10, 2, "1m", "SIM")
        client.xadd(PERSIST, {"bar": orjson.dumps(bar.as_dict())}, id=f"{added_ms}-{n + 1}")


def test_persistence_reports_an_empty_backlog(api_client, persist_stream):
    body = api_client.get("/health/").json()
    assert body["status"] == "ok"
    assert body["persistence"]["pending"] == 0
    assert body["persistence"]["oldest_age_s"] is None
    assert body["persistence"]["ok"] is True


def test_a_backlog_younger_than_the_alert_age_is_healthy(api_client, persist_stream):
    _queue_bars(persist_stream, 3, waited_s=30)
    response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["persistence"]["pending"] == 3
    assert 30 <= body["persistence"]["oldest_age_s"] < 35
    assert body["persistence"]["ok"] is True


def test_a_bar_waiting_past_the_alert_age_is_503(api_client, persist_stream):
    _queue_bars(persist_stream, 2, waited_s=300)
    response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    persistence = body["persistence"]
    assert persistence["ok"] is False and persistence["error"] == "PersistenceLagging"
    assert persistence["pending"] == 2 and 300 <= persistence["oldest_age_s"] < 305
    assert all(body[name]["ok"] for name in ("database", "cache", "redis"))
    # The threshold is a setting: the same backlog is fine under a laxer one.
    with override_settings(PERSIST_LAG_ALERT_S=600):
        assert api_client.get("/health/").status_code == 200


def test_unreachable_redis_fails_persistence_without_numbers(api_client):
    with override_settings(REDIS_URL=DOWN_REDIS):
        body = api_client.get("/health/").json()
    assert body["persistence"] == {
        "pending": None,
        "oldest_age_s": None,
        "ok": False,
        "error": "ConnectionError",
        "latency_ms": body["persistence"]["latency_ms"],
    }


def test_a_redis_that_never_answers_cannot_hang_the_probe(api_client):
    # A socket that accepts connections (the kernel completes the handshake) and never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        began = time.monotonic()
        with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"):
            response = api_client.get("/health/")
        elapsed = time.monotonic() - began
    body = response.json()
    assert response.status_code == 503
    assert body["redis"]["error"] == body["persistence"]["error"] == "TimeoutError"
    assert elapsed < 5


def test_embedded_mode_reads_the_in_process_store(api_client, monkeypatch):
    store = MemoryTickStore()
    monkeypatch.setattr(tickstore, "_memory_store", store)  # the process-wide store, fresh for this test
    with override_settings(REDIS_URL=""):
        assert api_client.get("/health/").json()["persistence"]["pending"] == 0
        now_ms = int(time.time() * 1000)
        minute = now_ms - now_ms % MINUTE_MS
        # Bars whose minutes ended 5 and 1 minute(s) ago, still unsaved.
        old = [Bar(1, minute - 6 * MINUTE_MS, 1, 1, 1, 1), Bar(2, minute - 2 * MINUTE_MS, 1, 1, 1, 1)]
        async_to_sync(store.write)(StoreBatch(closed_bars=old))
        response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 503
    assert body["persistence"]["pending"] == 2
    assert 300 <= body["persistence"]["oldest_age_s"] < 365
