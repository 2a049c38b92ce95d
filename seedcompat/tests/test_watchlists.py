"""Contract of the seed's watchlist routes under ``/seed/watchlist/``.

What the seed front end relies on: bare arrays, ``WatchlistInDb`` with ``items`` holding
instruments (``InstrumentInDb``, compat symbols), ``id`` in the create answer, a JSON body on
every success (``{"message"}`` for deletes), a text ``detail`` on every error, and only the
caller's own lists (another user's is a 404). Real PostgreSQL.
"""

from __future__ import annotations

import pytest

from accounts import watchlists
from accounts.models import Watchlist, WatchlistItem
from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db

WATCHLIST_KEYS = {"id", "user_id", "name", "show_on_dashboard", "exchange_id", "items"}
INSTRUMENT_KEYS = {
    "id",
    "symbol",
    "name",
    "exchange_id",
    "instrument_type_id",
    "sector_id",
    "blacklisted",
    "delisted",
    "should_record_data",
    "is_active",
}


@pytest.fixture
def nse():
    return ExchangeFactory(code="NSE", timezone="Asia/Kolkata")


@pytest.fixture
def bse():
    return ExchangeFactory(code="BSE", timezone="Asia/Kolkata")


@pytest.fixture
def tcs(nse):
    return InstrumentFactory(symbol="TCS", name="Tata Consultancy", exchange=nse)


@pytest.fixture
def infy(nse):
    return InstrumentFactory(symbol="INFY", exchange=nse, sector=None, record_data=False)


@pytest.fixture
def mine(user_api_client, nse, tcs, infy):
    """The user's list for NSE holding TCS then INFY."""
    watchlist = watchlists.watchlist_create(user=user_api_client.user, name="Tech")
    Watchlist.objects.filter(pk=watchlist.pk).update(exchange=nse)
    watchlist.refresh_from_db()
    watchlists.watchlist_item_add(watchlist=watchlist, instrument=tcs)
    watchlists.watchlist_item_add(watchlist=watchlist, instrument=infy)
    return watchlist


@pytest.fixture
def theirs(admin_user, tcs):
    watchlist = watchlists.watchlist_create(user=admin_user, name="Theirs")
    watchlists.watchlist_item_add(watchlist=watchlist, instrument=tcs)
    return watchlist


def _detail(response, code: int) -> str:
    assert response.status_code == code, response.content
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


# --- shapes ------------------------------------------------------------------------------------
def test_get_one_is_watchlist_in_db_with_instruments_as_items(user_api_client, mine, nse, tcs, infy):
    response = user_api_client.get(f"/seed/watchlist/{mine.pk}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == WATCHLIST_KEYS
    assert body["id"] == mine.pk
    assert body["user_id"] == user_api_client.user.pk
    assert body["name"] == "Tech"
    assert body["show_on_dashboard"] is False
    assert body["exchange_id"] == nse.pk
    assert [set(i) for i in body["items"]] == [INSTRUMENT_KEYS, INSTRUMENT_KEYS]
    assert body["items"][0] == {
        "id": tcs.pk,
        "symbol": "TCS",
        "name": "Tata Consultancy",
        "exchange_id": nse.pk,
        "instrument_type_id": tcs.instrument_type_id,
        "sector_id": tcs.sector_id,
        "blacklisted": False,
        "delisted": False,
        "should_record_data": True,
        "is_active": True,
    }
    assert body["items"][1]["symbol"] == "INFY"
    assert body["items"][1]["sector_id"] is None
    assert body["items"][1]["should_record_data"] is False


def test_items_use_compat_symbols_and_leave_out_hidden_instruments(user_api_client, mine, bse, tcs, infy):
    InstrumentFactory(symbol="TCS", exchange=bse)  # TCS is now on two exchanges
    infy.is_active = False
    infy.save()
    items = user_api_client.get(f"/seed/watchlist/{mine.pk}").json()["items"]
    assert [i["symbol"] for i in items] == ["TCS.NSE"]


def test_list_is_a_bare_array_of_the_callers_lists_oldest_first(user_api_client, mine, theirs):
    watchlists.watchlist_create(user=user_api_client.user, name="Later")
    response = user_api_client.get("/seed/watchlist/")
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list)
    assert [r["name"] for r in rows] == ["Tech", "Later"]
    assert all(set(r) == WATCHLIST_KEYS for r in rows)
    assert [i["symbol"] for i in rows[0]["items"]] == ["TCS", "INFY"]
    assert rows[1]["items"] == []
    assert user_api_client.get("/seed/watchlist").json() == rows


