"""The seed framing (``marketdata.seed_frames``) byte by byte, and the seed session's pure parts."""

from __future__ import annotations

import math
import struct

import orjson
import pytest

from marketdata.live.protocol import bar_payload, encode, quote_payload
from marketdata.live.types import Bar, Quote
from marketdata.seed_frames import (
    SeedBinarySnapshot,
    SeedUpdate,
    decode_binary,
    encode_binary_snapshot,
    encode_update,
    error_text,
    info_text,
    is_seed_message,
    iso_to_ms,
    pack_size,
    quote_update_fields,
    snapshot_text,
    update_head,
)
from marketdata.ws_seed import SeedEncoder, _HeadCache, candidate_names


@pytest.mark.parametrize("symbol", ["AAPL", "M&M", "^NSEI", "BRK.B", "ÄÖ株"])
def test_update_frame_layout_matches_the_specs_table(symbol):
    ts, price, volume, size = 1_714_555_200_123, 185.5, 123_456_789_012, 42
    frame = encode_update(symbol, ts, price, volume, size)
    raw = symbol.encode("utf-8")
    n = len(raw)
    assert len(frame) == n + 29
    assert frame[:n] == raw
    assert frame[n] == 0x00
    assert frame.find(b"\x00") == n  # the front end splits at the first NUL
    assert struct.unpack_from(">q", frame, n + 1)[0] == ts  # int64 BE, ms
    assert struct.unpack_from(">f", frame, n + 9)[0] == price  # float32 BE
    assert struct.unpack_from(">Q", frame, n + 13)[0] == volume  # uint64 BE, cumulative
    assert struct.unpack_from(">Q", frame, n + 21)[0] == size  # uint64 BE, delta
    assert len(frame) - (n + 1) == 28  # what the front end's decoder dispatches on


def test_the_bytes_of_one_frame_exactly():
    frame = encode_update("AB", 1, 1.0, 2, 3)
    assert frame == (
        b"AB\x00"
        + b"\x00\x00\x00\x00\x00\x00\x00\x01"  # ts
        + b"\x3f\x80\x00\x00"  # 1.0 as float32
        + b"\x00\x00\x00\x00\x00\x00\x00\x02"  # volume
        + b"\x00\x00\x00\x00\x00\x00\x00\x03"  # size
    )


def test_head_plus_size_is_the_whole_frame():
    assert update_head("AAPL", 5, 10.25, 7) + pack_size(3) == encode_update("AAPL", 5, 10.25, 7, 3)
    assert len(update_head("AAPL", 5, 10.25, 7)) == len("AAPL") + 21


def test_values_outside_the_wire_types_are_clamped_not_raised():
    frame = encode_update("X", 2**60, 1e39, -5, -1)
    update = decode_binary(frame)
    assert update.ts == 2**53  # the front end converts with Number()
    assert update.price == math.inf
    assert (update.volume, update.size) == (0, 0)
    assert decode_binary(encode_update("X", 0, 0.1, 0, 0)).price == struct.unpack(">f", struct.pack(">f", 0.1))[0]


def test_a_symbol_with_a_nul_cannot_be_framed():
    with pytest.raises(ValueError):
        encode_update("A\x00B", 1, 1.0, 0, 0)


def test_decode_mirrors_the_front_end():
    assert decode_binary(encode_update("RELIANCE", 10, 2500.5, 100, 5)) == SeedUpdate("RELIANCE", 10, 2500.5, 100, 5)
    snap = encode_binary_snapshot("AAPL", 10, open=1.0, high=2.0, low=0.5, close=1.5, prev_close=-1, volume=9)
    assert len(snap) == len("AAPL") + 37
    assert decode_binary(snap) == SeedBinarySnapshot("AAPL", 10, 1.0, 2.0, 0.5, 1.5, -1.0, 9)
    assert decode_binary(b"AAPL") is None  # no NUL: ignored
    assert decode_binary(encode_update("AAPL", 1, 1.0, 1, 1) + b"\x00") is None  # trailing byte: dropped


def test_the_json_snapshot_and_the_minus_one_pitfall():
    unknown = orjson.loads(snapshot_text("AAPL"))
    assert unknown == {"message_type": 10, "symbol": "AAPL", "prev_close": -1, "ltp": 0, "open": 0}
    known = orjson.loads(snapshot_text("AAPL", ltp=185.5, open=184.0, prev_close=183.25))
    assert known == {"message_type": 10, "symbol": "AAPL", "prev_close": 183.25, "ltp": 185.5, "open": 184.0}
    partial = orjson.loads(snapshot_text("X", ltp=1.5, open=None, prev_close=None))
    assert (partial["ltp"], partial["open"], partial["prev_close"]) == (1.5, 0, -1)
    assert orjson.loads(snapshot_text("X", ltp=float("nan")))["ltp"] == 0


