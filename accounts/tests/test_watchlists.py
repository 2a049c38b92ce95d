"""``/watchlists/``: each user's own lists, the default list, names and instruments kept unique."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from accounts import watchlists
from accounts.models import Watchlist, WatchlistItem
from accounts.tests.factories import UserFactory
from instruments.reference_data import DEMO_INSTRUMENTS
from instruments.tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0, stdout=io.StringIO())


@pytest.fixture
def other_client(db):
    """A second signed-in user (role admin, which must not matter for other people's lists)."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient()
    other = UserFactory(role="admin")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(other).access_token}")
    return client


def _symbols(watchlist: dict) -> list[str]:
    return [f"{item['exchange']}:{item['symbol']}" for item in watchlist["items"]]


def test_a_new_user_gets_the_default_list_of_demo_instruments_once(demo, user_api_client):
    first = user_api_client.get("/watchlists/")
    assert first.status_code == 200
    [default] = first.json()
    assert default["name"] == watchlists.DEFAULT_WATCHLIST_NAME
    assert _symbols(default) == [f"{spec['exchange']}:{spec['symbol']}" for spec in DEMO_INSTRUMENTS]
    aapl = next(item for item in default["items"] if item["symbol"] == "AAPL")
    assert (aapl["currency"], aapl["timezone"], aapl["tick_size"]) == ("USD", "America/New_York", "0.010000")
    # Asking again neither duplicates the list nor refills it after the user emptied it.
    user_api_client.delete(f"/watchlists/{default['id']}/items/{aapl['instrument_id']}")
    again = user_api_client.get("/watchlists/").json()
    assert [w["id"] for w in again] == [default["id"]]
    assert "NASDAQ:AAPL" not in _symbols(again[0])


