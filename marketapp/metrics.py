"""``GET /metrics``: the Prometheus exposition of the live pipeline's figures.

Open to the client addresses in ``METRICS_ALLOWED_IPS`` (IPs or CIDRs; the address is the
socket peer, or behind a proxy in ``TRUSTED_PROXIES`` the right-most untrusted
``X-Forwarded-For`` hop, as everywhere else) or to a request carrying
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time); anything else is a 403
in the project's error format.

A scrape collects at that moment (``MarketCollector``): this process's figures, read live
from the running objects (``ingestion.metrics.process_snapshot``), and in the stack mode the
snapshots every other process published to Redis, each series labelled ``role`` and
``process``; then what belongs to the whole deployment: the persist stream's backlog and lag
and the provider stream leases. ``METRICS`` lists every family exported (the README's
"Metrics" section and ``docs/grafana-dashboard.json`` use these names).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import re_path
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.api.client_ip import client_address
from core.api.errors import json_error
from ingestion import metrics as figures
from ingestion.latency import LATENCY_BUCKETS_S

logger = logging.getLogger(__name__)

PROCESS_LABELS = ("role", "process")

# name -> (type, help, labels besides role/process; None: a deployment-wide family without them)
METRICS: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "marketapp_feed_ticks_total": ("counter", "Ticks a provider's feed client produced.", ("provider",)),
    "marketapp_feed_refused_total": (
        "counter",
        "Frames a feed client refused or flagged, by reason (malformed, unknown_instrument; "
        "Dhan also no_price and length_mismatch, which is decoded anyway).",
        ("provider", "reason"),
    ),
    "marketapp_feed_reconnects_total": ("counter", "Reconnections of a feed client.", ("provider",)),
    "marketapp_feed_up": ("gauge", "1 while a feed client is connected and healthy.", ("provider",)),
    "marketapp_engine_ticks_total": ("counter", "Ticks the engine applied to quotes and bars.", ()),
    "marketapp_engine_ticks_refused_total": (
        "counter",
        "Ticks the engine refused, by reason (unknown_instrument, other_provider, bad_price).",
        ("reason",),
    ),
    "marketapp_engine_batches_total": ("counter", "Tick batches the engine processed.", ()),
    "marketapp_engine_bars_closed_total": ("counter", "1-minute bars the engine closed.", ()),
    "marketapp_engine_store_errors_total": ("counter", "Tick-store writes that failed and were retried.", ()),
    "marketapp_engine_batch_seconds": (
        "histogram",
        "Time to process one tick batch: normalize, store write and publish.",
        (),
    ),
    "marketapp_engine_publish_seconds": ("histogram", "Time to publish one batch's updates to the channel layer.", ()),
    "marketapp_ws_connections": ("gauge", "Open /ws connections.", ()),
    "marketapp_ws_subscriptions": ("gauge", "Channels subscribed, summed over the open connections.", ()),
    "marketapp_ws_frames_sent_total": ("counter", "Frames sent to /ws clients (replies and updates).", ()),
    "marketapp_ws_updates_conflated_total": (
        "counter",
        "Live updates replaced by a newer one before a slow client took them.",
        (),
    ),
    "marketapp_ws_updates_dropped_total": (
        "counter",
        "Live updates dropped because a client's outbox was full of channels.",
        (),
    ),
    "marketapp_ws_stuck_disconnects_total": ("counter", "Clients closed with 4408 for making no progress.", ()),
    "marketapp_hub_groups": ("gauge", "Channel-layer groups the process's hubs follow.", ()),
    "marketapp_hub_messages_total": ("counter", "Messages the hubs received from the channel layer.", ()),
    "marketapp_saver_bars_total": ("counter", "Closed bars the saver committed and acknowledged.", ()),
    "marketapp_saver_bars_claimed_total": ("counter", "Bars taken over from a saver that died holding them.", ()),
    "marketapp_saver_bars_dropped_total": ("counter", "Bars dropped because their instrument was deleted.", ()),
    "marketapp_process_snapshot_age_seconds": (
        "gauge",
        "Age of the figures exported for a process (0 for the process answering the scrape).",
        (),
    ),
    "marketapp_persist_backlog_bars": ("gauge", "Closed bars waiting in the persist stream.", None),
    "marketapp_persist_lag_seconds": ("gauge", "How long the oldest unsaved bar has waited (0: none).", None),
    "marketapp_stream_lease": ("gauge", "1 per provider stream lease, labelled by its holder.", ("provider", "holder")),
    "marketapp_metrics_source_up": (
        "gauge",
        "1 when a source of this scrape could be read (redis: other processes and leases; persist).",
        ("source",),
    ),
}


def exported_sample_names() -> set[str]:
    """Every sample name a scrape can carry (histograms as _bucket, _sum and _count)."""
    names = set()
    for name, (kind, _help, _labels) in METRICS.items():
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


def _family(name: str) -> Metric:
    kind, doc, labels = METRICS[name]
    labels = (*(labels or ()), *(PROCESS_LABELS if labels is not None else ()))
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    return HistogramMetricFamily(name, doc, labels=labels)


def _histogram(family: HistogramMetricFamily, labels: list[str], data: dict[str, Any]) -> None:
    cumulative, buckets = 0, []
    for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), data["counts"], strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    family.add_metric(labels, buckets, data["sum"])


def _add_process(families: dict[str, Metric], snapshot: dict[str, Any], age_s: float) -> None:
    """One process's snapshot into the families, labelled with its role and process."""
    who = [snapshot["role"], snapshot["process"]]
    families["marketapp_process_snapshot_age_seconds"].add_metric(who, max(0.0, age_s))
    for code, feed in sorted(snapshot.get("feeds", {}).items()):
        families["marketapp_feed_ticks_total"].add_metric([code, *who], feed["ticks"])
        families["marketapp_feed_reconnects_total"].add_metric([code, *who], feed["reconnects"])
        families["marketapp_feed_up"].add_metric([code, *who], feed["up"])
        for reason, count in sorted(feed["refused"].items()):
            families["marketapp_feed_refused_total"].add_metric([code, reason, *who], count)
    engine = snapshot.get("engine")
    if engine:
        families["marketapp_engine_ticks_total"].add_metric(who, engine["ticks"])
        families["marketapp_engine_batches_total"].add_metric(who, engine["batches"])
        families["marketapp_engine_bars_closed_total"].add_metric(who, engine["bars_closed"])
        families["marketapp_engine_store_errors_total"].add_metric(who, engine["store_errors"])
        for reason, count in sorted(engine["refused"].items()):
            families["marketapp_engine_ticks_refused_total"].add_metric([reason, *who], count)
        _histogram(families["marketapp_engine_batch_seconds"], who, engine["batch_seconds"])
        _histogram(families["marketapp_engine_publish_seconds"], who, engine["publish_seconds"])
    ws = snapshot.get("ws")
    if ws:
        for name, key in (
            ("marketapp_ws_connections", "connections"),
            ("marketapp_ws_subscriptions", "subscriptions"),
            ("marketapp_ws_frames_sent_total", "frames_sent"),
            ("marketapp_ws_updates_conflated_total", "conflated"),
            ("marketapp_ws_updates_dropped_total", "dropped"),
            ("marketapp_ws_stuck_disconnects_total", "stuck_disconnects"),
            ("marketapp_hub_groups", "groups"),
            ("marketapp_hub_messages_total", "messages"),
        ):
            families[name].add_metric(who, ws[key])
    saver = snapshot.get("saver")
    if saver:
        families["marketapp_saver_bars_total"].add_metric(who, saver["saved"])
        families["marketapp_saver_bars_claimed_total"].add_metric(who, saver["claimed"])
        families["marketapp_saver_bars_dropped_total"].add_metric(who, saver["dropped"])