def test_info_and_error_frames():
    assert orjson.loads(info_text("Unsubscribed from AAPL")) == {
        "message_type": 100,
        "message": "Unsubscribed from AAPL",
    }
    assert orjson.loads(error_text("Unknown symbol 'X'.", "X")) == {
        "message_type": 101,
        "message": "Unknown symbol 'X'.",
        "channel": "X",
    }
    assert orjson.loads(error_text("bad")) == {"message_type": 101, "message": "bad"}


@pytest.mark.parametrize(
    ("data", "seed"),
    [
        ({"message_type": 1, "channel": "AAPL"}, True),
        ({"message_type": 2}, True),
        ({"message_type": 99}, True),
        ({"message_type": "subscribe", "channel": "AAPL"}, False),
        ({"message_type": True}, False),
        ({"message_type": 1.0}, False),
        ({"channel": "AAPL"}, False),
        ([1], False),
        (None, False),
    ],
)
def test_what_negotiates_the_seed_protocol(data, seed):
    assert is_seed_message(data) is seed


def _quote(**fields) -> Quote:
    base = {"instrument_id": 1, "ts": 1_714_555_200_123, "last": 185.5, "open": 184.0, "high": 186.0, "low": 183.0}
    return Quote(**{**base, **fields})


def test_our_quote_update_to_the_seed_fields():
    text = encode(quote_payload(_quote(volume=1200, seq=3), "AAPL", "NASDAQ"))
    assert quote_update_fields(text) == (1_714_555_200_123, 185.5, 1200)
    bar = Bar(instrument_id=1, ts=1_714_555_200_000, open=1, high=1, low=1, close=1, volume=1)
    assert quote_update_fields(encode(bar_payload(bar, "AAPL", "NASDAQ", closed=False))) is None
    assert quote_update_fields("not json") is None
    assert iso_to_ms("2024-05-01T09:15:00.123Z") == 1_714_554_900_123
    assert iso_to_ms("1969-12-31T23:59:59.999Z") == -1


def test_the_size_is_the_volume_delta_per_connection_and_symbol():
    texts = [
        encode(quote_payload(_quote(volume=v, seq=i), "AAPL", "NASDAQ")) for i, v in enumerate((100, 130, 130, 50))
    ]
    first, second = SeedEncoder(), SeedEncoder()
    sizes = [decode_binary(first("AAPL", t)).size for t in texts]
    assert sizes == [0, 30, 0, 0]  # first update 0; a volume going down (a new session) is 0
    assert decode_binary(second("AAPL", texts[1])).size == 0  # another connection keeps its own count
    assert decode_binary(first("NASDAQ:AAPL", texts[0])).symbol == "NASDAQ:AAPL"


def test_one_head_per_symbol_string_and_update_however_many_connections():
    cache = _HeadCache(entries=2)
    text = encode(quote_payload(_quote(volume=10), "AAPL", "NASDAQ"))
    for _ in range(100):
        assert cache.get("AAPL", text) == (update_head("AAPL", 1_714_555_200_123, 185.5, 10), 10)
    assert cache.built == 1
    cache.get("NASDAQ:AAPL", text)
    cache.get("AAPL", "garbage")  # cached as "no frame" too
    cache.get("AAPL", text)  # from the old generation, not rebuilt
    assert cache.built == 3


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("AAPL", None, ["AAPL"]),
        ("NSE:RELIANCE", None, ["NSE:RELIANCE"]),
        ("RELIANCE.NSE", None, ["RELIANCE.NSE", "NSE:RELIANCE"]),
        ("BRK.B", None, ["BRK.B", "B:BRK"]),
        ("RELIANCE", "NSE", ["NSE:RELIANCE"]),
        ("RELIANCE.nse", "NSE", ["NSE:RELIANCE.nse", "NSE:RELIANCE"]),
        ("NSE:RELIANCE", "NSE", ["NSE:NSE:RELIANCE", "NSE:RELIANCE"]),
    ],
)
def test_candidate_names(name, code, expected):
    assert candidate_names(name, code) == expected
