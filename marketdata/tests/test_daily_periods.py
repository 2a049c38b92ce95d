"""``GET /marketdata/daily?interval=1w|1mo``: weeks and months of the exchange-local trading dates."""

from __future__ import annotations

import datetime as dt
import random
from urllib.parse import parse_qs, urlsplit

import pytest
from django.http import QueryDict

from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory
from marketdata import selectors
from marketdata.api.history_query import DailyQuerySerializer, fast_history_query
from marketdata.models import PriceHistoryDaily
from marketdata.tests.factories import PriceHistoryDailyFactory

pytestmark = pytest.mark.django_db
DAILY = "/marketdata/daily"


@pytest.fixture
def nyse(db):
    return ExchangeFactory(code="NYSE", name="NYSE", timezone="America/New_York", currency="USD")


@pytest.fixture
def ibm(nyse):
    return InstrumentFactory(symbol="IBM", exchange=nyse)


def weekdays(start: dt.date, end: dt.date):
    day = start
    while day <= end:
        if day.weekday() < 5:
            yield day
        day += dt.timedelta(days=1)


def seed(instrument, start: dt.date, end: dt.date, *, seed: int = 1) -> list[dict]:
    """Random daily bars on the weekdays of [start, end]; returns them as the API's ``Bar`` dicts."""
    rng = random.Random(seed)
    rows = []
    for day in weekdays(start, end):
        open_ = round(100 + rng.random() * 20, 2)
        close = round(open_ + rng.uniform(-3, 3), 2)
        row = PriceHistoryDailyFactory(
            instrument=instrument,
            date=day,
            open=open_,
            high=round(max(open_, close) + rng.random(), 2),
            low=round(min(open_, close) - rng.random(), 2),
            close=close,
            volume=rng.randint(1, 1_000_000),
            previous_close=round(open_ - 0.5, 2) if rng.random() < 0.8 else None,
            adj_close=close if rng.random() < 0.5 else None,
            delivery_percentage=round(rng.uniform(10, 90), 2) if rng.random() < 0.5 else None,
        )
        rows.append({"timestamp": row.date, **{f: getattr(row, f) for f in selectors.BAR_FIELDS[1:]}})
    return rows


def reference(rows: list[dict], key) -> list[dict]:
    """The periods by hand: group by ``key(date)``, first open, last close, extremes, sum, first/last non-null."""
    groups: dict[dt.date, list[dict]] = {}
    for row in rows:
        groups.setdefault(key(row["timestamp"]), []).append(row)
    out = []
    for start, days in sorted(groups.items()):

        def non_null(field: str, days: list[dict] = days) -> list:
            return [d[field] for d in days if d[field] is not None]

        out.append(
            {
                "timestamp": start.isoformat(),
                "open": days[0]["open"],
                "high": max(d["high"] for d in days),
                "low": min(d["low"] for d in days),
                "close": days[-1]["close"],
                "volume": sum(d["volume"] for d in days),
                "previous_close": (non_null("previous_close") or [None])[0],
                "adj_close": (non_null("adj_close") or [None])[-1],
                "delivery_percentage": (non_null("delivery_percentage") or [None])[-1],
            }
        )
    return out


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def first_of_month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def test_weeks_and_months_across_a_month_boundary(user_api_client, reliance_nse):
    # Mon 2024-01-29 .. Fri 2024-02-02: one ISO week, two months.
    rows = seed(reliance_nse, dt.date(2024, 1, 29), dt.date(2024, 2, 2))
    query = {"symbol": "NSE:RELIANCE", "start_date": "2024-01-29", "end_date": "2024-02-02"}

    week = user_api_client.get(DAILY, {**query, "interval": "1w"}).json()
    assert (week["interval"], week["timezone"]) == ("1w", "Asia/Kolkata")
    assert week["results"] == reference(rows, monday)
    [only] = week["results"]
    assert only["timestamp"] == "2024-01-29"
    assert (only["open"], only["close"]) == (rows[0]["open"], rows[-1]["close"])
    assert only["volume"] == sum(r["volume"] for r in rows)

    month = user_api_client.get(DAILY, {**query, "interval": "1mo"}).json()
    assert month["interval"] == "1mo"
    assert [r["timestamp"] for r in month["results"]] == ["2024-01-01", "2024-02-01"]
    assert month["results"] == reference(rows, first_of_month)
    assert month["results"][0]["close"] == rows[2]["close"]  # Wed 31 Jan
    assert month["results"][1]["open"] == rows[3]["open"]  # Thu 1 Feb

    days = user_api_client.get(DAILY, {**query, "interval": "1d"}).json()
    assert days == user_api_client.get(DAILY, query).json() | {"next": None}
    assert [r["timestamp"] for r in days["results"]] == [r["timestamp"].isoformat() for r in rows]


def test_the_range_is_widened_to_whole_periods(user_api_client, aapl):
    rows = seed(aapl, dt.date(2024, 1, 1), dt.date(2024, 3, 31))
    # Wednesday 17 January .. Tuesday 13 February: weeks of 15 Jan .. 12 Feb, months January and February.
    query = {"symbol": "AAPL", "start_date": "2024-01-17", "end_date": "2024-02-13"}
    weeks = user_api_client.get(DAILY, {**query, "interval": "1w"}).json()["results"]
    inside = [r for r in rows if dt.date(2024, 1, 15) <= r["timestamp"] <= dt.date(2024, 2, 18)]
    assert weeks == reference(inside, monday)
    months = user_api_client.get(DAILY, {**query, "interval": "1mo"}).json()["results"]
    assert months == reference([r for r in rows if r["timestamp"].month in (1, 2)], first_of_month)