def test_a_new_user_gets_the_default_list_first(user_api_client):
    rows = user_api_client.get("/seed/watchlist").json()
    assert [r["name"] for r in rows] == [watchlists.DEFAULT_WATCHLIST_NAME]
    assert rows[0]["exchange_id"] is None
    assert rows[0]["show_on_dashboard"] is False


# --- create ------------------------------------------------------------------------------------
def test_create_as_the_front_end_sends_it(user_api_client, nse):
    response = user_api_client.post(
        "/seed/watchlist/", {"name": "Banks", "exchange_id": nse.pk, "show_on_dashboard": False}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == WATCHLIST_KEYS
    assert (body["name"], body["exchange_id"], body["show_on_dashboard"], body["items"]) == ("Banks", nse.pk, False, [])
    stored = Watchlist.objects.get(pk=body["id"])
    assert (stored.user, stored.exchange, stored.show_on_dashboard) == (user_api_client.user, nse, False)


def test_create_without_slash_and_with_the_dashboard_flag(user_api_client, nse):
    response = user_api_client.post("/seed/watchlist", {"name": "Pinned", "show_on_dashboard": True}, format="json")
    assert response.status_code == 201
    assert (response.json()["exchange_id"], response.json()["show_on_dashboard"]) == (None, True)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"exchange_id": 1, "show_on_dashboard": False}, 400),  # no name
        ({"name": "", "show_on_dashboard": False}, 400),
        ({"name": "   ", "show_on_dashboard": False}, 400),
        ({"name": 12}, 400),
        ({"name": "x" * 101}, 400),
        ({"name": "A", "exchange_id": "1"}, 400),
        ({"name": "A", "exchange_id": True}, 400),
        ({"name": "A", "exchange_id": 0}, 400),
        ({"name": "A", "exchange_id": 2**70}, 400),
        ({"name": "A", "exchange_id": 999_999}, 400),
        ({"name": "A", "show_on_dashboard": "yes"}, 400),
        ({"name": "A", "surprise": 1}, 400),
        (["name"], 400),
    ],
)
def test_create_refuses_bad_bodies_with_a_text_detail(user_api_client, body, status):
    _detail(user_api_client.post("/seed/watchlist/", body, format="json"), status)
    assert not Watchlist.objects.filter(user=user_api_client.user).exists()


def test_create_refuses_malformed_json(user_api_client):
    response = user_api_client.post("/seed/watchlist/", "{nope", content_type="application/json")
    _detail(response, 400)


def test_create_refuses_a_name_already_used_any_case(user_api_client, mine):
    detail = _detail(user_api_client.post("/seed/watchlist/", {"name": "TECH"}, format="json"), 400)
    assert "TECH" in detail


def test_create_refuses_an_inactive_exchange(user_api_client):
    closed = ExchangeFactory(code="OLD", is_active=False)
    _detail(user_api_client.post("/seed/watchlist/", {"name": "A", "exchange_id": closed.pk}, format="json"), 400)


# --- update ------------------------------------------------------------------------------------
def test_put_renames_as_the_front_end_sends_it(user_api_client, mine):
    response = user_api_client.put(f"/seed/watchlist/{mine.pk}", {"name": "Software"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == WATCHLIST_KEYS
    assert body["name"] == "Software"
    assert len(body["items"]) == 2
    mine.refresh_from_db()
    assert mine.name == "Software"


def test_put_sets_exchange_and_dashboard_flag(user_api_client, nse):
    watchlist = watchlists.watchlist_create(user=user_api_client.user, name="Empty")
    response = user_api_client.put(
        f"/seed/watchlist/{watchlist.pk}/", {"exchange_id": nse.pk, "show_on_dashboard": True}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["exchange_id"], response.json()["show_on_dashboard"]) == (
        "Empty",
        nse.pk,
        True,
    )
    response = user_api_client.put(f"/seed/watchlist/{watchlist.pk}", {"exchange_id": None}, format="json")
    assert response.json()["exchange_id"] is None


def test_put_refuses_an_exchange_other_than_the_items(user_api_client, mine, bse):
    detail = _detail(user_api_client.put(f"/seed/watchlist/{mine.pk}", {"exchange_id": bse.pk}, format="json"), 400)
    assert "NSE" in detail
    mine.refresh_from_db()
    assert mine.exchange.code == "NSE"


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"name": 5}, {"show_on_dashboard": 1}, {"exchange_id": "x"}, {"user_id": 9}, "text"],
)
def test_put_refuses_bad_bodies(user_api_client, mine, body):
    _detail(user_api_client.put(f"/seed/watchlist/{mine.pk}", body, format="json"), 400)
    mine.refresh_from_db()
    assert (mine.name, mine.show_on_dashboard) == ("Tech", False)


