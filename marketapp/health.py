"""``GET /health/``: is the database, the cache and (in the stack mode) Redis reachable, and
is the saver keeping up?

Open to anyone (load balancers, uptime checks), answers 200 when every check passes and 503
otherwise. Each check reports ``ok``, ``latency_ms`` and, when it failed, ``error`` (the
exception's type; its message too when DEBUG, and always in the log). The Redis
check uses a 1-second socket timeout so an unreachable server never hangs the probe.
``persistence`` adds ``pending`` (bars not yet committed to the database) and
``oldest_age_s`` (how long the oldest of them has waited); it fails once that age passes
``PERSIST_LAG_ALERT_S``. ``providers`` fails when a running feed is degraded (every frame
refused for ``FEED_REFUSED_UNHEALTHY_S``) or a Dhan access token has expired or its last
renewal failed; it lists each active provider's stream state and token expiry.

The module carries its own ``urlpatterns`` so the root URLconf includes it with one line; the
route answers with and without the trailing slash.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.urls import re_path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

REDIS_TIMEOUT_S = 1.0
logger = logging.getLogger(__name__)


def _timed(check: Callable[[], None]) -> dict[str, Any]:
    """Run one check; never raises, so one broken dependency cannot hide the others."""
    began = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure of a dependency is a finding, not a crash
        logger.warning("Health check %s failed: %r", check.__name__, exc)
        # The endpoint is public: messages can name hosts and users, so only DEBUG shows them.
        error = f"{type(exc).__name__}: {exc}" if settings.DEBUG else type(exc).__name__
        result: dict[str, Any] = {"ok": False, "error": error}
    else:
        result = {"ok": True}
    result["latency_ms"] = round((time.perf_counter() - began) * 1000, 3)
    return result


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    cache.set(key, token, timeout=10)
    try:
        if cache.get(key) != token:
            raise RuntimeError("The value read back differs from the value written.")
    finally:
        cache.delete(key)


def _check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


def _check_persistence() -> dict[str, Any]:
    """The saver's lag; never raises (an unreadable store is a failed check)."""
    from ingestion.saver import persist_lag_status

    lag: dict[str, Any] = {}

    def persistence() -> None:
        lag.update(persist_lag_status(timeout_s=REDIS_TIMEOUT_S))
        if not lag["ok"]:
            raise PersistenceLagging(f"the oldest unsaved bar waited {lag['oldest_age_s']} s")

    result = _timed(persistence)
    return {"pending": lag.get("pending"), "oldest_age_s": lag.get("oldest_age_s"), **result}


class PersistenceLagging(Exception):
    """Bars wait for the saver longer than ``PERSIST_LAG_ALERT_S``."""


class ProviderUnhealthy(Exception):
    """A running feed is degraded, or a Dhan access token expired or could not be renewed."""


def _check_providers() -> dict[str, Any]:
    """Each active provider's feed and (Dhan) token; never raises. Codes and states only."""
    from ingestion import streams
    from ingestion.models import Provider

    found: dict[str, dict[str, Any]] = {}

    def providers() -> None:
        problems = []
        active = Provider.objects.filter(is_active=True).order_by("code")
        for code, status in streams.stream_statuses(providers=active).items():
            token = status["token"]
            entry = {"state": status["state"], "degraded": bool(status["degraded_reason"])}
            if token is not None:
                entry.update(token_expires_at=token["expires_at"], token_renewal=token["renewal"])
                if token["expired"]:
                    problems.append(f"{code}: access token expired")
                elif token["renewal"] == "failed":
                    problems.append(f"{code}: access token renewal failed")
            if status["degraded_reason"]:
                problems.append(f"{code}: {status['degraded_reason']}")
            found[code] = entry
        if problems:
            raise ProviderUnhealthy("; ".join(problems))

    result = _timed(providers)
    return {"providers": found, **result}


def health_report() -> dict[str, Any]:
    """Run every check and summarize: ``status`` is ``ok`` only when all of them passed."""
    report: dict[str, Any] = {"database": _timed(_check_database), "cache": _timed(_check_cache)}
    if settings.REDIS_URL:
        report["redis"] = _timed(_check_redis)
    report["persistence"] = _check_persistence()
    report["providers"] = _check_providers()
    healthy = all(check["ok"] for check in report.values())
    return {"status": "ok" if healthy else "degraded", **report}


class HealthCheckSerializer(serializers.Serializer):
    """One dependency's result (schema only)."""

    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    error = serializers.CharField(required=False, help_text="Present when the check failed.")


class PersistenceCheckSerializer(HealthCheckSerializer):
    """The saver's lag (schema only); counts are null when the tick store could not be read."""

    pending = serializers.IntegerField(allow_null=True, help_text="Bars not yet committed to the database.")
    oldest_age_s = serializers.FloatField(
        allow_null=True, help_text="Seconds the oldest unsaved bar has waited; null when none waits."
    )


class ProvidersCheckSerializer(HealthCheckSerializer):
    """Active providers by code (schema only): stream ``state``, ``degraded``, and for Dhan
    ``token_expires_at`` and ``token_renewal`` (``ok``, ``failed`` or null)."""

    providers = serializers.DictField(child=serializers.DictField())


class HealthReportSerializer(serializers.Serializer):
    """The health document (schema only)."""

    status = serializers.ChoiceField(choices=["ok", "degraded"])
    database = HealthCheckSerializer()
    cache = HealthCheckSerializer()
    redis = HealthCheckSerializer(required=False, help_text="Only when REDIS_URL is set.")
    persistence = PersistenceCheckSerializer(help_text="503 once the oldest unsaved bar waited past the alert age.")
    providers = ProvidersCheckSerializer(
        help_text="503 when a feed is degraded or a Dhan token expired or failed to renew."
    )


class HealthApi(APIView):
    """Liveness and dependency check; no authentication, so a stale token cannot fail it."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        operation_id="health",
        summary="Service health",
        responses={200: HealthReportSerializer, 503: HealthReportSerializer},
        auth=[],
    )
    def get(self, request) -> Response:
        report = health_report()
        return Response(report, status=200 if report["status"] == "ok" else 503)


urlpatterns = [re_path(r"^health/?$", HealthApi.as_view(), name="health")]
