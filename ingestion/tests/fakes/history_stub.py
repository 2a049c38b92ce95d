"""A local HTTP server answering Yahoo's and Dhan's price-history APIs in their real JSON shapes.

    with HistoryStub(dhan_token="t", dhan_client_id="c") as stub:
        stub.yahoo_symbol("AAPL", tz="America/New_York", open_time=time(9, 30), close_time=time(16))
        stub.yahoo_minutes("AAPL", {ts: (o, h, l, c, v), ...})
        stub.yahoo_days("AAPL", {date: (o, h, l, c, v, adj_close), ...}, dividends={date: 0.24})
        stub.dhan_minutes("NSE_EQ", "2885", {ts: (o, h, l, c, v), ...})
        stub.dhan_days("NSE_EQ", "2885", {date: (o, h, l, c, v)})
        provider.settings = {"rest_url": stub.url}          # Yahoo: the host yfinance's requests go to
        provider.settings = {"rest_url": stub.url + "/v2"}  # Dhan: the API base

Yahoo (what yfinance requests): ``GET /`` (the fc.yahoo.com cookie page; sets a cookie),
``GET /v1/test/getcrumb`` (a crumb), ``GET /v8/finance/chart/{symbol}`` with ``period1``,
``period2`` (epoch s), ``interval`` (1m or 1d) or ``range=1d`` (yfinance's time-zone probe).
Chart answers carry ``meta`` (exchangeTimezoneName, gmtoffset, currentTradingPeriod, and for
intraday requests ``tradingPeriods``), ``timestamp``, ``indicators.quote`` and for daily bars
``indicators.adjclose`` and ``events`` (dividends, splits); daily timestamps are the session's
open instant. A range without bars answers ``indicators: {"quote": [{}]}`` as Yahoo does; an
unknown symbol a 404 with ``chart.error``.

Dhan (v2): ``POST /v2/charts/intraday`` and ``/v2/charts/historical``, checked like the real
API (headers ``access-token``/``client-id``, body fields, date formats, at most 90 days per
intraday request, ``toDate`` exclusive for daily candles), answering parallel arrays.
Yahoo's 1-minute limits are enforced too: a request spanning more than 8 days, or starting
more than 30 days ago, gets Yahoo's 422 ``chart.error``.

``throttle(prefix, n)`` answers the next ``n`` requests whose path starts with ``prefix`` with
HTTP 429 (Dhan's body carries ``DH-904``). ``requests`` records every request.
"""

from __future__ import annotations

import json
import threading
import time as time_module
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
DHAN_MAX_INTRADAY_DAYS = 90
YAHOO_MINUTE_WINDOW_S = 8 * 86_400
YAHOO_MINUTE_KEPT_S = 30 * 86_400