def test_put_refuses_a_name_already_used(user_api_client, mine):
    watchlists.watchlist_create(user=user_api_client.user, name="Other")
    _detail(user_api_client.put(f"/seed/watchlist/{mine.pk}", {"name": "other"}, format="json"), 400)


# --- dashboard ---------------------------------------------------------------------------------
def test_show_on_dashboard_route_and_the_dashboard_list(user_api_client, mine):
    other = watchlists.watchlist_create(user=user_api_client.user, name="Other")
    assert user_api_client.get("/seed/watchlist/dashboard").json() == []
    response = user_api_client.put(f"/seed/watchlist/show_on_dashboard/{mine.pk}?show_on_dashboard=true")
    assert response.status_code == 200
    assert set(response.json()) == WATCHLIST_KEYS
    assert response.json()["show_on_dashboard"] is True
    rows = user_api_client.get("/seed/watchlist/dashboard/").json()
    assert [r["id"] for r in rows] == [mine.pk]
    assert [i["symbol"] for i in rows[0]["items"]] == ["TCS", "INFY"]
    user_api_client.put(f"/seed/watchlist/show_on_dashboard/{mine.pk}/?show_on_dashboard=false")
    assert user_api_client.get("/seed/watchlist/dashboard").json() == []
    assert other.pk


@pytest.mark.parametrize("query", ["", "?show_on_dashboard=", "?show_on_dashboard=maybe"])
def test_show_on_dashboard_needs_a_boolean(user_api_client, mine, query):
    _detail(user_api_client.put(f"/seed/watchlist/show_on_dashboard/{mine.pk}{query}"), 400)


# --- delete ------------------------------------------------------------------------------------
def test_delete_answers_a_message(user_api_client, mine):
    keep = watchlists.watchlist_create(user=user_api_client.user, name="Keep")
    response = user_api_client.delete(f"/seed/watchlist/{mine.pk}")
    assert response.status_code == 200
    assert response.json() == {"message": "Watchlist deleted successfully"}
    assert list(Watchlist.objects.filter(user=user_api_client.user)) == [keep]


def test_the_last_list_cannot_be_deleted(user_api_client, mine):
    _detail(user_api_client.delete(f"/seed/watchlist/{mine.pk}/"), 409)
    assert Watchlist.objects.filter(pk=mine.pk).exists()


# --- items -------------------------------------------------------------------------------------
def test_add_item_answers_the_item_row(user_api_client, nse):
    watchlist = watchlists.watchlist_create(user=user_api_client.user, name="New")
    Watchlist.objects.filter(pk=watchlist.pk).update(exchange=nse)
    wipro = InstrumentFactory(symbol="WIPRO", exchange=nse)
    response = user_api_client.post(f"/seed/watchlist/{watchlist.pk}/items", {"instrument_id": wipro.pk}, format="json")
    assert response.status_code == 201
    item = WatchlistItem.objects.get(watchlist=watchlist)
    assert response.json() == {"id": item.pk, "instrument_id": wipro.pk, "watchlist_id": watchlist.pk}
    items = user_api_client.get(f"/seed/watchlist/{watchlist.pk}").json()["items"]
    assert [i["symbol"] for i in items] == ["WIPRO"]


def test_add_item_to_a_list_without_exchange_takes_any_exchange(user_api_client, bse):
    watchlist = watchlists.watchlist_create(user=user_api_client.user, name="Mixed")
    other = InstrumentFactory(symbol="SBIN", exchange=bse)
    response = user_api_client.post(
        f"/seed/watchlist/{watchlist.pk}/items/", {"instrument_id": other.pk}, format="json"
    )
    assert response.status_code == 201


