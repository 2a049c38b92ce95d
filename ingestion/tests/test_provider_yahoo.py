"""The Yahoo feed client against a local fake streamer speaking the real wire format."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from yfinance.pricing_pb2 import PricingData

from ingestion.providers.base import FeedStatus, Subscription
from ingestion.providers.yahoo import (
    YahooFeedClient,
    clean_float32,
    decode_pricing_frame,
    pricing_to_tick,
)
from ingestion.tests.fakes.yahoo_server import FakeYahooServer, pricing_frame

FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "resubscribe_s": 60, "connect_timeout_s": 2}
T0 = 1_705_334_400_000  # 2024-01-15T16:00:00Z in epoch ms


class RecordingClient(YahooFeedClient):
    """The real client, also remembering every status it went through."""

    def __init__(self, **kwargs) -> None:
        self.history: list[FeedStatus] = []
        super().__init__(**kwargs)

    def set_status(self, status: FeedStatus, error: str = "") -> None:
        if not self.history or self.history[-1] != status:
            self.history.append(status)
        super().set_status(status, error)


def sub(instrument_id: int, code: str) -> Subscription:
    return Subscription(instrument_id=instrument_id, symbol=code.split(".")[0], exchange="NSE", search_code=code)


async def take(client: YahooFeedClient, n: int, within: float = 5.0) -> list:
    out: list = []
    async with asyncio.timeout(within):
        while len(out) < n:
            out.extend(await client.next_batch(n - len(out)))
    return out


async def until(predicate, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the client has no event to wait on
            await asyncio.sleep(0.005)


@pytest.fixture
async def server():
    async with FakeYahooServer() as fake:
        yield fake


@pytest.fixture
async def make_client(server):
    clients: list[YahooFeedClient] = []

    def make(**settings) -> RecordingClient:
        client = RecordingClient(code="yahoo-test", settings={"feed_url": server.url, **FAST, **settings})
        clients.append(client)
        return client

    yield make
    async with asyncio.timeout(5):
        for client in clients:
            await client.disconnect()


def subscribe_sets(messages: list[dict]) -> list[set[str]]:
    return [set(m["subscribe"]) for m in messages if "subscribe" in m]


# --- decoding -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [(185.51, 185.51), (2987.65, 2987.65), (123456.79, 123456.79), (0.1, 0.1), (24567.85, 24567.85)],
)
def test_clean_float32_gives_the_decimal_the_provider_meant(value, expected):
    widened = PricingData(price=value).price  # what protobuf hands out: float32 as float64
    assert widened != expected  # float32 cannot hold these decimals exactly
    assert clean_float32(widened) == expected


def test_decode_pricing_frame_reads_every_field_and_cleans_floats():
    frame = pricing_frame(
        "RELIANCE.NS",
        price=2987.65,
        time=T0,
        currency="INR",
        exchange="NSI",
        market_hours=1,
        day_volume=4_567_890,
        day_high=2999.9,
        day_low=2950.05,
        open_price=2960.0,
        previous_close=2955.35,
        last_size=25,
        bid=2987.6,
        bid_size=100,
        ask=2987.7,
        ask_size=40,
        change=32.3,
    )

    data = decode_pricing_frame(frame)

    assert data == {
        "id": "RELIANCE.NS",
        "price": 2987.65,
        "time": T0,
        "currency": "INR",
        "exchange": "NSI",
        "market_hours": 1,
        "day_volume": 4_567_890,
        "day_high": 2999.9,
        "day_low": 2950.05,
        "open_price": 2960.0,
        "previous_close": 2955.35,
        "last_size": 25,
        "bid": 2987.6,
        "bid_size": 100,
        "ask": 2987.7,
        "ask_size": 40,
        "change": 32.3,
    }


def test_pricing_to_tick_maps_fields_and_leaves_absent_ones_none():
    full = decode_pricing_frame(
        pricing_frame(
            "AAPL",
            price=185.51,
            time=T0,
            day_volume=52_000_000,
            last_size=100,
            open_price=184.0,
            day_high=186.5,
            day_low=183.25,
            previous_close=184.75,
            bid=185.5,
            ask=185.52,
        )
    )
    tick = pricing_to_tick(full, instrument_id=7, provider="yahoo-1")
    assert (tick.instrument_id, tick.provider, tick.ts, tick.price) == (7, "yahoo-1", T0, 185.51)
    assert (tick.size, tick.day_volume) == (100, 52_000_000)
    assert (tick.day_open, tick.day_high, tick.day_low, tick.prev_close) == (184.0, 186.5, 183.25, 184.75)
    assert (tick.bid, tick.ask) == (185.5, 185.52)

    bare = pricing_to_tick(
        decode_pricing_frame(pricing_frame("AAPL", price=185.51, time=T0, bid=0.0)), instrument_id=7, provider="y"
    )
    assert bare.price == 185.51
    assert bare.size is bare.day_volume is bare.day_open is bare.day_high is None
    assert bare.day_low is bare.prev_close is bare.bid is bare.ask is None


def test_pricing_to_tick_scales_second_timestamps_and_stamps_missing_time():
    in_seconds = decode_pricing_frame(pricing_frame("AAPL", price=1.5, time=T0 // 1000))
    assert pricing_to_tick(in_seconds, instrument_id=1, provider="y").ts == T0

    before = time.time_ns() // 1_000_000
    untimed = pricing_to_tick(
        decode_pricing_frame(pricing_frame("AAPL", price=1.5, time=0)), instrument_id=1, provider="y"
    )
    assert before <= untimed.ts <= time.time_ns() // 1_000_000


def _b64(message: PricingData) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        b"\xff\xfe",
        "[1, 2]",
        json.dumps({"type": "heartbeat", "message": _b64(PricingData(id="AAPL", price=1.0))}),
        json.dumps({"type": "pricing"}),
        json.dumps({"type": "pricing", "message": 42}),
        json.dumps({"type": "pricing", "message": "!!not base64!!"}),
        json.dumps({"type": "pricing", "message": base64.b64encode(b"\x0a\xff\xff").decode()}),
        json.dumps({"type": "pricing", "message": _b64(PricingData(price=1.0))}),
        json.dumps({"type": "pricing", "message": _b64(PricingData(id="AAPL", time=T0))}),
        json.dumps({"type": "pricing", "message": _b64(PricingData(id="AAPL", price=float("nan")))}),
    ],
    ids=[
        "text",
        "bytes",
        "list",
        "type",
        "no-message",
        "int-message",
        "base64",
        "protobuf",
        "no-id",
        "no-price",
        "nan",
    ],
)
def test_decode_pricing_frame_rejects_malformed_frames(frame):
    with pytest.raises(ValueError):
        decode_pricing_frame(frame)


# --- the live client ------------------------------------------------------------------------
async def test_subscribes_whole_set_on_connect_and_on_each_change(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "RELIANCE.NS"), sub(2, "INFY.NS")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"RELIANCE.NS", "INFY.NS"})
    assert client.status == FeedStatus.STREAMING

    await client.subscribe([sub(3, "AAPL")])
    await server.wait_until(lambda: len(subscribe_sets(server.messages())) == 2)
    assert subscribe_sets(server.messages()) == [{"RELIANCE.NS", "INFY.NS"}, {"RELIANCE.NS", "INFY.NS", "AAPL"}]

    await client.unsubscribe([2])
    await server.wait_until(lambda: "INFY.NS" not in server.subscribed)
    assert server.messages()[-1] == {"unsubscribe": ["INFY.NS"]}
    assert server.subscribed == {"RELIANCE.NS", "AAPL"}
    assert server.connections_accepted == 1


async def test_streams_normalized_ticks_for_subscribed_symbols(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "RELIANCE.NS"), sub(3, "aapl")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"RELIANCE.NS", "AAPL"})

    assert await server.push("RELIANCE.NS", price=2987.65, time=T0, day_volume=1000, bid=2987.6, ask=0.0) == 1
    await server.push("AAPL", price=185.51, time=T0 + 1, last_size=5)

    first, second = await take(client, 2)
    assert (first.instrument_id, first.provider, first.ts, first.price) == (1, "yahoo-test", T0, 2987.65)
    assert (first.day_volume, first.bid, first.ask) == (1000, 2987.6, None)
    assert (second.instrument_id, second.price, second.size, second.day_volume) == (3, 185.51, 5, None)
    assert client.stats.ticks == 2


async def test_frames_for_unknown_symbols_are_ignored(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "AAPL")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"AAPL"})

    await server.send_raw(pricing_frame("MSFT", price=410.0, time=T0))
    await server.push("AAPL", price=185.51, time=T0)

    [tick] = await take(client, 1)
    assert tick.instrument_id == 1
    assert client.stats.unknown == 1
    assert client.stats.malformed == 0
    assert client.status_dict()["unknown"] == 1


async def test_two_instruments_on_one_symbol_both_get_ticks(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "RELIANCE.NS"), sub(2, "RELIANCE.NS")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"RELIANCE.NS"})

    await server.push("RELIANCE.NS", price=2987.65, time=T0)
    assert sorted(t.instrument_id for t in await take(client, 2)) == [1, 2]

    await client.unsubscribe([1])
    await client.subscribe([sub(4, "AAPL")])  # a later message shows the earlier one was handled
    await server.wait_until(lambda: "AAPL" in server.subscribed)
    assert not any("unsubscribe" in m for m in server.messages())
    await server.push("RELIANCE.NS", price=2990.0, time=T0 + 1)
    [tick] = await take(client, 1)
    assert tick.instrument_id == 2


async def test_malformed_frames_are_counted_and_the_stream_goes_on(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "AAPL")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"AAPL"})

    await server.send_raw("garbage")
    await server.send_raw(b"\x00\x01binary")
    await server.send_raw(json.dumps({"type": "pricing", "message": "%%%"}))
    await server.send_raw(json.dumps({"type": "pricing", "message": _b64(PricingData(id="AAPL"))}))
    await server.push("AAPL", price=185.51, time=T0)

    [tick] = await take(client, 1)
    assert tick.price == 185.51
    assert client.stats.malformed == 4
    assert client.status == FeedStatus.STREAMING
    assert server.connections_accepted == 1


async def test_reconnects_after_a_drop_and_resubscribes_everything(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "RELIANCE.NS"), sub(2, "AAPL")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"RELIANCE.NS", "AAPL"})
    await server.push("AAPL", price=185.51, time=T0)
    await take(client, 1)

    await server.drop_all()
    await server.wait_until(lambda: server.connections_accepted == 2 and server.subscribed == {"RELIANCE.NS", "AAPL"})
    await until(lambda: client.status == FeedStatus.STREAMING)

    assert client.history == [
        FeedStatus.CONNECTING,
        FeedStatus.STREAMING,
        FeedStatus.BACKING_OFF,
        FeedStatus.CONNECTING,
        FeedStatus.STREAMING,
    ]
    assert client.stats.reconnects == 1
    assert "connection lost" in client.last_error
    assert subscribe_sets(server.messages(conn=2))[0] == {"RELIANCE.NS", "AAPL"}
    await server.push("RELIANCE.NS", price=2987.65, time=T0 + 5)
    [tick] = await take(client, 1)
    assert (tick.instrument_id, tick.price) == (1, 2987.65)
    assert client.backoff.attempt == 0  # data flowed again, so the next drop starts small


async def test_keeps_retrying_with_backoff_while_the_server_refuses(server, make_client):
    client = make_client(feed_url=server.url.replace("?version=2", "?version=1"))
    await client.subscribe([sub(1, "AAPL")])
    await client.connect()

    await until(lambda: server.rejected >= 3)
    assert client.stats.reconnects >= 2
    assert FeedStatus.STREAMING not in client.history
    assert client.status in {FeedStatus.CONNECTING, FeedStatus.BACKING_OFF}
    assert "400" in client.last_error
    assert client.backoff.attempt >= 2


async def test_an_unusable_url_fails_the_feed():
    client = YahooFeedClient(code="bad", settings={"feed_url": "http://nowhere.invalid/"})
    await client.connect()
    await until(lambda: client.status == FeedStatus.FAILED)
    assert "feed_url" in client.last_error
    await client.disconnect()


async def test_resends_the_subscription_periodically(server, make_client):
    client = make_client(resubscribe_s=0.05)
    await client.subscribe([sub(1, "RELIANCE.NS"), sub(2, "AAPL")])
    await client.connect()

    await server.wait_until(lambda: len(subscribe_sets(server.messages())) >= 4)
    assert all(s == {"RELIANCE.NS", "AAPL"} for s in subscribe_sets(server.messages()))
    assert server.connections_accepted == 1


async def test_a_slow_consumer_holds_the_reader_back_without_losing_ticks(server):
    client = YahooFeedClient(code="slow", settings={"feed_url": server.url, **FAST}, queue_size=2)
    try:
        await client.subscribe([sub(1, "AAPL")])
        await client.connect()
        await server.wait_until(lambda: server.subscribed == {"AAPL"})
        for i in range(20):
            await server.push("AAPL", price=100.0 + i, time=T0 + i)

        ticks = await take(client, 20)
        assert [t.ts - T0 for t in ticks] == list(range(20))
        assert [t.price for t in ticks] == [100.0 + i for i in range(20)]
    finally:
        await client.disconnect()


async def test_disconnect_stops_cleanly_without_leaking_tasks(server):
    before = asyncio.all_tasks()
    client = YahooFeedClient(code="stop", settings={"feed_url": server.url, **FAST, "resubscribe_s": 0.05})
    await client.subscribe([sub(1, "AAPL")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"AAPL"})

    async with asyncio.timeout(5):
        await client.disconnect()
    await server.wait_until(lambda: server.open_connections == 0)
    await until(lambda: not (asyncio.all_tasks() - before))

    assert client.status == FeedStatus.STOPPED
    assert client._task is None
    assert client._ws is None
    sent = len(server.received)
    await asyncio.sleep(0.15)  # three resubscribe periods: nothing more may arrive
    assert len(server.received) == sent
    assert server.connections_accepted == 1


async def test_subscribe_while_disconnected_is_sent_on_connect(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, "AAPL")])
    await client.connect()
    await server.wait_until(lambda: server.subscribed == {"AAPL"})
    await client.disconnect()
    await client.subscribe([sub(2, "MSFT")])
    await client.unsubscribe([1])

    await client.connect()
    await server.wait_until(lambda: server.connections_accepted == 2 and server.subscribed == {"MSFT"})
    assert server.messages(conn=2) == [{"subscribe": ["MSFT"]}]