def _redis_client() -> redis.Redis:
    timeout = figures.REDIS_TIMEOUT_S
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


class MarketCollector(Collector):
    """Reads every figure at scrape time; a source that cannot be read is reported, not fatal."""

    def collect(self) -> Iterator[Metric]:
        families = {name: _family(name) for name in METRICS}
        own = figures.process_snapshot()
        _add_process(families, own, 0.0)
        sources = {"persist": 1}
        try:
            persist = figures.persist_figures()
        except Exception as exc:
            logger.warning("metrics: the persist stream could not be read (%s)", exc)
            sources["persist"] = 0
        else:
            families["marketapp_persist_backlog_bars"].add_metric([], persist["pending"])
            families["marketapp_persist_lag_seconds"].add_metric([], persist["oldest_age_s"])
        if settings.REDIS_URL:
            sources["redis"] = 1
            client = _redis_client()
            try:
                for snapshot in figures.read_snapshots(client, exclude=own["process"]):
                    try:
                        _add_process(families, snapshot, own["at"] - snapshot.get("at", own["at"]))
                    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # another version's shape
                        logger.warning("metrics: a snapshot of %s was skipped (%r)", snapshot.get("process"), exc)
                for code, holder in sorted(figures.stream_leases(client).items()):
                    families["marketapp_stream_lease"].add_metric([code, holder], 1)
            except redis.RedisError as exc:
                logger.warning("metrics: Redis could not be read (%s)", exc)
                sources["redis"] = 0
            finally:
                client.close()
        for source, up in sorted(sources.items()):
            families["marketapp_metrics_source_up"].add_metric([source], up)
        yield from families.values()


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(MarketCollector())


# --- access ----------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec if part.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc}") from exc


def _allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    spec = getattr(settings, "METRICS_ALLOWED_IPS", ()) or ()
    return _networks(tuple(spec.split(",") if isinstance(spec, str) else spec))


def _bearer_ok(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "") or ""
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode(), token.encode())


def metrics_access_allowed(request: HttpRequest) -> bool:
    """The client address is in ``METRICS_ALLOWED_IPS``, or the request bears ``METRICS_TOKEN``."""
    if _bearer_ok(request):
        return True
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(address.version == net.version and address in net for net in _allowed_networks())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The exposition in Prometheus' text format (GET or HEAD)."""
    if request.method not in ("GET", "HEAD"):
        return json_error(request, 405, f'Method "{request.method}" not allowed.')
    if not metrics_access_allowed(request):
        return json_error(
            request, 403, "Metrics are open to the addresses in METRICS_ALLOWED_IPS or a METRICS_TOKEN bearer."
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


urlpatterns = [re_path(r"^metrics/?$", metrics_view, name="metrics")]
