"""``GET /marketdata/quote``: latest quotes from the tick store (Redis, and memory when embedded)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

import marketdata.live.store
from ingestion.engine import Engine, InstrumentMeta
from marketdata.live.protocol import encode, quote_payload
from marketdata.live.store import get_tick_store
from marketdata.tests.ws_support import redis_url, tick

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["redis", "memory"])
def store_mode(request, settings, monkeypatch):
    """Both tick stores: Redis (stack mode) and the process-wide memory store (embedded mode)."""
    if request.param == "redis":
        settings.REDIS_URL = redis_url()
        asyncio.run(_flush())
    else:
        settings.REDIS_URL = ""
        monkeypatch.setattr(marketdata.live.store, "_memory_store", None)
    return request.param


async def _flush():
    store = get_tick_store()
    await store.redis.flushdb()
    await store.close()


def write_quotes(*batches: list[tuple]) -> Engine:
    """Run a real engine over the configured tick store, one ``[(instrument, price), ...]`` batch at a time."""

    async def run():
        store = get_tick_store()
        engine = Engine(store=store)
        engine.set_instruments(
            InstrumentMeta(i.pk, i.symbol, i.exchange.code, i.exchange.timezone) for batch in batches for i, _ in batch
        )
        for batch in batches:
            await engine.process([tick(i, price) for i, price in batch])
        if hasattr(store, "redis"):
            await store.close()
        return engine

    return asyncio.run(run())


def expected(engine, instrument) -> dict:
    payload = orjson.loads(
        encode(quote_payload(engine.quotes[instrument.pk], instrument.symbol, instrument.exchange.code))
    )
    del payload["message_type"]
    return payload


def test_quotes_have_the_fields_of_data_messages(store_mode, user_api_client, aapl, reliance_nse):
    engine = write_quotes([(aapl, 185.5), (reliance_nse, 2900.0)])
    response = user_api_client.get("/marketdata/quote", {"symbols": "AAPL,NSE:RELIANCE"})
    assert response.status_code == 200
    body = response.json()
    assert body == {"quotes": [expected(engine, aapl), expected(engine, reliance_nse)], "errors": []}
    assert body["quotes"][0]["close"] == 185.5 and body["quotes"][0]["seq"] == 1
    assert user_api_client.get("/marketdata/quote/", {"symbols": "AAPL"}).status_code == 200


def test_unknown_ambiguous_and_quoteless_symbols_are_listed_in_errors(
    store_mode, user_api_client, aapl, reliance_nse, reliance_bse, nasdaq
):
    from instruments.tests.factories import InstrumentFactory

    InstrumentFactory(symbol="MSFT", exchange=nasdaq)
    engine = write_quotes([(aapl, 185.5)])
    response = user_api_client.get("/marketdata/quote", {"symbols": "AAPL, NOPE,RELIANCE,MSFT,AAPL"})
    assert response.status_code == 200
    body = response.json()
    assert body["quotes"] == [expected(engine, aapl)]
    codes = {e["symbol"]: e["code"] for e in body["errors"]}
    assert codes == {"NOPE": "unknown_symbol", "RELIANCE": "ambiguous_symbol", "MSFT": "no_quote"}
    ambiguous = next(e for e in body["errors"] if e["symbol"] == "RELIANCE")
    assert "BSE" in ambiguous["message"] and "NSE" in ambiguous["message"]


def test_404_when_no_symbol_is_known(store_mode, user_api_client):
    response = user_api_client.get("/marketdata/quote", {"symbols": "NOPE,ZILCH"})
    assert response.status_code == 404
    body = response.json()
    assert body["status_code"] == 404 and "NOPE" in body["detail"] and "ZILCH" in body["detail"]


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"symbols": ""},
        {"symbols": " , ,"},
        {"symbols": ",".join(f"S{i}" for i in range(101))},
        {"symbols": "A" * 101},
    ],
)
def test_bad_symbol_lists_are_400(user_api_client, query):
    response = user_api_client.get("/marketdata/quote", query)
    assert response.status_code == 400
    body = response.json()
    assert body["status_code"] == 400 and "symbols" in body["errors"]


def test_at_most_100_symbols_is_fine(store_mode, user_api_client, aapl):
    engine = write_quotes([(aapl, 10.0)])
    symbols = ["AAPL"] + [f"UNKNOWN{i}" for i in range(99)]
    response = user_api_client.get("/marketdata/quote", {"symbols": ",".join(symbols)})
    assert response.status_code == 200
    assert response.json()["quotes"] == [expected(engine, aapl)]
    assert len(response.json()["errors"]) == 99


def test_anonymous_is_401(api_client):
    response = api_client.get("/marketdata/quote", {"symbols": "AAPL"})
    assert response.status_code == 401
    assert response.json()["status_code"] == 401


def test_quotes_follow_the_latest_tick(store_mode, user_api_client, aapl):
    engine = write_quotes([(aapl, 100.0)], [(aapl, 101.0)])
    quote = user_api_client.get("/marketdata/quote", {"symbols": "AAPL"}).json()["quotes"][0]
    assert quote == expected(engine, aapl)
    assert (quote["close"], quote["high"], quote["low"], quote["seq"]) == (101.0, 101.0, 100.0, 2)


@pytest.mark.django_db
def test_a_nul_byte_in_a_symbol_is_an_unknown_symbol_not_a_500(user_api_client):
    response = user_api_client.get("/marketdata/quote", {"symbols": "AA\x00PL"})
    assert response.status_code == 404
    assert response.json()["status_code"] == 404
    history = user_api_client.get("/marketdata/intraday", {"symbol": "AA\x00PL"})
    assert history.status_code == 400 and "symbol" in history.json()["errors"]