@dataclass
class StubRequest:
    """One request the stub received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict | None
    status: int = 0


@dataclass
class YahooSymbol:
    """What the stub knows about one Yahoo symbol."""

    tz: str
    open_time: time
    close_time: time
    exchange_name: str = "NMS"
    currency: str = "USD"
    minutes: dict[int, tuple] = field(default_factory=dict)  # epoch s -> (o, h, l, c, v)
    days: dict[date, tuple] = field(default_factory=dict)  # date -> (o, h, l, c, v, adj_close)
    dividends: dict[date, float] = field(default_factory=dict)
    splits: dict[date, tuple[int, int]] = field(default_factory=dict)  # date -> (numerator, denominator)

    def instant(self, day: date, at: time) -> int:
        return int(datetime.combine(day, at, tzinfo=ZoneInfo(self.tz)).timestamp())


class HistoryStub:
    """A threaded HTTP server on 127.0.0.1 speaking both providers' history APIs."""

    def __init__(self, *, dhan_token: str, dhan_client_id: str) -> None:
        self.dhan_token = dhan_token
        self.dhan_client_id = dhan_client_id
        self.yahoo: dict[str, YahooSymbol] = {}
        self.dhan_intraday: dict[tuple[str, str], dict[int, tuple]] = {}
        self.dhan_daily: dict[tuple[str, str], dict[date, tuple]] = {}
        self.requests: list[StubRequest] = []
        self._throttles: list[list] = []  # [prefix, remaining]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- data ------------------------------------------------------------------------------------

    def yahoo_symbol(self, symbol: str, *, tz: str, open_time: time, close_time: time, **extra) -> YahooSymbol:
        self.yahoo[symbol] = YahooSymbol(tz=tz, open_time=open_time, close_time=close_time, **extra)
        return self.yahoo[symbol]

    def yahoo_minutes(self, symbol: str, bars: dict[int, tuple]) -> None:
        self.yahoo[symbol].minutes.update(bars)

    def yahoo_days(
        self,
        symbol: str,
        bars: dict[date, tuple],
        *,
        dividends: dict[date, float] | None = None,
        splits: dict[date, tuple[int, int]] | None = None,
    ) -> None:
        entry = self.yahoo[symbol]
        entry.days.update(bars)
        entry.dividends.update(dividends or {})
        entry.splits.update(splits or {})

    def dhan_minutes(self, segment: str, security_id: str, bars: dict[int, tuple]) -> None:
        self.dhan_intraday.setdefault((segment, security_id), {}).update(bars)

    def dhan_days(self, segment: str, security_id: str, bars: dict[date, tuple]) -> None:
        self.dhan_daily.setdefault((segment, security_id), {}).update(bars)

    def throttle(self, prefix: str, count: int) -> None:
        """Answer the next ``count`` requests under ``prefix`` with HTTP 429."""
        with self._lock:
            self._throttles.append([prefix, count])

    def requests_to(self, prefix: str) -> list[StubRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    # --- server ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def host(self) -> str:
        """``127.0.0.1:port``: the entry that lets a provider point at this stub (``PROVIDER_URL_ALLOWED_HOSTS``)."""
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_port}"

    def start(self) -> HistoryStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                stub._handle(self, "GET")

            def do_POST(self):
                stub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="history-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HistoryStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- dispatch --------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_unparsable": raw.decode(errors="replace")}
        request = StubRequest(
            method=method,
            path=parts.path,
            query=query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(request)
            throttled = False
            for entry in self._throttles:
                if entry[1] > 0 and parts.path.startswith(entry[0]):
                    entry[1] -= 1
                    throttled = True
                    break
        if throttled:
            if parts.path.startswith("/v2/"):
                status, payload = 429, _dhan_error("Rate_Limit", "DH-904", "Too many requests on server.")
            else:
                status, payload = 429, "Too Many Requests"
        elif method == "GET" and parts.path == "/":
            return self._send(handler, request, 200, "ok", cookie="A3=d=stub&S=stub; Path=/")
        elif method == "GET" and parts.path == "/v1/test/getcrumb":
            status, payload = 200, "stub-crumb"
        elif method == "GET" and parts.path.startswith("/v8/finance/chart/"):
            status, payload = self._yahoo_chart(parts.path.rsplit("/", 1)[1], query)
        elif method == "POST" and parts.path == "/v2/charts/intraday":
            status, payload = self._dhan(request, daily=False)
        elif method == "POST" and parts.path == "/v2/charts/historical":
            status, payload = self._dhan(request, daily=True)
        else:
            status, payload = 404, "<html>Not found</html>"
        self._send(handler, request, status, payload)

    @staticmethod
    def _send(handler, request: StubRequest, status: int, payload, cookie: str | None = None) -> None:
        request.status = status
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        if cookie:
            handler.send_header("Set-Cookie", cookie)
        handler.end_headers()
        handler.wfile.write(data)

    # --- Yahoo -----------------------------------------------------------------------------------

    def _yahoo_chart(self, symbol: str, query: dict[str, str]) -> tuple[int, dict]:
        entry = self.yahoo.get(symbol)
        if entry is None:
            return 404, {
                "chart": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
                }
            }
        interval = query.get("interval", "1d")
        if "range" in query:  # yfinance's time-zone probe: the latest day
            last = max(entry.days) if entry.days else None
            lo = entry.instant(last, entry.open_time) if last else 0
            return 200, self._yahoo_answer(symbol, entry, "1d", lo, lo + 1)
        try:
            lo, hi = int(query["period1"]), int(query["period2"])
        except (KeyError, ValueError):
            return 400, {"chart": {"result": None, "error": {"code": "Bad Request", "description": "Invalid input"}}}
        if interval not in {"1m", "1d"}:
            return 400, {
                "chart": {
                    "result": None,
                    "error": {"code": "Unprocessable Entity", "description": f"Invalid interval {interval}"},
                }
            }
        if interval == "1m":
            # Yahoo's own limits on 1-minute bars: at most 8 days per request, the last 30 days only.
            if hi - lo > YAHOO_MINUTE_WINDOW_S:
                return 422, _yahoo_error(
                    "Unprocessable Entity",
                    "Only 8 days worth of 1m granularity data are allowed to be fetched per request.",
                )
            if lo < time_module.time() - YAHOO_MINUTE_KEPT_S:
                return 422, _yahoo_error(
                    "Unprocessable Entity",
                    f"1m data not available for startTime={lo} and endTime={hi}. "
                    "The requested range must be within the last 30 days.",
                )
        return 200, self._yahoo_answer(symbol, entry, interval, lo, hi)

    def _yahoo_answer(self, symbol: str, entry: YahooSymbol, interval: str, lo: int, hi: int) -> dict:
        zone = ZoneInfo(entry.tz)
        now = datetime.now(UTC)
        offset = int(now.astimezone(zone).utcoffset().total_seconds())
        abbreviation = now.astimezone(zone).tzname()
        today = now.astimezone(zone).date()
        regular = {
            "timezone": abbreviation,
            "start": entry.instant(today, entry.open_time),
            "end": entry.instant(today, entry.close_time),
            "gmtoffset": offset,
        }
        meta = {
            "currency": entry.currency,
            "symbol": symbol,
            "exchangeName": entry.exchange_name,
            "fullExchangeName": entry.exchange_name,
            "instrumentType": "EQUITY",
            "firstTradeDate": 345479400,
            "regularMarketTime": int(now.timestamp()),
            "hasPrePostMarketData": True,
            "gmtoffset": offset,
            "timezone": abbreviation,
            "exchangeTimezoneName": entry.tz,
            "priceHint": 2,
            "currentTradingPeriod": {"pre": dict(regular), "regular": dict(regular), "post": dict(regular)},
            "dataGranularity": interval,
            "range": "",
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        result: dict = {"meta": meta}
        if interval == "1m":
            stamps = sorted(ts for ts in entry.minutes if lo <= ts < hi)
            rows = [entry.minutes[ts] for ts in stamps]
            days = sorted({datetime.fromtimestamp(ts, zone).date() for ts in stamps})
            meta["tradingPeriods"] = [
                [
                    {
                        "timezone": abbreviation,
                        "start": entry.instant(day, entry.open_time),
                        "end": entry.instant(day, entry.close_time),
                        "gmtoffset": offset,
                    }
                ]
                for day in days
            ]
        else:
            by_ts = {entry.instant(day, entry.open_time): day for day in entry.days}
            stamps = sorted(ts for ts in by_ts if lo <= ts < hi)
            rows = [entry.days[by_ts[ts]] for ts in stamps]
            events: dict = {}
            dividends = {
                str(entry.instant(day, entry.open_time)): {
                    "amount": amount,
                    "date": entry.instant(day, entry.open_time),
                }
                for day, amount in entry.dividends.items()
                if lo <= entry.instant(day, entry.open_time) < hi
            }
            splits = {
                str(entry.instant(day, entry.open_time)): {
                    "date": entry.instant(day, entry.open_time),
                    "numerator": numerator,
                    "denominator": denominator,
                    "splitRatio": f"{numerator}:{denominator}",
                }
                for day, (numerator, denominator) in entry.splits.items()
                if lo <= entry.instant(day, entry.open_time) < hi
            }
            if dividends:
                events["dividends"] = dividends
            if splits:
                events["splits"] = splits
            if events:
                result["events"] = events
        if not stamps:
            result["indicators"] = {"quote": [{}], "adjclose": [{}]} if interval == "1d" else {"quote": [{}]}
            return {"chart": {"result": [result], "error": None}}
        result["timestamp"] = stamps
        result["indicators"] = {
            "quote": [
                {
                    "open": [r[0] for r in rows],
                    "high": [r[1] for r in rows],
                    "low": [r[2] for r in rows],
                    "close": [r[3] for r in rows],
                    "volume": [r[4] for r in rows],
                }
            ]
        }
        if interval == "1d":
            result["indicators"]["adjclose"] = [{"adjclose": [r[5] for r in rows]}]
        return {"chart": {"result": [result], "error": None}}

    # --- Dhan ------------------------------------------------------------------------------------

    def _dhan(self, request: StubRequest, *, daily: bool) -> tuple[int, dict]:
        headers = request.headers
        if headers.get("access-token") != self.dhan_token or headers.get("client-id") != self.dhan_client_id:
            return 401, _dhan_error(
                "Invalid_Authentication",
                "DH-901",
                "Client ID or user generated access token is invalid or expired.",
            )
        body = request.body
        required = ["securityId", "exchangeSegment", "instrument", "fromDate", "toDate"]
        required += ["expiryCode"] if daily else ["interval"]
        if not isinstance(body, dict) or any(key not in body for key in required):
            return 400, _dhan_error("Input_Exception", "DH-905", f"Missing required fields: {required}")
        if not daily and str(body["interval"]) not in {"1", "5", "15", "25", "60"}:
            return 400, _dhan_error("Input_Exception", "DH-905", "Invalid interval")
        try:
            start, end = _dhan_instant(body["fromDate"]), _dhan_instant(body["toDate"])
        except (TypeError, ValueError):
            return 400, _dhan_error("Input_Exception", "DH-905", "Invalid date format")
        if end < start:
            return 400, _dhan_error("Input_Exception", "DH-905", "fromDate after toDate")
        if not daily and end - start > timedelta(days=DHAN_MAX_INTRADAY_DAYS):
            return 400, _dhan_error("Input_Exception", "DH-905", "Only 90 days of data can be polled at once")
        key = (body["exchangeSegment"], str(body["securityId"]))
        if daily:
            days = self.dhan_daily.get(key)
            if days is None:
                return 400, _dhan_error("Data_Error", "DH-907", "No data present")
            picked = sorted(day for day in days if start.date() <= day < end.date())
            stamps = [int(datetime.combine(day, time.min, tzinfo=IST).timestamp()) for day in picked]
            rows = [days[day] for day in picked]
        else:
            minutes = self.dhan_intraday.get(key)
            if minutes is None:
                return 400, _dhan_error("Data_Error", "DH-907", "No data present")
            stamps = sorted(ts for ts in minutes if start.timestamp() <= ts <= end.timestamp())
            rows = [minutes[ts] for ts in stamps]
        return 200, {
            "open": [r[0] for r in rows],
            "high": [r[1] for r in rows],
            "low": [r[2] for r in rows],
            "close": [r[3] for r in rows],
            "volume": [r[4] for r in rows],
            "timestamp": stamps,
        }


def _yahoo_error(code: str, description: str) -> dict:
    return {"chart": {"result": None, "error": {"code": code, "description": description}}}


def _dhan_error(kind: str, code: str, message: str) -> dict:
    return {"errorType": kind, "errorCode": code, "errorMessage": message}


def _dhan_instant(value: str) -> datetime:
    """Dhan's ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS``, in IST."""
    if not isinstance(value, str):
        raise TypeError(value)
    fmt = "%Y-%m-%d %H:%M:%S" if " " in value else "%Y-%m-%d"
    return datetime.strptime(value, fmt).replace(tzinfo=IST)