def test_weeks_follow_the_exchanges_zone(user_api_client, reliance_nse, ibm):
    """The same instant is Monday in Kolkata and still Sunday in New York: different weeks."""
    nse_rows = seed(reliance_nse, dt.date(2024, 1, 22), dt.date(2024, 2, 9), seed=2)
    nyse_rows = seed(ibm, dt.date(2024, 1, 22), dt.date(2024, 2, 9), seed=3)
    # 2024-01-28T20:00Z = Mon 29 Jan 01:30 IST = Sun 28 Jan 15:00 EST; the end is Fri 2 Feb 23:00 locally.
    window = {"interval": "1w", "start_date": "2024-01-28T20:00:00Z"}
    nse = user_api_client.get(
        DAILY, {"symbol": "NSE:RELIANCE", **window, "end_date": "2024-02-02T23:00:00+05:30"}
    ).json()
    nyse = user_api_client.get(DAILY, {"symbol": "NYSE:IBM", **window, "end_date": "2024-02-02T23:00:00-05:00"}).json()
    assert [r["timestamp"] for r in nse["results"]] == ["2024-01-29"]
    assert [r["timestamp"] for r in nyse["results"]] == ["2024-01-22", "2024-01-29"]
    nse_week = [r for r in nse_rows if dt.date(2024, 1, 29) <= r["timestamp"] <= dt.date(2024, 2, 4)]
    assert nse["results"] == reference(nse_week, monday)
    assert nyse["results"] == reference([r for r in nyse_rows if r["timestamp"] <= dt.date(2024, 2, 4)], monday)
    assert nyse["timezone"] == "America/New_York"


def test_a_period_with_no_trading_on_its_first_day_keeps_its_start_date(user_api_client, aapl):
    # 1 January 2024 is a holiday (no row), 1 June 2024 a Saturday.
    PriceHistoryDailyFactory(instrument=aapl, date=dt.date(2024, 1, 2), close=1.0)
    PriceHistoryDailyFactory(instrument=aapl, date=dt.date(2024, 6, 3), close=2.0)
    body = user_api_client.get(
        DAILY, {"symbol": "AAPL", "start_date": "2024-01-01", "end_date": "2024-06-30", "interval": "1mo"}
    ).json()
    assert [(r["timestamp"], r["close"]) for r in body["results"]] == [("2024-01-01", 1.0), ("2024-06-01", 2.0)]


@pytest.mark.parametrize("interval", ["1w", "1mo"])
def test_periods_page_with_the_cursor(user_api_client, aapl, interval):
    rows = seed(aapl, dt.date(2023, 1, 1), dt.date(2024, 12, 31))
    key = monday if interval == "1w" else first_of_month
    expected = reference(rows, key)
    params = {"symbol": "AAPL", "start_date": "2023-01-01", "end_date": "2024-12-31", "interval": interval, "limit": 7}
    got, pages, url = [], 0, None
    while True:
        if url is None:
            body = user_api_client.get(DAILY, params).json()
        else:
            body = user_api_client.get(DAILY, {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}).json()
        pages += 1
        got += body["results"]
        url = body["next"]
        if url is None:
            break
        assert parse_qs(urlsplit(url).query)["interval"] == [interval]
    assert got == expected
    assert pages == -(-len(expected) // 7)


def test_sql_and_python_aggregations_agree(aapl):
    seed(aapl, dt.date(2023, 11, 1), dt.date(2024, 3, 15), seed=7)
    qs = PriceHistoryDaily.objects.filter(instrument=aapl).order_by("date")
    rows = [dict(zip(selectors.BAR_FIELDS, r, strict=True)) for r in qs.values_list("date", *selectors.BAR_FIELDS[1:])]
    span = {"start_date": dt.date(2023, 11, 1), "end_date": dt.date(2024, 3, 15)}
    for interval in ("1w", "1mo"):
        sql = selectors.daily_bars(
            instrument=aapl,
            **span,
            interval=interval,
            limit=999,
        )
        assert sql == list(selectors.daily_aggregate(rows, interval=interval))
        after = sql[2]["timestamp"]
        paged = selectors.daily_bars(instrument=aapl, **span, interval=interval, after=after, limit=2)
        assert paged == sql[3:5]


@pytest.mark.parametrize("interval", ["1h", "5m", "1W", "week", "1M", "1d "])
def test_an_unsupported_interval_is_a_400_naming_the_allowed_ones(user_api_client, aapl, interval):
    response = user_api_client.get(DAILY, {"symbol": "AAPL", "interval": interval})
    body = response.json()
    assert response.status_code == 400, body
    assert body["status_code"] == 400 and "interval" in body["errors"]
    if interval:
        assert "1d, 1w, 1mo" in body["errors"]["interval"][0]


@pytest.mark.parametrize("interval", ["1d", "1w", "1mo"])
def test_fast_path_and_serializer_agree_on_daily_intervals(interval):
    q = QueryDict(mutable=True)
    q.update({"symbol": "AAPL", "interval": interval})
    slow = DailyQuerySerializer(data=q)
    assert slow.is_valid(), slow.errors
    assert fast_history_query(q, intraday=False) == dict(slow.validated_data)
    q["interval"] = "1h"
    assert fast_history_query(q, intraday=False) is None
    assert not DailyQuerySerializer(data=q).is_valid()


def test_anonymous_is_401(api_client, aapl):
    response = api_client.get(DAILY, {"symbol": "AAPL", "interval": "1w"})
    assert response.status_code == 401 and response.json()["status_code"] == 401
