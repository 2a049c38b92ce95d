"""``GET /metrics``: who may read it, and figures that move with the real pipeline.

The pipeline is real: the simulator's feed client, the engine writing the Redis tick store
and publishing on the Redis pub/sub channel layer, ``/ws`` clients through the Channels
stack, the saver committing to PostgreSQL, and for the stack mode a separate
``manage.py ingest`` process whose snapshot the web side exports.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from exchanges.tests.factories import ExchangeFactory
from ingestion import metrics as figures
from ingestion.runtime import MarketRuntime
from ingestion.streams.keys import lease_key
from ingestion.tests.support import ROOT, redis_db, sim_exchange, start_ingest
from instruments.tests.factories import InstrumentFactory
from marketapp.metrics import METRICS, exported_sample_names
from marketdata.consumers import MarketDataConsumer
from marketdata.live.hub import close_hub
from marketdata.live.protocol import ChannelLayerPublisher, quote_group
from marketdata.tests.ws_support import access_token, redis_layer_settings, redis_url

__all__ = ["redis_db"]  # the fixture, from ingestion's support module


def scrape(client: Client | None = None, **extra) -> dict[tuple[str, frozenset], float]:
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and wanted <= lab)


def label_values(samples: dict, name: str, label: str) -> set[str]:
    return {dict(lab).get(label) for (n, lab) in samples if n == name}


@pytest.fixture(autouse=True)
def _no_publisher_left():
    yield
    figures.stop_snapshot_publisher()


# --- access ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_loopback_may_read_it_by_default(redis_db):
    samples = scrape()
    assert value(samples, "marketapp_metrics_source_up", source="redis") == 1
    assert scrape(REMOTE_ADDR="::1")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
def test_another_address_gets_403_in_the_error_format(path):
    response = Client().get(path, REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 403
    body = response.json()
    assert body["status_code"] == 403 and "METRICS_ALLOWED_IPS" in body["detail"]


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_pass(settings):
    settings.TRUSTED_PROXIES = []
    response = Client().get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403
    # Behind a trusted proxy only the right-most untrusted hop counts, not what the client wrote.
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    response = Client().get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403
    response = Client().get("/metrics", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 198.51.100.7")
    assert response.status_code == 403


@pytest.mark.django_db
def test_allowed_networks_are_cidrs_and_a_trusted_proxy_forwards_the_client(settings, redis_db):
    settings.METRICS_ALLOWED_IPS = ["198.51.100.0/24", "2001:db8::/32"]
    assert scrape(REMOTE_ADDR="198.51.100.7")
    assert scrape(REMOTE_ADDR="2001:db8::5")
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # loopback no longer listed
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    assert scrape(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9")


@pytest.mark.django_db
def test_the_metrics_token_opens_it_from_anywhere(settings, redis_db):
    outside = {"REMOTE_ADDR": "203.0.113.5"}
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ", **outside).status_code == 403  # no token set
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", **outside)
    for wrong in ("Bearer s3cret", "Bearer s3cret-scrape-token2", "Basic s3cret-scrape-token", "s3cret-scrape-token"):
        assert Client().get("/metrics", HTTP_AUTHORIZATION=wrong, **outside).status_code == 403, wrong


@pytest.mark.django_db
def test_only_get(redis_db):
    response = Client().post("/metrics")
    assert response.status_code == 405 and response.json()["status_code"] == 405


# --- the embedded pipeline, in this process ------------------------------------------------------


async def ascrape(**extra) -> dict:
    return await asyncio.to_thread(scrape, **extra)


async def until(predicate, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - state in other tasks and processes
            await asyncio.sleep(0.05)


@pytest.fixture
def redis_layer(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    settings.PERSIST_INTERVAL_S = 0.2


@pytest.mark.django_db(transaction=True)
async def test_the_figures_move_with_ticks_clients_and_the_saver(redis_layer, redis_db, user):
    from marketapp.asgi import application

    ids = await sync_to_async(sim_exchange)()
    before = await ascrape()
    runtime = MarketRuntime(provider_codes=["SIM"], with_saver=True, refresh_s=0.2)
    await runtime.start()
    communicator = WebsocketCommunicator(application, f"/ws?token={await sync_to_async(access_token)(user)}")
    try:
        assert (await communicator.connect(timeout=3))[0]
        await communicator.send_json_to({"message_type": "subscribe", "channels": ["AAA", "BBB@1m"]})
        kinds = []
        async with asyncio.timeout(10):
            while kinds.count("data") < 3:
                kinds.append((await communicator.receive_json_from(timeout=5))["message_type"])
        # Close the open bars as the minute timer would; the saver commits them.
        await runtime.engine.close_bars(int(time.time() * 1000) + 120_000)

        async def saved() -> bool:
            return runtime.saver.totals.saved >= 2

        await until(saved)
        after = await ascrape()
    finally:
        await communicator.disconnect()
        await runtime.stop()
        await runtime.store.close()
        await close_hub()

    me = {"process": figures.process_id()}
    for name in (
        "marketapp_engine_ticks_total",
        "marketapp_engine_batches_total",
        "marketapp_engine_bars_closed_total",
        "marketapp_engine_batch_seconds_count",
        "marketapp_engine_publish_seconds_count",
        "marketapp_ws_frames_sent_total",
        "marketapp_hub_messages_total",
        "marketapp_saver_bars_total",
    ):
        assert value(after, name, **me) > value(before, name, **me), name
    assert value(after, "marketapp_feed_ticks_total", provider="SIM", **me) >= value(
        after, "marketapp_engine_ticks_total", **me
    )
    assert value(after, "marketapp_feed_up", provider="SIM", **me) == 1
    assert value(after, "marketapp_ws_connections", **me) == 1
    assert value(after, "marketapp_ws_subscriptions", **me) == 2
    assert value(after, "marketapp_hub_groups", **me) == 2
    assert value(after, "marketapp_ws_frames_sent_total", **me) >= len(kinds)
    assert value(after, "marketapp_engine_batch_seconds_bucket", le="+Inf", **me) == value(
        after, "marketapp_engine_batch_seconds_count", **me
    )
    assert ("marketapp_persist_backlog_bars", frozenset()) in after
    assert ("marketapp_persist_lag_seconds", frozenset()) in after
    assert len(ids) == 2


@pytest.mark.django_db(transaction=True)
async def test_a_stuck_client_moves_conflated_dropped_and_stuck_disconnects(redis_layer, redis_db, settings):
    settings.WS_ALLOW_ANONYMOUS = True
    settings.WS_STUCK_TIMEOUT_S = 1.0
    settings.WS_SEND_QUEUE = 1
    exchange = await sync_to_async(ExchangeFactory)(code="XNAS")
    first, second = [await sync_to_async(InstrumentFactory)(exchange=exchange, symbol=s) for s in ("AAA", "BBB")]
    before = await ascrape()

    # A client that never takes a frame: its transport send never completes.
    accepted = asyncio.Event()

    async def send(event: dict) -> None:
        if event["type"] == "websocket.accept":
            accepted.set()
            return
        await asyncio.Event().wait()

    frames: asyncio.Queue = asyncio.Queue()
    await frames.put({"type": "websocket.connect"})
    consumer = MarketDataConsumer({"type": "websocket", "path": "/ws", "client": ("127.0.0.1", 1)}, send)
    running = asyncio.create_task(consumer.run(frames.get))
    try:
        await accepted.wait()
        await frames.put(
            {
                "type": "websocket.receive",
                "text": orjson.dumps({"message_type": "subscribe", "channels": ["AAA", "BBB"]}).decode(),
            }
        )

        async def subscribed() -> bool:
            return len(consumer.groups) == 2

        await until(subscribed, 5)
        publisher = ChannelLayerPublisher()
        for seq in range(1, 4):
            text = json.dumps({"message_type": "data", "symbol": "AAA", "seq": seq})
            await publisher.publish([(quote_group(first.pk), text), (quote_group(second.pk), text)])

        async def given_up() -> bool:
            return consumer.closed

        await until(given_up, 10)
        after = await ascrape()
    finally:
        await frames.put({"type": "websocket.disconnect", "code": 1006})
        async with asyncio.timeout(10):
            await running
        await close_hub()

    me = {"process": figures.process_id()}
    assert (
        value(after, "marketapp_ws_stuck_disconnects_total", **me)
        == value(before, "marketapp_ws_stuck_disconnects_total", **me) + 1
    )
    assert value(after, "marketapp_ws_updates_conflated_total", **me) >= 1  # AAA's updates replaced each other
    assert value(after, "marketapp_ws_updates_dropped_total", **me) >= 1  # BBB found the outbox full
    assert value(after, "marketapp_ws_connections", **me) == 0  # gone, its counters kept


# --- the stack mode: another process's snapshot, the leases ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_ingest_process_publishes_and_the_web_process_exports_it(tmp_path, redis_db):
    sim_exchange()
    log = tmp_path / "ingest.log"
    # A Celery stream's lease, as StreamLease.acquire takes it.
    assert redis_db.set(lease_key("DHAN"), "streams@node-1:4242", nx=True, px=30_000)
    process = start_ingest(log, "--provider", "sim", METRICS_SNAPSHOT_INTERVAL_S="0.3")
    ingest = {"role": "ingest", "process": f"{socket.gethostname()}:{process.pid}"}
    try:
        deadline = time.monotonic() + 20
        while True:
            samples = scrape()
            if value(samples, "marketapp_engine_ticks_total", **ingest) > 0:
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no ingest snapshot exported: {log.read_text()}"
            time.sleep(0.2)
        first = value(samples, "marketapp_engine_ticks_total", **ingest)
        time.sleep(1.0)
        later = scrape()
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert value(later, "marketapp_engine_ticks_total", **ingest) > first
    assert value(later, "marketapp_feed_ticks_total", provider="SIM", **ingest) > 0
    assert value(later, "marketapp_engine_batch_seconds_count", **ingest) > 0
    assert 0 <= value(later, "marketapp_process_snapshot_age_seconds", **ingest) < 30
    assert value(later, "marketapp_stream_lease", provider="DHAN", holder="streams@node-1:4242") == 1
    # The exporting process's own figures are its live ones, labelled apart from the ingest's.
    assert label_values(later, "marketapp_process_snapshot_age_seconds", "process") >= {
        ingest["process"],
        figures.process_id(),
    }


def test_a_lapsed_snapshot_is_no_longer_exported(redis_db):
    snapshot = {**figures.process_snapshot(), "role": "ingest", "process": "gone-host:1"}
    figures.publish_snapshot(redis_db, snapshot, ttl_s=0.2)
    assert [s["process"] for s in figures.read_snapshots(redis_db)] == ["gone-host:1"]
    time.sleep(0.3)
    figures.publish_snapshot(redis_db, {**snapshot, "process": "alive-host:2"}, ttl_s=5)
    assert [s["process"] for s in figures.read_snapshots(redis_db)] == ["alive-host:2"]
    assert redis_db.zcard(figures.SNAPSHOT_INDEX) == 1  # the lapsed entry was pruned


# --- the sample dashboard ------------------------------------------------------------------------


def test_the_grafana_dashboard_uses_only_exported_metrics():
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["panels"] and dashboard["schemaVersion"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    known = exported_sample_names()
    used = set()
    for expr in exprs:
        for name in re.findall(r"\bmarketapp_[a-z0-9_]+", expr):
            assert name in known, f"{name} in {expr!r} is not exported"
            used.add(name)
    families = {re.sub(r"_(bucket|sum|count)$", "", n) if n not in METRICS else n for n in used}
    assert len(families) >= 15  # the dashboard covers most of what is exported


def test_the_readme_lists_every_metric_and_setting():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics") :]
    for name in METRICS:
        assert f"`{name}" in section, name
    for setting in ("METRICS_ALLOWED_IPS", "METRICS_TOKEN", "METRICS_SNAPSHOT_INTERVAL_S"):
        assert f"`{setting}`" in section and setting in (ROOT / ".env.example").read_text()
