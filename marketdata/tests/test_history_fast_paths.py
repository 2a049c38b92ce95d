"""The history endpoints' fast paths give the same answers as the slow ones, and never stale ones."""

from __future__ import annotations

import datetime as dt

import pytest
from django.http import QueryDict

from marketdata import selectors
from marketdata.api.history_query import DailyQuerySerializer, IntradayQuerySerializer, fast_history_query
from marketdata.models import PriceHistoryIntraday
from marketdata.tests.factories import PriceHistoryDailyFactory, PriceHistoryIntradayFactory

pytestmark = pytest.mark.django_db

INTRADAY = "/marketdata/intraday"


def query(**params) -> QueryDict:
    q = QueryDict(mutable=True)
    q.update(params)
    return q


@pytest.mark.parametrize(
    "params",
    [
        {"symbol": "AAPL"},
        {"symbol": " NASDAQ:AAPL ", "exchange": " nasdaq "},
        {"symbol": "M&M", "exchange": "", "limit": "0005", "cursor": " abc "},
        {"symbol": "AAPL", "limit": " 5 "},
        {"symbol": "AAPL", "start_date": "2024-01-15", "end_date": "2024-01-15T10:00:00+05:30"},
        {"symbol": "AAPL", "start_date": "2024-01-15T09:15:00 05:30", "interval": "15m", "limit": "10000"},
        {"symbol": "A" * 100, "exchange": "X" * 20, "cursor": "c" * 200, "interval": "1h"},
    ],
)
@pytest.mark.parametrize("serializer", [IntradayQuerySerializer, DailyQuerySerializer])
def test_fast_query_equals_the_serializer_on_valid_input(params, serializer):
    if serializer is DailyQuerySerializer and "interval" in params:
        params = {**params, "interval": "1w"}
    q = query(**params)
    fast = fast_history_query(q, intraday=serializer is IntradayQuerySerializer)
    slow = serializer(data=q)
    assert slow.is_valid(), slow.errors
    assert fast == dict(slow.validated_data)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"symbol": "  "},
        {"symbol": "A" * 101},
        {"symbol": "x\x00y"},
        {"symbol": "AAPL", "limit": "0"},
        {"symbol": "AAPL", "limit": "10001"},
        {"symbol": "AAPL", "limit": "5.0"},
        {"symbol": "AAPL", "start_date": ""},
        {"symbol": "AAPL", "start_date": "2024-02-30"},
        {"symbol": "AAPL", "interval": " 1m"},
        {"symbol": "AAPL", "exchange": "X" * 21},
        {"symbol": "AAPL", "cursor": "c" * 201},
        {"symbol": "ÄPFEL"},
    ],
)
def test_anything_not_plainly_valid_goes_to_the_serializer(params):
    assert fast_history_query(query(**params), intraday=True) is None


def test_plain_sql_reads_equal_the_orm(aapl):
    bars = PriceHistoryIntradayFactory.create_batch(5, instrument=aapl, previous_close=99.5)
    start, end = bars[0].timestamp, bars[-1].timestamp + dt.timedelta(minutes=1)
    rows = selectors.intraday_bars(instrument=aapl, start=start, end=end, after=bars[0].timestamp, limit=3)
    orm = PriceHistoryIntraday.objects.filter(instrument=aapl, timestamp__gt=bars[0].timestamp)
    expected = [dict(zip(selectors.BAR_FIELDS, r, strict=True)) for r in orm.values_list(*selectors.BAR_FIELDS)[:3]]
    assert rows == expected
    assert all(r["timestamp"].utcoffset() == dt.timedelta(0) for r in rows)

    days = PriceHistoryDailyFactory.create_batch(4, instrument=aapl)
    daily = selectors.daily_bars(
        instrument=aapl, start_date=days[0].date, end_date=days[-1].date, after=days[0].date, limit=2
    )
    assert [r["timestamp"] for r in daily] == [days[1].date, days[2].date]
    assert daily[0]["close"] == days[1].close


def test_a_deactivated_instrument_is_not_served_from_the_cache(user_api_client, aapl):
    assert user_api_client.get(INTRADAY, {"symbol": "AAPL"}).status_code == 200
    aapl.is_active = False
    aapl.save()
    assert user_api_client.get(INTRADAY, {"symbol": "AAPL"}).status_code == 404


def test_a_new_listing_makes_a_cached_symbol_ambiguous(user_api_client, reliance_nse, bse):
    from instruments.tests.factories import InstrumentFactory

    assert user_api_client.get(INTRADAY, {"symbol": "RELIANCE"}).status_code == 200
    InstrumentFactory(symbol="RELIANCE", exchange=bse)
    response = user_api_client.get(INTRADAY, {"symbol": "RELIANCE"})
    assert response.status_code == 400
    assert "BSE" in response.json()["errors"]["symbol"][0]


def test_a_deactivated_user_is_not_served_from_the_cache(user_api_client, aapl):
    assert user_api_client.get(INTRADAY, {"symbol": "AAPL"}).status_code == 200
    user = user_api_client.user
    user.is_active = False
    user.save()
    assert user_api_client.get(INTRADAY, {"symbol": "AAPL"}).status_code == 401


def test_caches_can_be_turned_off(user_api_client, aapl, settings, django_assert_num_queries):
    settings.HISTORY_INSTRUMENT_CACHE_S = 0
    settings.HISTORY_AUTH_CACHE_S = 0
    user_api_client.get(INTRADAY, {"symbol": "AAPL", "start_date": "2024-01-15"})
    # user, instrument, bars: nothing cached
    with django_assert_num_queries(3):
        assert user_api_client.get(INTRADAY, {"symbol": "AAPL", "start_date": "2024-01-15"}).status_code == 200


def test_warm_caches_leave_one_query_per_request(user_api_client, aapl, django_assert_num_queries):
    user_api_client.get(INTRADAY, {"symbol": "AAPL", "start_date": "2024-01-15"})
    with django_assert_num_queries(1):
        assert user_api_client.get(INTRADAY, {"symbol": "AAPL", "start_date": "2024-01-15"}).status_code == 200
