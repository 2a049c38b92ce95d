"""URL routes of the marketdata app (with or without the trailing slash)."""

from django.urls import re_path

from marketdata.api.history import DailyHistoryApi, IntradayHistoryApi
from marketdata.api.live import LatestQuoteApi
from marketdata.api.snapshot import MarketSnapshotApi

urlpatterns = [
    re_path(r"^marketdata/intraday/?$", IntradayHistoryApi.as_view(), name="marketdata-intraday"),
    re_path(r"^marketdata/daily/?$", DailyHistoryApi.as_view(), name="marketdata-daily"),
    re_path(r"^marketdata/quote/?$", LatestQuoteApi.as_view(), name="marketdata-quote"),
    re_path(r"^marketdata/snapshot/?$", MarketSnapshotApi.as_view(), name="marketdata-snapshot"),
]
