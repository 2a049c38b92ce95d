"""The ``history`` baseline: a minimal raw ASGI app doing the history endpoints' SQL, no Django.

``daphne bench.history_baseline:app`` (or uvicorn). ``GET /marketdata/intraday`` and
``GET /marketdata/daily`` with ``symbol``, ``exchange``, ``start_date`` and ``end_date``
(exchange-local dates, both included): the same two queries as ours (the instrument by
exchange and symbol, then its bars in the range ordered by time, limited) on one psycopg
async connection, and the same JSON document written with orjson. No auth, no validation
beyond what a query needs: the floor a framework-free service could reach.
"""

from __future__ import annotations

import datetime as dt
import os
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
import psycopg

LIMIT = 1000
INSTRUMENT_SQL = """
SELECT i.id, i.symbol, e.code, e.timezone
  FROM instruments_instrument i JOIN exchanges_exchange e ON e.id = i.exchange_id
 WHERE i.is_active AND e.is_active AND e.code = %s AND i.symbol = %s
 LIMIT 20
"""
INTRADAY_SQL = """
SELECT "timestamp", open, high, low, close, volume, previous_close, adj_close, delivery_percentage
  FROM marketdata_pricehistoryintraday
 WHERE instrument_id = %s AND interval = '1m' AND "timestamp" >= %s AND "timestamp" < %s
 ORDER BY "timestamp" LIMIT %s
"""
DAILY_SQL = """
SELECT date, open, high, low, close, volume, previous_close, adj_close, delivery_percentage
  FROM marketdata_pricehistorydaily
 WHERE instrument_id = %s AND date >= %s AND date <= %s
 ORDER BY date LIMIT %s
"""
FIELDS = ("timestamp", "open", "high", "low", "close", "volume", "previous_close", "adj_close", "delivery_percentage")


class _State:
    conn: psycopg.AsyncConnection | None = None


async def _connection() -> psycopg.AsyncConnection:
    if _State.conn is None or _State.conn.closed:
        from bench.environment import database_params

        params = database_params(os.environ["DATABASE_URL"])
        _State.conn = await psycopg.AsyncConnection.connect(**params, autocommit=True, options="-c TimeZone=UTC")
    return _State.conn


async def _send(send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"].rstrip("/")
    if path == "/floor":  # the server and ASGI floor, no work (see bench.floor)
        await _send(send, 200, b"{}")
        return
    if path not in ("/marketdata/intraday", "/marketdata/daily"):
        await _send(send, 404, b'{"detail":"Not found.","status_code":404}')
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    conn = await _connection()
    async with conn.cursor() as cur:
        await cur.execute(INSTRUMENT_SQL, (query.get("exchange", ""), query.get("symbol", "")))
        row = await cur.fetchone()
        if row is None:
            await _send(send, 404, b'{"detail":"Unknown symbol.","status_code":404}')
            return
        iid, symbol, exchange, tz = row
        zone = ZoneInfo(tz)
        first = dt.date.fromisoformat(query["start_date"])
        last = dt.date.fromisoformat(query["end_date"])
        if path == "/marketdata/intraday":
            start = dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(dt.UTC)
            end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
            await cur.execute(INTRADAY_SQL, (iid, start, end, LIMIT + 1))
            interval = "1m"
        else:
            await cur.execute(DAILY_SQL, (iid, first, last, LIMIT + 1))
            interval = "1d"
        rows = [dict(zip(FIELDS, r, strict=True)) for r in await cur.fetchall()]
    body = {
        "symbol": symbol,
        "exchange": exchange,
        "interval": interval,
        "timezone": tz,
        "results": rows[:LIMIT],
        "next": None,
    }
    await _send(send, 200, orjson.dumps(body, option=orjson.OPT_UTC_Z))
