"""The Dhan feed client against a local fake feed speaking Dhan's v2 wire format."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import pytest

from ingestion.providers import dhan_packets as dp
from ingestion.providers.base import FeedStatus, Subscription
from ingestion.providers.dhan import DhanFeedClient, subscription_messages
from ingestion.tests.fakes.dhan_server import (
    FakeDhanServer,
    disconnect_packet,
    full_packet,
    market_status_packet,
    oi_packet,
    prev_close_packet,
    quote_packet,
    raw_packet,
    ticker_packet,
)
from ingestion.ticks import Tick

TOKEN = "eyJ-test.token_value"
CLIENT_ID = "1000000001"
CREDENTIALS = {"access_token": TOKEN, "client_id": CLIENT_ID}
FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "open_timeout_s": 2}
IST = 19_800
# 2024-01-15 09:15:00 IST is 03:45:00 UTC; Dhan sends the IST wall clock as an epoch.
UTC_0915 = 1_705_290_300
LTT_0915 = UTC_0915 + IST

DEPTH = [
    (1200, 800, 12, 9, 2885.45, 2885.6),
    (900, 700, 8, 7, 2885.4, 2885.65),
    (500, 400, 5, 4, 2885.35, 2885.7),
    (300, 200, 3, 2, 2885.3, 2885.75),
    (100, 50, 1, 1, 2885.25, 2885.8),
]


def sub(instrument_id: int, security_id: int | str, segment: str = "NSE_EQ") -> Subscription:
    return Subscription(
        instrument_id=instrument_id,
        symbol=f"S{instrument_id}",
        exchange="NSE",
        search_code=str(security_id),
        segment=segment,
    )


def many(n: int, start: int = 1) -> list[Subscription]:
    return [sub(start + i, 10_000 + start + i) for i in range(n)]


@pytest.fixture
async def server():
    async with FakeDhanServer(token=TOKEN, client_id=CLIENT_ID) as fake:
        yield fake


@pytest.fixture
async def make_client(server):
    clients: list[DhanFeedClient] = []

    def build(*, mode: str = "quote", credentials: dict | None = None, **settings) -> DhanFeedClient:
        client = DhanFeedClient(
            code="DHAN",
            settings={"feed_url": server.url, "mode": mode, **FAST, **settings},
            credentials=CREDENTIALS if credentials is None else credentials,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.disconnect()


async def take(client: DhanFeedClient, n: int, within: float = 5.0) -> list[Tick]:
    out: list[Tick] = []
    async with asyncio.timeout(within):
        while len(out) < n:
            out.extend(await client.next_batch(n - len(out)))
    return out


async def wait_until(predicate, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling state the client exposes, no event to await
            await asyncio.sleep(0.005)


async def streaming(client: DhanFeedClient, server: FakeDhanServer, subscribed: int) -> None:
    await client.connect()
    await server.wait_for(lambda: server.subscribed_count() == subscribed)
    await wait_until(lambda: client.status == FeedStatus.STREAMING)


# --- packet parser -------------------------------------------------------------------------
def test_ticker_packet_parsed():
    packet = dp.parse_packet(ticker_packet("NSE_EQ", 2885, 2885.5, LTT_0915))

    assert packet.kind == "ticker"
    assert (packet.segment, packet.segment_name, packet.security_id) == (1, "NSE_EQ", 2885)
    assert packet.ltp == 2885.5
    assert packet.ltt == LTT_0915


def test_quote_packet_parsed_with_float32_noise_removed():
    frame = quote_packet(
        "BSE_EQ",
        500325,
        ltp=24567.85,
        ltq=25,
        ltt=LTT_0915,
        avg_price=24501.3,
        volume=1_234_567,
        total_sell_qty=40_000,
        total_buy_qty=35_000,
        open=24400.1,
        close=24390.55,
        high=24600.0,
        low=24380.05,
    )
    packet = dp.parse_packet(frame)

    assert len(frame) == 50
    assert (packet.kind, packet.segment_name, packet.security_id) == ("quote", "BSE_EQ", 500325)
    assert (packet.ltp, packet.ltq, packet.ltt) == (24567.85, 25, LTT_0915)
    assert (packet.avg_price, packet.volume) == (24501.3, 1_234_567)
    assert (packet.total_sell_qty, packet.total_buy_qty) == (40_000, 35_000)
    assert (packet.open, packet.close, packet.high, packet.low) == (24400.1, 24390.55, 24600.0, 24380.05)


def test_full_packet_parsed_with_depth():
    frame = full_packet(
        "NSE_FNO",
        35001,
        ltp=2885.5,
        ltq=50,
        ltt=LTT_0915,
        avg_price=2880.25,
        volume=98_765,
        total_sell_qty=1000,
        total_buy_qty=2000,
        oi=123_456,
        oi_day_high=130_000,
        oi_day_low=120_000,
        open=2870.0,
        close=2860.4,
        high=2890.95,
        low=2865.1,
        depth=DEPTH,
    )
    packet = dp.parse_packet(frame)

    assert len(frame) == 162
    assert (packet.kind, packet.segment_name, packet.security_id) == ("full", "NSE_FNO", 35001)
    assert (packet.ltp, packet.ltq, packet.ltt, packet.avg_price, packet.volume) == (
        2885.5,
        50,
        LTT_0915,
        2880.25,
        98_765,
    )
    assert (packet.total_sell_qty, packet.total_buy_qty) == (1000, 2000)
    assert (packet.oi, packet.oi_day_high, packet.oi_day_low) == (123_456, 130_000, 120_000)
    assert (packet.open, packet.close, packet.high, packet.low) == (2870.0, 2860.4, 2890.95, 2865.1)
    assert [(d.bid_qty, d.ask_qty, d.bid_orders, d.ask_orders, d.bid_price, d.ask_price) for d in packet.depth] == DEPTH


def test_oi_prev_close_market_status_and_disconnect_packets_parsed():
    oi = dp.parse_packet(oi_packet("NSE_FNO", 35001, 4_500_000))
    prev = dp.parse_packet(prev_close_packet("IDX_I", 13, 21731.4, 77))
    status = dp.parse_packet(market_status_packet("NSE_EQ", 0))
    bye = dp.parse_packet(disconnect_packet(807))

    assert (oi.kind, oi.security_id, oi.oi) == ("oi", 35001, 4_500_000)
    assert (prev.kind, prev.segment_name, prev.security_id, prev.prev_close, prev.prev_oi) == (
        "prev_close",
        "IDX_I",
        13,
        21731.4,
        77,
    )
    assert (status.kind, status.segment_name, status.ltp) == ("market_status", "NSE_EQ", None)
    assert (bye.kind, bye.error_code) == ("disconnect", 807)


def test_header_length_may_count_the_payload_only():
    frame = bytearray(ticker_packet("NSE_EQ", 1333, 1650.25, LTT_0915))
    struct.pack_into("<H", frame, 1, 8)

    assert dp.parse_packet(bytes(frame)).ltp == 1650.25


@pytest.mark.parametrize(
    "length",
    [0, 0x1000, 0x0800, 9999],  # absent, the whole length big-endian, payload big-endian, nonsense
)
def test_a_frame_as_long_as_its_layout_decodes_whatever_the_length_field_says(length):
    """If real Dhan used another convention than our guess, every packet would otherwise be
    dropped while the feed reported streaming: decode it and flag the mismatch instead."""
    frame = bytearray(quote_packet("NSE_EQ", 1333, ltp=1650.25))
    struct.pack_into("<H", frame, 1, length)
    packet = dp.parse_packet(bytes(frame))
    assert packet.ltp == 1650.25 and packet.length_mismatch


def test_a_padded_frame_decodes_and_is_flagged():
    packet = dp.parse_packet(ticker_packet("NSE_EQ", 1333, 1.0, 1) + b"\x00")
    assert packet.ltp == 1.0 and packet.length_mismatch
    assert not dp.parse_packet(ticker_packet("NSE_EQ", 1333, 1.0, 1)).length_mismatch


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x02\x10\x00", "shorter than the 8-byte header"),
        (ticker_packet("NSE_EQ", 1333, 1.0, 1)[:12], "frame has 12 bytes, layout needs 16"),
        (quote_packet("NSE_EQ", 1333, ltp=1.0)[:49], "frame has 49 bytes, layout needs 50"),
        (raw_packet(3, "NSE_EQ", 1333, b"\x00" * 8), "unknown response code 3"),
    ],
)
def test_bad_frames_rejected(frame, message):
    with pytest.raises(dp.DhanPacketError, match=message):
        dp.parse_packet(frame)


def test_clean_price_is_the_shortest_float32_decimal():
    def f32(x: float) -> float:
        return struct.unpack("<f", struct.pack("<f", x))[0]

    assert f32(24567.85) != 24567.85
    assert dp.clean_price(f32(24567.85)) == 24567.85
    assert dp.clean_price(f32(2885.5)) == 2885.5
    assert dp.clean_price(f32(0.05)) == 0.05
    # Eight significant digits: seven would round to 130000.0, a different float32.
    assert dp.clean_price(f32(130000.05)) == 130000.05


# --- connection and subscriptions ----------------------------------------------------------
async def test_url_carries_the_v2_auth_parameters(server, make_client):
    client = make_client()
    await streaming(client, server, 0)

    assert server.connections[0].query == {"version": "2", "token": TOKEN, "clientId": CLIENT_ID, "authType": "2"}


@pytest.mark.parametrize(("mode", "code"), [("ticker", 15), ("quote", 17), ("full", 21)])
async def test_subscriptions_sent_in_batches_of_100(server, make_client, mode, code):
    client = make_client(mode=mode)
    subs = [sub(i, 1000 + i) for i in range(1, 201)] + [sub(i, 500_000 + i, "BSE_EQ") for i in range(201, 251)]
    await client.subscribe(subs)
    await streaming(client, server, 250)

    messages = server.connections[0].messages
    assert all(m["RequestCode"] == code for m in messages)
    assert all(m["InstrumentCount"] == len(m["InstrumentList"]) <= 100 for m in messages)
    assert sum(m["InstrumentCount"] for m in messages) == 250
    assert len(messages) == 3
    sent = [item for m in messages for item in m["InstrumentList"]]
    assert all(isinstance(item["SecurityId"], str) for item in sent)
    expected = {("NSE_EQ", str(1000 + i)) for i in range(1, 201)}
    expected |= {("BSE_EQ", str(500_000 + i)) for i in range(201, 251)}
    assert {(item["ExchangeSegment"], item["SecurityId"]) for item in sent} == expected
    assert len(server.connections) == 1


async def test_more_than_5000_instruments_open_a_second_connection(server, make_client):
    client = make_client()
    await client.subscribe(many(5001))
    await streaming(client, server, 5001)

    assert len(server.connections) == 2
    assert sorted(len(c.subscribed) for c in server.connections) == [1, 5000]
    assert client.status_dict()["connections"] == 2


async def test_more_than_25000_instruments_refused_with_a_status_error(server, make_client):
    client = make_client()
    await client.subscribe(many(25_002))
    await streaming(client, server, 25_000)

    assert len(server.connections) == 5
    assert len(client.subscriptions) == 25_000
    assert len(client.refused) == 2
    assert "refused 2 subscription(s)" in client.last_error
    assert "limit of 25000 instruments" in client.last_error


async def test_unknown_segment_and_non_numeric_security_id_refused(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, 2885), sub(2, 1333, "NYSE"), sub(3, "RELIANCE")])
    await streaming(client, server, 1)

    assert set(client.subscriptions) == {1}
    assert "unknown Dhan segment" in client.refused[2]
    assert "not numeric" in client.refused[3]


async def test_live_subscribe_and_unsubscribe_use_code_and_code_plus_one(server, make_client):
    client = make_client(mode="full")
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)

    await client.subscribe([sub(2, 1333), sub(3, 1594)])
    await server.wait_for(lambda: server.subscribed_count() == 3)
    await client.unsubscribe([1, 3])
    await server.wait_for(lambda: server.subscribed_count() == 1)

    conn = server.connections[0]
    assert conn.messages[-1]["RequestCode"] == 22
    assert {(i["ExchangeSegment"], i["SecurityId"]) for i in conn.messages[-1]["InstrumentList"]} == {
        ("NSE_EQ", "2885"),
        ("NSE_EQ", "1594"),
    }
    assert conn.subscribed == {("NSE_EQ", "1333"): 21}

    # A late packet for an unsubscribed instrument is dropped, not emitted under a stale id.
    await server.send_to_all(full_packet("NSE_EQ", 2885, ltp=1.0, ltt=LTT_0915))
    await server.send_to_all(full_packet("NSE_EQ", 1333, ltp=1650.0, ltt=LTT_0915))
    [tick] = await take(client, 1)
    assert (tick.instrument_id, tick.price) == (2, 1650.0)
    assert client.packet_counts["unknown_instrument"] == 1


# --- packets to ticks ----------------------------------------------------------------------
async def test_packets_become_ticks(server, make_client):
    client = make_client(mode="full")
    await client.subscribe([sub(1, 2885), sub(2, 13, "IDX_I"), sub(3, 35001, "NSE_FNO")])
    await streaming(client, server, 3)

    await server.send_to_all(prev_close_packet("NSE_EQ", 2885, 2870.35))
    await server.send_to_all(ticker_packet("NSE_EQ", 2885, 2885.5, LTT_0915))
    await server.send_to_all(ticker_packet("IDX_I", 13, 21731.4, LTT_0915 + 1))
    await server.send_to_all(oi_packet("NSE_FNO", 35001, 4_500_000))
    await server.send_to_all(market_status_packet("NSE_EQ", 0))
    await server.send_to_all(
        full_packet(
            "NSE_FNO",
            35001,
            ltp=112.35,
            ltq=75,
            ltt=LTT_0915 + 2,
            volume=1_500_000,
            oi=4_600_000,
            open=110.0,
            close=109.5,
            high=115.2,
            low=108.05,
            depth=DEPTH,
        )
    )
    eq, idx, fno = await take(client, 3)

    assert eq == Tick(instrument_id=1, provider="DHAN", ts=UTC_0915 * 1000, price=2885.5, prev_close=2870.35)
    assert idx == Tick(instrument_id=2, provider="DHAN", ts=(UTC_0915 + 1) * 1000, price=21731.4)
    assert fno == Tick(
        instrument_id=3,
        provider="DHAN",
        ts=(UTC_0915 + 2) * 1000,
        price=112.35,
        size=75,
        day_volume=1_500_000,
        day_open=110.0,
        day_high=115.2,
        day_low=108.05,
        prev_close=109.5,
        bid=2885.45,
        ask=2885.6,
    )
    assert client.open_interest[3] == 4_600_000
    assert client.prev_closes == {1: 2870.35}
    assert client.market_status["segment"] == "NSE_EQ"
    assert client.packet_counts["oi"] == 1
    assert client.packet_counts["market_status"] == 1
    assert client.stats.ticks == 3


async def test_quote_ticks_carry_day_values_and_prefer_the_prev_close_packet(server, make_client):
    client = make_client(mode="quote")
    await client.subscribe([sub(1, 2885), sub(2, 1333)])
    await streaming(client, server, 2)

    quote = {"ltq": 10, "ltt": LTT_0915, "volume": 5000, "open": 2870.0, "close": 2868.9, "high": 2890.0, "low": 2860.0}
    await server.send_to_all(prev_close_packet("NSE_EQ", 2885, 2869.95))
    await server.send_to_all(quote_packet("NSE_EQ", 2885, ltp=2885.5, **quote))
    await server.send_to_all(quote_packet("NSE_EQ", 1333, ltp=1650.3, **quote))
    await server.send_to_all(quote_packet("NSE_EQ", 1333, ltp=0.0, **quote))
    await server.send_to_all(quote_packet("NSE_EQ", 1333, ltp=1650.4, ltq=5, volume=5005))
    with_packet, without_packet, no_day_values = await take(client, 3)

    assert (with_packet.size, with_packet.day_volume, with_packet.prev_close) == (10, 5000, 2869.95)
    assert (with_packet.day_open, with_packet.day_high, with_packet.day_low) == (2870.0, 2890.0, 2860.0)
    assert (with_packet.bid, with_packet.ask) == (None, None)
    assert without_packet.prev_close == 2868.9
    # A zero price is a missing trade (skipped); zero day values are missing values, not 0.0.
    assert client.packet_counts["no_price"] == 1
    assert (no_day_values.price, no_day_values.day_open, no_day_values.prev_close) == (1650.4, None, None)
    assert abs(no_day_values.ts - time.time() * 1000) < 5000  # LTT 0: stamped on receipt


async def test_truncated_and_unknown_frames_counted_and_skipped(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)

    good = quote_packet("NSE_EQ", 2885, ltp=2885.5, ltt=LTT_0915)
    await server.send_to_all(good[:30])
    await server.send_to_all(raw_packet(99, "NSE_EQ", 2885))
    await server.send_to_all(b"\x04")
    await server.connections[0].ws.send("not binary")
    await server.send_to_all(good)
    [tick] = await take(client, 1)

    assert tick.price == 2885.5
    assert client.stats.malformed == 4
    assert client.status == FeedStatus.STREAMING


# --- failures ------------------------------------------------------------------------------
async def test_plain_drop_reconnects_and_resubscribes(server, make_client):
    client = make_client()
    await client.subscribe(many(150))
    await streaming(client, server, 150)
    before = set(server.connections[0].subscribed)

    await server.drop_all()
    await server.wait_for(lambda: len(server.connections) == 2 and len(server.connections[1].subscribed) == 150)

    assert set(server.connections[1].subscribed) == before
    assert client.stats.reconnects >= 1
    await server.send_to_all(ticker_packet("NSE_EQ", 10_001, 99.95, LTT_0915))
    [tick] = await take(client, 1)
    assert (tick.instrument_id, tick.price) == (1, 99.95)
    await wait_until(lambda: client.status == FeedStatus.STREAMING)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (806, "806: data APIs not subscribed"),
        (807, "807: access token expired"),
        (808, "808: invalid client id"),
        (809, "809: authentication failed"),
    ],
)
async def test_credential_disconnects_fail_without_reconnecting(server, make_client, code, reason):
    client = make_client()
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)

    await server.send_to_all(disconnect_packet(code))
    await wait_until(lambda: client.status == FeedStatus.FAILED)
    await asyncio.sleep(0.3)  # six times the backoff cap: any retry would have happened

    assert client.last_error == reason
    assert len(server.handshakes) == 1
    assert server.open_connections() == []


async def test_too_many_connections_backs_off_past_the_cap_then_reconnects(server, make_client):
    client = make_client(backoff_cap_s=0.2)
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)

    dropped_at = time.monotonic()
    await server.send_to_all(disconnect_packet(805))
    await wait_until(lambda: client.status == FeedStatus.BACKING_OFF)
    assert client.last_error == "805: too many websocket connections"
    await server.wait_for(lambda: len(server.connections) == 2)

    assert time.monotonic() - dropped_at >= 0.2
    await server.wait_for(lambda: server.subscribed_count() == 1)


async def test_handshake_rejected_with_401_fails_without_retrying(server, make_client):
    client = make_client(credentials={"access_token": "wrong", "client_id": CLIENT_ID})
    await client.connect()
    await wait_until(lambda: client.status == FeedStatus.FAILED)
    await asyncio.sleep(0.3)

    assert "HTTP 401" in client.last_error
    assert server.rejected == 1
    assert len(server.handshakes) == 1
    assert "wrong" not in client.last_error


@pytest.mark.parametrize("credentials", [{}, {"access_token": TOKEN}, {"access_token": " ", "client_id": CLIENT_ID}])
async def test_missing_credentials_fail_at_once(server, make_client, credentials):
    client = make_client(credentials=credentials)
    await client.connect()
    await wait_until(lambda: client.status == FeedStatus.FAILED)

    assert client.last_error.startswith("missing Dhan credentials")
    assert server.handshakes == []


async def test_unknown_mode_fails(server, make_client):
    client = make_client(mode="depth")
    await client.connect()
    await wait_until(lambda: client.status == FeedStatus.FAILED)

    assert "unknown Dhan feed mode 'depth'" in client.last_error


async def test_unreachable_feed_backs_off_and_counts_reconnects(make_client):
    client = make_client(feed_url="ws://127.0.0.1:9")  # discard port: connection refused
    await client.connect()
    await wait_until(lambda: client.stats.reconnects >= 3)

    assert client.status in (FeedStatus.BACKING_OFF, FeedStatus.CONNECTING)
    assert client.last_error.startswith("connect failed")


async def test_disconnect_sends_request_code_12_and_stops(server, make_client):
    client = make_client()
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)

    await client.disconnect()
    await server.wait_for(lambda: server.open_connections() == [])

    assert server.connections[0].messages[-1] == {"RequestCode": 12}
    assert client.status == FeedStatus.STOPPED


def test_subscription_messages_keep_order_and_batch():
    wires = [("NSE_EQ", str(i)) for i in range(205)]
    messages = [json.loads(m) for m in subscription_messages(17, wires)]

    assert [m["InstrumentCount"] for m in messages] == [100, 100, 5]
    assert [(i["ExchangeSegment"], i["SecurityId"]) for m in messages for i in m["InstrumentList"]] == wires


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
async def test_a_non_finite_price_on_the_wire_is_no_trade(server, make_client, bad):
    """``if not price or price <= 0`` let NaN and +inf through: they would poison a bar."""
    client = make_client(mode="quote")
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)
    await server.send_to_all(quote_packet("NSE_EQ", 2885, ltp=bad, ltq=1, ltt=LTT_0915, volume=10, open=bad))
    await server.send_to_all(quote_packet("NSE_EQ", 2885, ltp=2885.5, ltq=1, ltt=LTT_0915, volume=11, open=bad))
    (only,) = await take(client, 1)
    assert only.price == 2885.5 and only.day_open is None
    assert client.packet_counts["no_price"] == 1


async def test_frames_whose_length_field_differs_are_decoded_and_counted(server, make_client):
    client = make_client(mode="quote")
    await client.subscribe([sub(1, 2885)])
    await streaming(client, server, 1)
    frame = bytearray(quote_packet("NSE_EQ", 2885, ltp=2885.5, ltq=1, ltt=LTT_0915, volume=10))
    struct.pack_into(">H", frame, 1, len(frame))  # big-endian, as one public client reads it
    await server.send_to_all(bytes(frame))
    (only,) = await take(client, 1)
    assert only.price == 2885.5
    assert client.packet_counts["length_mismatch"] == 1
