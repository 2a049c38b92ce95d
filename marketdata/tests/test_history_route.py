"""The fast history route in front of Django answers exactly what the DRF views answer.

Each request goes through the real ASGI application (``marketapp.asgi.application``) and
through Django's own ASGI handler behind the same request-id middleware; status, body bytes
and every header must be equal. The route must have served the well-formed, authorized
requests itself and handed every other one to Django.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from asgiref.sync import sync_to_async
from rest_framework_simplejwt.tokens import AccessToken

from accounts.authentication import TOKEN_VERSION_CLAIM
from core.request_id import RequestIdMiddleware
from marketdata.api.history_query import encode_cursor
from marketdata.api.history_route import close_history_pool
from marketdata.tests.asgi_support import asgi_request
from marketdata.tests.conftest import session_minutes
from marketdata.tests.factories import PriceHistoryDailyFactory

pytestmark = pytest.mark.django_db(transaction=True)

APP_ORIGIN = "https://app.example.com"
DAY = dt.date(2024, 1, 15)


@pytest.fixture
async def route_pool():
    yield
    await close_history_pool()


@pytest.fixture
def apps(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP_ORIGIN]
    from marketapp.asgi import application, django_asgi_app

    route = application.app
    return application, RequestIdMiddleware(django_asgi_app), route


@pytest.fixture
def history(reliance_nse, reliance_bse, aapl):
    session_minutes(reliance_nse, day=DAY, rng=random.Random(7))
    session_minutes(reliance_nse, day=DAY + dt.timedelta(days=1), rng=random.Random(8))
    PriceHistoryDailyFactory.create_batch(40, instrument=reliance_nse, previous_close=99.0, adj_close=100.5)
    return reliance_nse


def _token(user, **claims) -> str:
    token = AccessToken.for_user(user)
    token[TOKEN_VERSION_CLAIM] = user.token_version
    for name, value in claims.items():
        token[name] = value
    return str(token)


def _bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Request-ID": "parity-1", **extra}


async def _compare(apps, path: str, query: str, headers: dict[str, str], *, served: bool) -> None:
    full, django_only, route = apps
    expected = await asgi_request(django_only, path, query=query, headers=headers)
    before = route.served
    answer = await asgi_request(full, path, query=query, headers=headers)
    assert (answer.status, answer.body) == (expected.status, expected.body), (path, query)
    assert answer.headers == expected.headers, (path, query)
    assert route.served == before + served, (path, query, expected.status, expected.body[:200])


GOOD = [
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15&end_date=2024-01-15"),
    ("/marketdata/intraday/", "symbol=RELIANCE&exchange=nse&start_date=2024-01-15&end_date=2024-01-16"),
    ("/marketdata/intraday", "symbol=NSE:RELIANCE&start_date=2024-01-15&end_date=2024-01-16&interval=5m"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15T10:00:00%2B05:30&interval=1h"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15T04:00:00Z&end_date=2024-01-15T05:00Z"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-16&interval=15m&limit=1000"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2023-01-01&end_date=2023-01-05"),
    ("/marketdata/daily", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-01&end_date=2024-03-01"),
    ("/marketdata/daily/", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-01&end_date=2024-03-01&interval=1w"),
    ("/marketdata/daily", "symbol=NSE:RELIANCE&start_date=2023-06-01&end_date=2024-06-01&interval=1mo"),
    ("/marketdata/daily", "symbol=RELIANCE&exchange=NSE&end_date=2024-02-01"),
    ("/marketdata/daily", f"symbol=RELIANCE&exchange=NSE&start_date=2024-01-01&cursor={encode_cursor(DAY)}"),
    ("/marketdata/daily", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-01&interval=1w&cursor=MjAyNC0wMS0wOA"),
    ("/marketdata/daily", "symbol=RELIANCE&exchange=NSE&interval=1d&interval=1w&end_date=2024-03-01"),  # the last
]

TO_DJANGO = [
    ("/marketdata/intraday", "symbol=RELIANCE"),  # ambiguous: NSE and BSE
    ("/marketdata/intraday", "symbol=NOPE&exchange=NSE"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-02-30"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15&limit=0"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15&limit=10"),  # a next link
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15&interval=2m"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2023-01-01&end_date=2024-01-01"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-15&cursor=%%%"),
    ("/marketdata/intraday", "symbol=RELIANCE&exchange=NSE"),  # today: live bars are merged by the view
    ("/marketdata/daily", "symbol=RELIANCE&exchange=NSE&start_date=2024-01-10&end_date=2024-01-01"),
    ("/marketdata/daily", "exchange=NSE"),
]


async def _warm(apps, token: str) -> None:
    """Django fills the per-process user and instrument caches the route reads from."""
    for query in ("symbol=RELIANCE&exchange=NSE", "symbol=RELIANCE&exchange=nse", "symbol=NSE:RELIANCE"):
        await asgi_request(apps[1], "/marketdata/daily", query=query, headers=_bearer(token))


async def test_well_formed_requests_are_served_by_the_route_with_django_s_bytes(apps, history, user, route_pool):
    token = await sync_to_async(_token)(user)
    await _warm(apps, token)
    for path, query in GOOD:
        await _compare(apps, path, query, _bearer(token), served=True)
    # CORS: an allowed origin gets its headers, a foreign one none; the request id is new when not sent.
    path, query = GOOD[0]
    await _compare(apps, path, query, _bearer(token, Origin=APP_ORIGIN), served=True)
    await _compare(apps, path, query, _bearer(token, Origin="https://evil.example"), served=True)
    answer = await asgi_request(apps[0], path, query=query, headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200
    assert len(answer.header("x-request-id")) == 32
    assert answer.header("access-control-allow-origin") is None


async def test_everything_else_is_answered_by_django(apps, history, user, route_pool):
    token = await sync_to_async(_token)(user)
    await _warm(apps, token)
    for path, query in TO_DJANGO:
        await _compare(apps, path, query, _bearer(token), served=False)
    path, query = GOOD[0]
    await _compare(apps, path, query, {"X-Request-ID": "anon"}, served=False)
    await _compare(apps, path, query, _bearer("not-a-jwt"), served=False)
    await _compare(apps, path, query, {"Authorization": f"Token {token}", "X-Request-ID": "t"}, served=False)
    await _compare(apps, path, query, {"Authorization": f"Bearer {token} extra", "X-Request-ID": "t"}, served=False)
    await _compare(apps, path, query, _bearer(token[:-3] + "abc"), served=False)  # bad signature
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-dt.timedelta(seconds=5))
    await _compare(apps, path, query, _bearer(str(expired)), served=False)
    # A preflight and a HEAD are Django's.
    preflight = {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET", "X-Request-ID": "pre"}
    full, django_only, _route = apps
    for method, headers in (("OPTIONS", preflight), ("HEAD", _bearer(token))):
        expected = await asgi_request(django_only, path, query=query, headers=headers, method=method)
        answer = await asgi_request(full, path, query=query, headers=headers, method=method)
        assert (answer.status, answer.headers, answer.body) == (expected.status, expected.headers, expected.body)


async def test_revoked_tokens_and_refused_users_are_never_served(apps, history, user, route_pool):
    token = await sync_to_async(_token)(user)
    await _warm(apps, token)
    path, query = GOOD[0]
    await _compare(apps, path, query, _bearer(token), served=True)
    # A token of an older token_version, while the user is in the cache: 401 from Django.
    stale = await sync_to_async(_token)(user, **{TOKEN_VERSION_CLAIM: user.token_version + 5})
    await _compare(apps, path, query, _bearer(stale), served=False)

    def revoke():
        user.token_version += 1
        user.save()

    await sync_to_async(revoke)()  # logout everywhere / password change: the cache entry goes
    await _compare(apps, path, query, _bearer(token), served=False)
    assert (await asgi_request(apps[0], path, query=query, headers=_bearer(token))).status == 401

    def pend():
        user.status = user.Status.PENDING
        user.save()

    fresh = await sync_to_async(_token)(user)
    await _warm(apps, fresh)
    await _compare(apps, path, query, _bearer(fresh), served=True)
    await sync_to_async(pend)()
    fresh = await sync_to_async(_token)(user)
    await _compare(apps, path, query, _bearer(fresh), served=False)
    assert (await asgi_request(apps[0], path, query=query, headers=_bearer(fresh))).status == 403


async def test_the_route_can_be_turned_off(apps, history, user, settings, route_pool):
    token = await sync_to_async(_token)(user)
    await _warm(apps, token)
    settings.HISTORY_FAST_ROUTE = False
    path, query = GOOD[0]
    await _compare(apps, path, query, _bearer(token), served=False)
