"""Yahoo Finance price history through yfinance's ``Ticker.history``.

yfinance does the HTTP (cookie, crumb, the v8 chart API) and the parsing; this module picks
the arguments, paces the calls and turns the DataFrame into bars. Yahoo serves 1-minute bars
for the last 30 days, at most 8 days per request (other intraday intervals 60 days, hourly
730 days; only 1m and 1d are stored here): 1-minute ranges are clamped by the caller to the
last ``INTRADAY_LOOKBACK_DAYS`` exchange-local dates and fetched here in 7-day windows.

The endpoint: ``rest_url`` in the provider's settings (default Yahoo's own
``https://query2.finance.yahoo.com``). Any other value makes every request yfinance sends to a
``*.yahoo.com`` host (chart API, cookie and crumb pages) go to that base URL instead, path and
query kept: a Yahoo-compatible mirror, or the local stub the tests run.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import UTC, date, timedelta
from urllib.parse import urlsplit

import yfinance
from curl_cffi import requests as curl_requests
from django.conf import settings
from yfinance.exceptions import YFPricesMissingError, YFRateLimitError, YFTzMissingError

from .base import DailyBar, HistoryFetchError, IntradayBar, RateLimited, with_backoff
from .ratelimit import RateLimiter

logger = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://query2.finance.yahoo.com"
# Yahoo serves 1-minute bars for the last 30 days, at most 8 days per request. 29 local dates:
# the first one's midnight in a zone ahead of UTC (Tokyo, Kolkata) is still inside 30 days.
INTRADAY_LOOKBACK_DAYS = 29
INTRADAY_CHUNK_DAYS = 7
REQUEST_TIMEOUT_S = 30


class YahooSession(curl_requests.Session):
    """yfinance's usual browser-impersonating session, optionally sending Yahoo's hosts elsewhere."""

    def __init__(self, *, base_url: str | None = None) -> None:
        super().__init__(impersonate="chrome")
        self.base_url = base_url.rstrip("/") if base_url else None

    def request(self, method, url, *args, **kwargs):
        if self.base_url is not None:
            parts = urlsplit(url)
            if parts.hostname and (parts.hostname == "yahoo.com" or parts.hostname.endswith(".yahoo.com")):
                url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, url, *args, **kwargs)


_sessions: dict[str, YahooSession] = {}
_setup_lock = threading.Lock()
_configured = False


def _session_for(rest_url: str) -> YahooSession:
    """One session per endpoint and process: yfinance keeps its cookie and crumb with it."""
    global _configured
    with _setup_lock:
        if not _configured:
            # yfinance's caches (ticker time zones, cookies) under the project's data directory
            # rather than the user's home; errors raised rather than only logged.
            yfinance.set_tz_cache_location(str(settings.VAR_DIR / "yfinance"))
            yfinance.config.debug.hide_exceptions = False
            _configured = True
        if rest_url not in _sessions:
            base = None if rest_url.rstrip("/") == DEFAULT_REST_URL else rest_url
            _sessions[rest_url] = YahooSession(base_url=base)
        return _sessions[rest_url]


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


class YahooHistoryClient:
    """Fetches Yahoo bars for one Yahoo symbol at a time, paced by a shared rate limiter."""

    def __init__(self, *, rest_url: str, limiter: RateLimiter, backoff_s: float = 1.0) -> None:
        self.rest_url = rest_url or DEFAULT_REST_URL
        self.limiter = limiter
        self.backoff_s = backoff_s

    def _history(self, *, symbol: str, interval: str, start: date, end: date):
        """One ``Ticker.history`` call over the exchange-local dates [start, end]."""

        def fetch():
            self.limiter.acquire()
            ticker = yfinance.Ticker(symbol, session=_session_for(self.rest_url))
            try:
                return ticker.history(
                    interval=interval,
                    start=start.isoformat(),
                    end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                    auto_adjust=False,
                    actions=True,
                    prepost=False,
                    repair=False,
                    timeout=REQUEST_TIMEOUT_S,
                )
            except YFRateLimitError as exc:
                raise RateLimited(f"Yahoo: {exc}") from exc
            except YFTzMissingError as exc:
                raise HistoryFetchError(f"Yahoo does not know {symbol} (no time zone; delisted?)") from exc
            except YFPricesMissingError:
                return None  # no bars in the range (holidays, or before the listing)
            except Exception as exc:
                raise HistoryFetchError(f"Yahoo history of {symbol} failed: {exc}") from exc

        return with_backoff(fetch, what=f"Yahoo {symbol} {interval}", base_delay_s=self.backoff_s)

    def intraday(self, *, symbol: str, start: date, end: date) -> list[IntradayBar]:
        """1-minute bars of the regular session over the exchange-local dates [start, end]."""
        bars: list[IntradayBar] = []
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + timedelta(days=INTRADAY_CHUNK_DAYS - 1))
            frame = self._history(symbol=symbol, interval="1m", start=chunk_start, end=chunk_end)
            if frame is not None:
                for ts, row in frame.iterrows():
                    prices = [_number(row[c]) for c in ("Open", "High", "Low", "Close")]
                    if any(p is None for p in prices):
                        continue
                    open_, high, low, close = prices
                    bars.append(
                        IntradayBar(
                            ts=ts.to_pydatetime().astimezone(UTC),
                            open=open_,
                            high=high,
                            low=low,
                            close=close,
                            volume=int(_number(row["Volume"]) or 0),
                        )
                    )
            chunk_start = chunk_end + timedelta(days=1)
        return bars

    def daily(self, *, symbol: str, start: date, end: date) -> list[DailyBar]:
        """Daily bars (unadjusted OHLC, adjusted close, dividends, splits) over [start, end]."""
        frame = self._history(symbol=symbol, interval="1d", start=start, end=end)
        if frame is None:
            return []
        bars = []
        for ts, row in frame.iterrows():
            prices = [_number(row[c]) for c in ("Open", "High", "Low", "Close")]
            if any(p is None for p in prices):
                continue
            open_, high, low, close = prices
            dividend = _number(row.get("Dividends"))
            split = _number(row.get("Stock Splits"))
            bars.append(
                DailyBar(
                    day=ts.date(),  # the index is the exchange-local midnight of the trading date
                    open=open_,
                    high=high,
                    low=low,
                    close=close,
                    volume=int(_number(row["Volume"]) or 0),
                    adj_close=_number(row.get("Adj Close")),
                    dividend=dividend or None,
                    split=split or None,
                )
            )
        return bars