def test_create_rename_add_remove_delete(demo, user_api_client):
    user_api_client.get("/watchlists/")
    created = user_api_client.post("/watchlists/", {"name": "  Tech   picks "}, format="json")
    assert created.status_code == 201, created.json()
    wl = created.json()
    assert (wl["name"], wl["items"]) == ("Tech picks", [])

    added = user_api_client.post(f"/watchlists/{wl['id']}/items", {"instrument": "NASDAQ:MSFT"}, format="json")
    assert added.status_code == 201, added.json()
    nvda = user_api_client.get("/instruments/?symbol=NVDA").json()["results"][0]["id"]
    added = user_api_client.post(f"/watchlists/{wl['id']}/items/", {"instrument": nvda}, format="json")
    assert _symbols(added.json()) == ["NASDAQ:MSFT", "NASDAQ:NVDA"]
    assert [item["position"] for item in added.json()["items"]] == [0, 1]

    renamed = user_api_client.patch(f"/watchlists/{wl['id']}", {"name": "US tech"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "US tech"

    removed = user_api_client.delete(f"/watchlists/{wl['id']}/items/{nvda}")
    assert removed.status_code == 204
    assert _symbols(user_api_client.get(f"/watchlists/{wl['id']}/").json()) == ["NASDAQ:MSFT"]
    assert user_api_client.delete(f"/watchlists/{wl['id']}/items/{nvda}").status_code == 404

    assert user_api_client.delete(f"/watchlists/{wl['id']}").status_code == 204
    assert not Watchlist.objects.filter(pk=wl["id"]).exists()
    assert not WatchlistItem.objects.filter(watchlist_id=wl["id"]).exists()


def test_names_are_unique_per_user_ignoring_case(demo, user_api_client, other_client):
    user_api_client.post("/watchlists/", {"name": "Banks"}, format="json")
    clash = user_api_client.post("/watchlists/", {"name": "BANKS"}, format="json")
    assert clash.status_code == 400
    assert clash.json()["errors"] == {"name": ["You already have a watchlist named 'BANKS'."]}
    # Another user may use the same name.
    assert other_client.post("/watchlists/", {"name": "banks"}, format="json").status_code == 201
    other = user_api_client.post("/watchlists/", {"name": "Other"}, format="json").json()
    rename = user_api_client.patch(f"/watchlists/{other['id']}", {"name": "banks"}, format="json")
    assert rename.status_code == 400 and "name" in rename.json()["errors"]
    # Renaming to its own name in another case is fine.
    assert user_api_client.patch(f"/watchlists/{other['id']}", {"name": "OTHER"}, format="json").status_code == 200


def test_an_instrument_is_listed_once(demo, user_api_client):
    wl = user_api_client.post("/watchlists/", {"name": "Once"}, format="json").json()
    first = user_api_client.post(f"/watchlists/{wl['id']}/items", {"instrument": "NSE:INFY"}, format="json")
    assert first.status_code == 201
    again = user_api_client.post(f"/watchlists/{wl['id']}/items", {"instrument": "nse:INFY"}, format="json")
    assert again.status_code == 400
    assert again.json()["errors"]["instrument"] == ["NSE:INFY is already on 'Once'."]
    assert WatchlistItem.objects.filter(watchlist_id=wl["id"]).count() == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"instrument": "RELIANCE"}, "listed on several exchanges"),
        ({"instrument": "NOPE"}, "Unknown symbol 'NOPE'."),
        ({"instrument": 987654321}, "No instrument with id 987654321."),
        ({"instrument": 2**70}, "No instrument with id"),
        ({"instrument": True}, "Give an instrument id or a symbol"),
        ({"instrument": ""}, "Give an instrument id or a symbol"),
        ({}, "This field is required."),
    ],
)
def test_bad_instruments_are_400s(demo, user_api_client, payload, message):
    wl = user_api_client.post("/watchlists/", {"name": "X"}, format="json").json()
    response = user_api_client.post(f"/watchlists/{wl['id']}/items", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["errors"]["instrument"][0]


def test_inactive_instruments_cannot_be_added(user_api_client):
    gone = InstrumentFactory(is_active=False)
    wl = user_api_client.post("/watchlists/", {"name": "X"}, format="json").json()
    response = user_api_client.post(f"/watchlists/{wl['id']}/items", {"instrument": gone.pk}, format="json")
    assert response.status_code == 400 and "is not active" in response.json()["errors"]["instrument"][0]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_bad_names_are_400s(user_api_client, name):
    response = user_api_client.post("/watchlists/", {"name": name}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_another_users_lists_are_404_for_every_operation(demo, user_api_client, other_client):
    mine = user_api_client.post("/watchlists/", {"name": "Mine"}, format="json").json()
    user_api_client.post(f"/watchlists/{mine['id']}/items", {"instrument": "NASDAQ:AAPL"}, format="json")
    aapl = user_api_client.get(f"/watchlists/{mine['id']}").json()["items"][0]["instrument_id"]
    base = f"/watchlists/{mine['id']}"
    # The admin role gives no access to other people's lists either.
    attempts = [
        other_client.get(base),
        other_client.patch(base, {"name": "Stolen"}, format="json"),
        other_client.delete(base),
        other_client.post(f"{base}/items", {"instrument": "NASDAQ:MSFT"}, format="json"),
        other_client.delete(f"{base}/items/{aapl}"),
    ]
    assert [r.status_code for r in attempts] == [404] * 5
    assert attempts[0].json() == {"detail": "No such watchlist.", "status_code": 404}
    assert mine["id"] not in [w["id"] for w in other_client.get("/watchlists/").json()]
    after = user_api_client.get(base).json()
    assert (after["name"], _symbols(after)) == ("Mine", ["NASDAQ:AAPL"])


def test_the_last_list_cannot_be_deleted(user_api_client):
    [only] = user_api_client.get("/watchlists/").json()
    response = user_api_client.delete(f"/watchlists/{only['id']}")
    assert response.status_code == 409
    assert "only watchlist" in response.json()["detail"]
    assert Watchlist.objects.filter(pk=only["id"]).exists()


def test_sign_in_is_required(api_client):
    assert api_client.get("/watchlists/").status_code == 401
    assert api_client.post("/watchlists/", {"name": "x"}, format="json").status_code == 401


def test_unknown_and_huge_ids_are_404s(user_api_client):
    assert user_api_client.get("/watchlists/999999").status_code == 404
    assert user_api_client.get(f"/watchlists/{2**63}").status_code == 404
    assert user_api_client.get(f"/watchlists/{10**30}").status_code == 404


def test_limits_on_lists_and_items(user_api_client, monkeypatch):
    monkeypatch.setattr(watchlists, "MAX_WATCHLISTS_PER_USER", 2)
    monkeypatch.setattr(watchlists, "MAX_ITEMS_PER_WATCHLIST", 1)
    user_api_client.get("/watchlists/")
    second = user_api_client.post("/watchlists/", {"name": "Second"}, format="json").json()
    third = user_api_client.post("/watchlists/", {"name": "Third"}, format="json")
    assert third.status_code == 400 and "At most 2 watchlists" in third.json()["errors"]["name"][0]
    one, two = InstrumentFactory(), InstrumentFactory()
    fits = user_api_client.post(f"/watchlists/{second['id']}/items", {"instrument": one.pk}, format="json")
    assert fits.status_code == 201
    full = user_api_client.post(f"/watchlists/{second['id']}/items", {"instrument": two.pk}, format="json")
    assert full.status_code == 400 and "at most 1 instruments" in full.json()["errors"]["instrument"][0]


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_visits_make_one_default_list():
    user = UserFactory()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def visit() -> None:
        try:
            barrier.wait()
            watchlists.watchlist_default_ensure(user=user)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=visit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert list(Watchlist.objects.filter(user=user).values_list("name", flat=True)) == ["Default"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_deletes_keep_one_list():
    user = UserFactory()
    lists = [watchlists.watchlist_create(user=user, name=f"L{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def delete(watchlist: Watchlist) -> None:
        try:
            barrier.wait()
            watchlists.watchlist_delete(watchlist=watchlist)
            outcomes.append("deleted")
        except watchlists.WatchlistLastError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=delete, args=(w,)) for w in lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["deleted", "refused"]
    assert Watchlist.objects.filter(user=user).count() == 1
