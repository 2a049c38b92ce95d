"""Dhan price history over its v2 REST API (the calls dhanhq 2.x's ``HistoricalData`` makes).

``POST {rest_url}/charts/intraday`` (1-minute candles, at most 90 days per request) and
``POST {rest_url}/charts/historical`` (daily candles since listing; ``toDate`` is exclusive),
headers ``access-token`` and ``client-id``. Both answer parallel arrays
``{"open": [...], "high": [...], "low": [...], "close": [...], "volume": [...], "timestamp": [...]}``
with epoch-second timestamps: a candle's open instant, and for daily candles midnight IST of
the trading date. Errors come as ``{"errorType", "errorCode", "errorMessage"}``; HTTP 429 or
``DH-904`` means too many requests.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from .base import DailyBar, HistoryFetchError, IntradayBar, RateLimited, with_backoff
from .ratelimit import RateLimiter

logger = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.dhan.co/v2"
INTRADAY_CHUNK_DAYS = 90
IST = ZoneInfo("Asia/Kolkata")
REQUEST_TIMEOUT_S = (10, 60)
RATE_LIMIT_CODES = {"DH-904"}
_FIELDS = ("open", "high", "low", "close", "volume", "timestamp")

# Our instrument type -> the "instrument" Dhan's chart API expects.
DHAN_INSTRUMENTS = {"EQ": "EQUITY", "ETF": "EQUITY", "INDEX": "INDEX"}


class DhanHistoryClient:
    """Fetches Dhan candles for one security at a time, paced by a shared rate limiter."""

    def __init__(
        self,
        *,
        rest_url: str,
        access_token: str,
        client_id: str,
        limiter: RateLimiter,
        backoff_s: float = 1.0,
    ) -> None:
        self.rest_url = (rest_url or DEFAULT_REST_URL).rstrip("/")
        self.limiter = limiter
        self.backoff_s = backoff_s
        self.http = requests.Session()
        self.http.headers.update(
            {
                "access-token": access_token,
                "client-id": client_id,
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )

    def _post(self, path: str, body: dict) -> dict:
        what = f"Dhan {path} {body.get('exchangeSegment')}/{body.get('securityId')}"

        def fetch() -> dict:
            self.limiter.acquire()
            try:
                response = self.http.post(self.rest_url + path, json=body, timeout=REQUEST_TIMEOUT_S)
            except requests.RequestException as exc:
                raise HistoryFetchError(f"{what}: {exc}") from exc
            try:
                payload = response.json()
            except ValueError:
                payload = None
            error = payload if isinstance(payload, dict) and "errorCode" in payload else None
            if response.status_code == 429 or (error and error.get("errorCode") in RATE_LIMIT_CODES):
                retry_after = response.headers.get("Retry-After")
                raise RateLimited(
                    f"{what}: too many requests",
                    retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
                )
            if response.status_code >= 400 or error:
                detail = (error or {}).get("errorMessage") or response.text[:200]
                code = (error or {}).get("errorCode", "")
                raise HistoryFetchError(f"{what}: HTTP {response.status_code} {code} {detail}".strip())
            if not isinstance(payload, dict):
                raise HistoryFetchError(f"{what}: the answer is not a JSON object")
            return payload

        return with_backoff(fetch, what=what, base_delay_s=self.backoff_s)

    @staticmethod
    def _columns(payload: dict, what: str) -> list[tuple]:
        """The parallel arrays zipped into rows; an empty answer ({} or empty arrays) is no candles."""
        if not payload or not payload.get("timestamp"):
            return []
        try:
            columns = [payload[name] for name in _FIELDS]
        except KeyError as exc:
            raise HistoryFetchError(f"{what}: answer lacks {exc.args[0]!r}") from None
        if len({len(column) for column in columns}) != 1:
            raise HistoryFetchError(f"{what}: arrays of different lengths")
        return list(zip(*columns, strict=True))

    def intraday(self, *, security_id: str, segment: str, instrument: str, start: date, end: date) -> list[IntradayBar]:
        """1-minute candles over the IST dates [start, end], in requests of at most 90 days."""
        bars: list[IntradayBar] = []
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + timedelta(days=INTRADAY_CHUNK_DAYS - 1))
            body = {
                "securityId": security_id,
                "exchangeSegment": segment,
                "instrument": instrument,
                "interval": "1",
                "oi": False,
                "fromDate": f"{chunk_start.isoformat()} 00:00:00",
                "toDate": f"{(chunk_end + timedelta(days=1)).isoformat()} 00:00:00",
            }
            payload = self._post("/charts/intraday", body)
            for open_, high, low, close, volume, ts in self._columns(payload, f"Dhan intraday {security_id}"):
                bars.append(
                    IntradayBar(
                        ts=datetime.fromtimestamp(int(ts), UTC),
                        open=float(open_),
                        high=float(high),
                        low=float(low),
                        close=float(close),
                        volume=int(volume or 0),
                    )
                )
            chunk_start = chunk_end + timedelta(days=1)
        return bars

    def daily(self, *, security_id: str, segment: str, instrument: str, start: date, end: date) -> list[DailyBar]:
        """Daily candles over the IST dates [start, end]."""
        body = {
            "securityId": security_id,
            "exchangeSegment": segment,
            "instrument": instrument,
            "expiryCode": 0,
            "oi": False,
            "fromDate": start.isoformat(),
            "toDate": (end + timedelta(days=1)).isoformat(),
        }
        payload = self._post("/charts/historical", body)
        return [
            DailyBar(
                day=datetime.fromtimestamp(int(ts), IST).date(),
                open=float(open_),
                high=float(high),
                low=float(low),
                close=float(close),
                volume=int(volume or 0),
            )
            for open_, high, low, close, volume, ts in self._columns(payload, f"Dhan daily {security_id}")
        ]
