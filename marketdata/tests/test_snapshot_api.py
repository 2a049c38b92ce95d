"""``GET /marketdata/snapshot``: an exchange's or a watchlist's latest quotes, sorted server-side, one store read."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import redis
from django.conf import settings

from accounts.models import Watchlist, WatchlistItem
from ingestion.engine import Engine, InstrumentMeta
from instruments.tests.factories import InstrumentFactory
from marketdata.live.store import get_tick_store
from marketdata.live.types import Tick
from marketdata.tests.test_quote_api import expected, store_mode  # noqa: F401 - the fixture, both stores
from marketdata.tests.ws_support import now_ms

pytestmark = pytest.mark.django_db
SNAPSHOT = "/marketdata/snapshot"

# symbol -> (last price, previous close, size): change_percent +10, -5, +2, 0, -20
BOOK = {
    "AAA": (110.0, 100.0, 50),
    "BBB": (95.0, 100.0, 500),
    "CCC": (51.0, 50.0, 5),
    "DDD": (20.0, 20.0, 5000),
    "EEE": (8.0, 10.0, 1),
}


def write(instruments_prices: list[tuple]) -> Engine:
    """A real engine step over the configured store: ``[(instrument, price, prev_close, size), ...]``."""

    async def run():
        store = get_tick_store()
        engine = Engine(store=store)
        engine.set_instruments(
            InstrumentMeta(i.pk, i.symbol, i.exchange.code, i.exchange.timezone) for i, *_ in instruments_prices
        )
        ts = now_ms()
        await engine.process(
            [
                Tick(instrument_id=i.pk, provider="SIM", ts=ts, price=p, size=s, prev_close=pc)
                for i, p, pc, s in instruments_prices
            ]
        )
        if hasattr(store, "redis"):
            await store.close()
        return engine

    return asyncio.run(run())


@pytest.fixture
def book(nse):
    """Five NSE instruments with quotes, one streamed NSE instrument without, and one not streamed."""
    made = {symbol: InstrumentFactory(symbol=symbol, exchange=nse) for symbol in BOOK}
    made["QUIET"] = InstrumentFactory(symbol="QUIET", exchange=nse)
    made["OFF"] = InstrumentFactory(symbol="OFF", exchange=nse, record_data=False)
    made["GONE"] = InstrumentFactory(symbol="GONE", exchange=nse, delisted=True)
    made["BANNED"] = InstrumentFactory(symbol="BANNED", exchange=nse, blacklisted=True)
    return made


@pytest.fixture
def quoted(store_mode, book, aapl):  # noqa: F811
    unstreamed = [(book[s], 1.0, 1.0, 1) for s in ("OFF", "GONE", "BANNED")]
    return write([(book[s], *BOOK[s]) for s in BOOK] + unstreamed + [(aapl, 185.0, 180.0, 10)])


def symbols(response) -> list[str]:
    body = response.json()
    assert response.status_code == 200, body
    return [r["symbol"] for r in body["results"]]


def test_an_exchanges_streamed_quotes_in_the_quote_endpoints_fields(user_api_client, quoted, book):
    response = user_api_client.get(SNAPSHOT, {"exchange": "nse"})
    body = response.json()
    assert response.status_code == 200, body
    assert body["exchange"] == "NSE"
    assert body["as_of"].endswith("Z")
    # QUIET has no quote, OFF, GONE and BANNED are not streamed, AAPL is on another exchange.
    assert [r["symbol"] for r in body["results"]] == ["AAA", "BBB", "CCC", "DDD", "EEE"]
    assert body["count"] == body["total"] == 5
    assert body["results"][0] == expected(quoted, book["AAA"])
    quote = user_api_client.get("/marketdata/quote", {"symbols": "NSE:AAA"}).json()["quotes"][0]
    assert body["results"][0] == quote
    assert body["results"][0]["change_percent"] == pytest.approx(10.0)
    assert user_api_client.get(SNAPSHOT + "/", {"exchange": "NSE"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "order"),
    [
        ({"sort": "change_percent", "order": "desc"}, ["AAA", "CCC", "DDD", "BBB", "EEE"]),
        ({"sort": "change_percent"}, ["AAA", "CCC", "DDD", "BBB", "EEE"]),
        ({"sort": "change_percent", "order": "asc"}, ["EEE", "BBB", "DDD", "CCC", "AAA"]),
        ({"sort": "change", "order": "desc"}, ["AAA", "CCC", "DDD", "EEE", "BBB"]),
        ({"sort": "change", "order": "asc"}, ["BBB", "EEE", "DDD", "CCC", "AAA"]),
        ({"sort": "volume"}, ["DDD", "BBB", "AAA", "CCC", "EEE"]),
        ({"sort": "volume", "order": "asc"}, ["EEE", "CCC", "AAA", "BBB", "DDD"]),
        ({"sort": "symbol", "order": "desc"}, ["EEE", "DDD", "CCC", "BBB", "AAA"]),
        ({}, ["AAA", "BBB", "CCC", "DDD", "EEE"]),
    ],
)
def test_sorting(user_api_client, quoted, params, order):
    assert symbols(user_api_client.get(SNAPSHOT, {"exchange": "NSE", **params})) == order


def test_gainers_and_losers_with_a_limit(user_api_client, quoted):
    gainers = user_api_client.get(SNAPSHOT, {"exchange": "NSE", "sort": "change_percent", "order": "desc", "limit": 2})
    assert symbols(gainers) == ["AAA", "CCC"]
    assert (gainers.json()["count"], gainers.json()["total"]) == (2, 5)
    losers = user_api_client.get(SNAPSHOT, {"exchange": "NSE", "sort": "change_percent", "order": "asc", "limit": 2})
    assert symbols(losers) == ["EEE", "BBB"]
    assert symbols(user_api_client.get(SNAPSHOT, {"exchange": "NSE", "limit": 500})) == list(BOOK)


def test_quotes_without_a_change_go_last_either_way(user_api_client, store_mode, nse):  # noqa: F811
    up, down, flat = (InstrumentFactory(symbol=s, exchange=nse) for s in ("UP", "DOWN", "NOPREV"))
    write([(up, 11.0, 10.0, 1), (down, 9.0, 10.0, 1), (flat, 10.0, None, 1)])
    for order, first in (("desc", ["UP", "DOWN"]), ("asc", ["DOWN", "UP"])):
        got = symbols(user_api_client.get(SNAPSHOT, {"exchange": "NSE", "sort": "change_percent", "order": order}))
        assert got == [*first, "NOPREV"]


def test_a_watchlist_of_ones_own(user_api_client, quoted, book, aapl):
    watchlist = Watchlist.objects.create(user=user_api_client.user, name="Mine")
    for position, instrument in enumerate((book["BBB"], book["QUIET"], book["OFF"], aapl)):
        WatchlistItem.objects.create(watchlist=watchlist, instrument=instrument, position=position)
    body = user_api_client.get(SNAPSHOT, {"watchlist": watchlist.pk, "sort": "change_percent"}).json()
    # Every exchange; OFF is not streamed now but has a quote, QUIET has none.
    assert body["exchange"] is None
    assert [r["symbol"] for r in body["results"]] == ["AAPL", "OFF", "BBB"]
    narrowed = user_api_client.get(SNAPSHOT, {"watchlist": watchlist.pk, "exchange": "NSE"})
    assert symbols(narrowed) == ["BBB", "OFF"]
    assert narrowed.json()["exchange"] == "NSE"


def test_someone_elses_watchlist_is_404(user_api_client, quoted, book, django_user_model):
    other = django_user_model.objects.create_user(email="other@example.com", password="pw-other-12345")
    theirs = Watchlist.objects.create(user=other, name="Theirs")
    WatchlistItem.objects.create(watchlist=theirs, instrument=book["AAA"])
    for params in ({"watchlist": theirs.pk}, {"watchlist": theirs.pk, "exchange": "NSE"}, {"watchlist": 10**12}):
        response = user_api_client.get(SNAPSHOT, params)
        assert response.status_code == 404
        assert response.json()["status_code"] == 404


@pytest.mark.parametrize("code", ["NOPE", "NASDAQ"])
def test_unknown_or_inactive_exchange_is_404(user_api_client, nse, nasdaq, code):
    nasdaq.is_active = False
    nasdaq.save()
    response = user_api_client.get(SNAPSHOT, {"exchange": code})
    assert response.status_code == 404, response.json()
    assert response.json()["status_code"] == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "exchange"),
        ({"exchange": ""}, "exchange"),
        ({"exchange": "NSE", "sort": "price"}, "sort"),
        ({"exchange": "NSE", "order": "up"}, "order"),
        ({"exchange": "NSE", "limit": "0"}, "limit"),
        ({"exchange": "NSE", "limit": "501"}, "limit"),
        ({"exchange": "NSE", "limit": "ten"}, "limit"),
        ({"exchange": "NSE", "watchlist": "x"}, "watchlist"),
        ({"exchange": "NSE", "watchlist": "0"}, "watchlist"),
        ({"exchange": "NSE", "watchlist": str(2**63)}, "watchlist"),
        ({"exchange": "X" * 21}, "exchange"),
        ({"exchange": "NSE", "sort_by": "volume"}, "sort_by"),
    ],
)
def test_bad_params_are_400(user_api_client, nse, params, field):
    response = user_api_client.get(SNAPSHOT, params)
    body = response.json()
    assert response.status_code == 400, body
    assert body["status_code"] == 400 and field in body["errors"], body
    if field == "sort":
        assert "change_percent, change, volume, symbol" in body["errors"]["sort"][0]


def test_anonymous_is_401(api_client, nse):
    response = api_client.get(SNAPSHOT, {"exchange": "NSE"})
    assert response.status_code == 401
    assert response.json()["status_code"] == 401


def test_one_tick_store_round_trip_however_many_instruments(user_api_client, settings, nse):
    """With Redis, the whole snapshot is one command (HMGET md:q ...), watched with MONITOR."""
    from marketdata.tests.ws_support import redis_url

    settings.REDIS_URL = redis_url()
    asyncio.run(_flush())
    many = [InstrumentFactory(symbol=f"S{i:03}", exchange=nse) for i in range(120)]
    write([(i, 100.0 + n, 100.0, n + 1) for n, i in enumerate(many)])
    # Warm up: the reader's pooled connection selects its database when it connects.
    assert user_api_client.get(SNAPSHOT, {"exchange": "NSE"}).status_code == 200

    commands = _commands_during(lambda: user_api_client.get(SNAPSHOT, {"exchange": "NSE", "sort": "volume"}))
    response = commands.result
    assert response.status_code == 200 and response.json()["count"] == 120
    assert symbols(response)[:2] == ["S119", "S118"]
    assert len(commands) == 1, commands
    assert commands[0].startswith("HMGET md:q ")


async def _flush():
    store = get_tick_store()
    await store.redis.flushdb()
    await store.close()


class _Commands(list):
    result = None


def _commands_during(action) -> _Commands:
    """The commands Redis ran on the test database while ``action`` ran (MONITOR, fenced by ECHOs)."""
    url = settings.REDIS_URL
    db = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
    fence = uuid.uuid4().hex
    seen = _Commands()
    client = redis.Redis.from_url(url)
    started = threading.Event()

    with redis.Redis.from_url(url).monitor() as monitor:

        def watch():
            inside = False
            started.set()
            while True:
                cmd = monitor.next_command()
                text = cmd["command"]
                if text == f"ECHO begin-{fence}":
                    inside = True
                elif text == f"ECHO end-{fence}":
                    return
                elif inside and int(cmd["db"]) == int(db):
                    seen.append(text)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started.wait()
        client.echo(f"begin-{fence}")
        seen.result = action()
        client.echo(f"end-{fence}")
        watcher.join(timeout=10)
        assert not watcher.is_alive()
    return seen