def test_add_item_refuses_duplicates_and_other_exchanges(user_api_client, mine, tcs, bse):
    assert "already" in _detail(
        user_api_client.post(f"/seed/watchlist/{mine.pk}/items", {"instrument_id": tcs.pk}, format="json"), 400
    )
    foreign = InstrumentFactory(symbol="SBIN", exchange=bse)
    detail = _detail(
        user_api_client.post(f"/seed/watchlist/{mine.pk}/items", {"instrument_id": foreign.pk}, format="json"), 400
    )
    assert "BSE" in detail and "NSE" in detail
    assert mine.items.count() == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"instrument_id": "1"}, 400),
        ({"instrument_id": None}, 400),
        ({"instrument_id": -1}, 400),
        ({"instrument_id": 2**63}, 400),
        ({"instrument_id": 1, "extra": 1}, 400),
        ({"instrument_id": 999_999_999}, 404),
    ],
)
def test_add_item_refuses_bad_input(user_api_client, mine, body, status):
    _detail(user_api_client.post(f"/seed/watchlist/{mine.pk}/items", body, format="json"), status)


def test_add_item_refuses_an_inactive_instrument(user_api_client, mine, nse):
    gone = InstrumentFactory(symbol="GONE", exchange=nse, is_active=False)
    assert _detail(
        user_api_client.post(f"/seed/watchlist/{mine.pk}/items", {"instrument_id": gone.pk}, format="json"), 404
    ) == ("Instrument not found")


def test_remove_item_by_instrument_id(user_api_client, mine, tcs, infy):
    response = user_api_client.delete(f"/seed/watchlist/{mine.pk}/items/{tcs.pk}")
    assert response.status_code == 200
    assert response.json() == {"message": "Item removed from watchlist successfully"}
    assert [i.instrument_id for i in mine.items.all()] == [infy.pk]
    again = user_api_client.delete(f"/seed/watchlist/{mine.pk}/items/{tcs.pk}/")
    assert _detail(again, 404) == "Item not found in watchlist"


@pytest.mark.parametrize("instrument_id", ["0", "9223372036854775807", "9999999999999999999"])
def test_remove_item_of_impossible_ids_is_404(user_api_client, mine, instrument_id):
    _detail(user_api_client.delete(f"/seed/watchlist/{mine.pk}/items/{instrument_id}"), 404)


# --- permission matrix -------------------------------------------------------------------------
def _routes(watchlist_id: int, instrument_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("get", f"/seed/watchlist/{watchlist_id}", None),
        ("put", f"/seed/watchlist/{watchlist_id}", {"name": "Hijack"}),
        ("delete", f"/seed/watchlist/{watchlist_id}", None),
        ("post", f"/seed/watchlist/{watchlist_id}/items", {"instrument_id": instrument_id}),
        ("delete", f"/seed/watchlist/{watchlist_id}/items/{instrument_id}", None),
        ("put", f"/seed/watchlist/show_on_dashboard/{watchlist_id}?show_on_dashboard=true", None),
    ]


def test_anonymous_is_401_everywhere(api_client, theirs, tcs):
    routes = [("get", "/seed/watchlist/", None), ("post", "/seed/watchlist/", {"name": "A"})]
    routes += [("get", "/seed/watchlist/dashboard", None), *_routes(theirs.pk, tcs.pk)]
    for method, path, body in routes:
        response = getattr(api_client, method)(path, body, format="json")
        assert _detail(response, 401), path


def test_another_users_list_is_404_like_an_unknown_one(user_api_client, mine, theirs, tcs):
    for watchlist_id in (theirs.pk, 999_999_999, 2**63):
        for method, path, body in _routes(watchlist_id, tcs.pk):
            response = getattr(user_api_client, method)(path, body, format="json")
            assert _detail(response, 404) in {"Watchlist not found", "Not found."}, path
    theirs.refresh_from_db()
    assert (theirs.name, theirs.show_on_dashboard, theirs.items.count()) == ("Theirs", False, 1)
    assert [r["id"] for r in user_api_client.get("/seed/watchlist/").json()] == [mine.pk]


def test_non_numeric_ids_are_404(user_api_client, mine):
    for path in ("/seed/watchlist/abc", "/seed/watchlist/1.5/items", "/seed/watchlist/-1"):
        _detail(user_api_client.get(path), 404)
