"""URL routes of the exchanges app, each with or without a trailing slash.

``/exchange/``, ``/exchange/{id}``, ``/exchange/{id}/holidays[/{holiday_id}]``,
``/exchange/{id}/calendar``, ``/exchange/{id}/status`` and ``/marketstatus``.
"""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from .api import ExchangeViewSet
from .calendar_api import ExchangeCalendarApi, ExchangeStatusApi, MarketStatusApi
from .holidays_api import ExchangeHolidayViewSet

router = SimpleRouter()
# The seed design writes both "/exchange/" and "/exchange/{id}"; accept either form without a redirect.
router.trailing_slash = "/?"
router.register("exchange", ExchangeViewSet, basename="exchange")
router.register(r"exchange/(?P<exchange_id>[0-9]+)/holidays", ExchangeHolidayViewSet, basename="exchange-holiday")

urlpatterns = [
    *router.urls,
    re_path(r"^exchange/(?P<exchange_id>[0-9]+)/calendar/?$", ExchangeCalendarApi.as_view(), name="exchange-calendar"),
    re_path(r"^exchange/(?P<exchange_id>[0-9]+)/status/?$", ExchangeStatusApi.as_view(), name="exchange-status"),
    re_path(r"^marketstatus/?$", MarketStatusApi.as_view(), name="market-status"),
]
