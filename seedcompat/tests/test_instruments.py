"""Contract of the seed's instrument routes under ``/seed/instrument/...``, on real PostgreSQL."""

from __future__ import annotations

import pytest

from exchanges.tests.factories import ExchangeFactory
from ingestion.tests.factories import ProviderInstrumentMappingFactory
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory, SectorFactory
from marketdata.models import PriceHistoryDaily
from marketdata.tests.factories import PriceHistoryDailyFactory

pytestmark = pytest.mark.django_db

FIELDS = [
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
]


@pytest.fixture
def nse():
    return ExchangeFactory(code="NSE")


@pytest.fixture
def bse():
    return ExchangeFactory(code="BSE")


@pytest.fixture
def eq():
    return InstrumentTypeFactory(code="EQ", name="Equity")


@pytest.fixture
def index_type():
    return InstrumentTypeFactory(code="INDEX", name="Index")


def assert_error(response, code: int) -> None:
    assert response.status_code == code, response.content
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_instrument_in_db_shape_field_by_field(user_api_client, nse, eq):
    sector = SectorFactory()
    inst = InstrumentFactory(
        symbol="RELIANCE", name="Reliance", exchange=nse, instrument_type=eq, sector=sector, record_data=False
    )
    body = user_api_client.get(f"/seed/instrument/{inst.pk}").json()
    assert list(body) == FIELDS
    assert body == {
        "id": inst.pk,
        "symbol": "RELIANCE",
        "name": "Reliance",
        "exchange_id": nse.pk,
        "instrument_type_id": eq.pk,
        "sector_id": sector.pk,
        "blacklisted": False,
        "delisted": False,
        "should_record_data": False,
        "is_active": True,
    }
    assert user_api_client.get(f"/seed/instrument/{inst.pk}/").json() == body


def test_exchange_list_filters_orders_and_is_a_bare_array(user_api_client, nse, bse, eq, index_type):
    b = InstrumentFactory(symbol="BBB", exchange=nse, instrument_type=eq, record_data=True)
    a = InstrumentFactory(symbol="AAA", exchange=nse, instrument_type=eq, record_data=False)
    idx = InstrumentFactory(symbol="^NSEI", exchange=nse, instrument_type=index_type, record_data=True)
    InstrumentFactory(symbol="HIDDEN", exchange=nse, instrument_type=eq, is_active=False)
    InstrumentFactory(symbol="OTHER", exchange=bse, instrument_type=eq)

    rows = user_api_client.get("/seed/instrument/list/NSE").json()
    assert [r["symbol"] for r in rows] == ["AAA", "BBB", "^NSEI"]
    assert [r["id"] for r in user_api_client.get("/seed/instrument/list/nse/").json()] == [a.pk, b.pk, idx.pk]
    stocks = user_api_client.get(f"/seed/instrument/list/NSE?instrument_type_id={eq.pk}&recording_only=true").json()
    assert [r["id"] for r in stocks] == [b.pk]
    indices = user_api_client.get(f"/seed/instrument/list/NSE?instrument_type_id={index_type.pk}").json()
    assert [r["id"] for r in indices] == [idx.pk]
    assert [r["symbol"] for r in user_api_client.get("/seed/instrument/list/NSE?recording_only=true").json()] == [
        "BBB",
        "^NSEI",
    ]
    desc = user_api_client.get("/seed/instrument/list/NSE?order_by=desc&limit=2").json()
    assert [r["symbol"] for r in desc] == ["^NSEI", "BBB"]


def test_exchange_list_admin_sees_hidden_and_bad_input(user_api_client, admin_api_client, nse, eq):
    InstrumentFactory(symbol="HIDDEN", exchange=nse, instrument_type=eq, is_active=False)
    assert [r["symbol"] for r in admin_api_client.get("/seed/instrument/list/NSE").json()] == ["HIDDEN"]
    assert_error(user_api_client.get("/seed/instrument/list/NOPE"), 404)
    assert user_api_client.get("/seed/instrument/list/NOPE").json()["detail"] == "Invalid or Unsupported exchange code"
    assert_error(user_api_client.get("/seed/instrument/list/NSE?instrument_type_id=abc"), 400)
    assert_error(user_api_client.get("/seed/instrument/list/NSE?instrument_type_id=99999999999999999999"), 400)
    assert_error(user_api_client.get("/seed/instrument/list/NSE?recording_only=maybe"), 400)
    assert_error(user_api_client.get("/seed/instrument/list/NSE?limit=0"), 400)
    assert_error(user_api_client.get("/seed/instrument/list/NSE?order_by=up"), 400)


def test_by_symbol_takes_raw_segments_and_compat_symbols(user_api_client, admin_api_client, nse, bse, eq):
    mm = InstrumentFactory(symbol="M&M", exchange=nse, instrument_type=eq)
    idx = InstrumentFactory(symbol="^NSEI", exchange=nse, instrument_type=eq)
    brk = InstrumentFactory(symbol="BRK.B", exchange=nse, instrument_type=eq)
    x_nse = InstrumentFactory(symbol="XYZ", exchange=nse, instrument_type=eq)
    x_bse = InstrumentFactory(symbol="XYZ", exchange=bse, instrument_type=eq)
    hidden = InstrumentFactory(symbol="GONE", exchange=nse, instrument_type=eq, is_active=False)

    assert user_api_client.get("/seed/instrument/by-symbol/M&M").json()["id"] == mm.pk
    assert user_api_client.get("/seed/instrument/by-symbol/^NSEI").json()["id"] == idx.pk
    assert user_api_client.get("/seed/instrument/by-symbol/%5ENSEI").json()["id"] == idx.pk
    assert user_api_client.get("/seed/instrument/by-symbol/BRK.B").json()["id"] == brk.pk
    assert user_api_client.get("/seed/instrument/by-symbol/BRK.B/").json()["id"] == brk.pk

    body = user_api_client.get("/seed/instrument/by-symbol/XYZ.BSE").json()
    assert (body["id"], body["symbol"]) == (x_bse.pk, "XYZ.BSE")
    assert user_api_client.get("/seed/instrument/by-symbol/NSE:XYZ").json()["symbol"] == "XYZ.NSE"
    assert user_api_client.get("/seed/instrument/by-symbol/XYZ.NSE").json()["id"] == x_nse.pk
    assert_error(user_api_client.get("/seed/instrument/by-symbol/XYZ"), 400)  # ambiguous, names both

    assert_error(user_api_client.get("/seed/instrument/by-symbol/GONE"), 404)
    assert user_api_client.get("/seed/instrument/by-symbol/GONE").json()["detail"] == "Instrument not found"
    assert admin_api_client.get("/seed/instrument/by-symbol/GONE").json()["id"] == hidden.pk
    assert_error(user_api_client.get("/seed/instrument/by-symbol/NOPE"), 404)


def test_symbol_collisions_are_one_to_one_in_every_list(user_api_client, nse, bse, eq):
    InstrumentFactory(symbol="XYZ", exchange=nse, instrument_type=eq)
    InstrumentFactory(symbol="XYZ", exchange=bse, instrument_type=eq)
    InstrumentFactory(symbol="SOLO", exchange=bse, instrument_type=eq)
    assert [r["symbol"] for r in user_api_client.get("/seed/instrument/list/BSE").json()] == ["SOLO", "XYZ.BSE"]
    found = user_api_client.get("/seed/instrument/search?query=xyz").json()
    assert sorted(r["symbol"] for r in found) == ["XYZ.BSE", "XYZ.NSE"]
    for row in found:
        assert user_api_client.get(f"/seed/instrument/by-symbol/{row['symbol']}").json()["id"] == row["id"]


def test_details_by_exchange_and_symbol(user_api_client, nse, eq):
    inst = InstrumentFactory(symbol="TCS", exchange=nse, instrument_type=eq)
    assert user_api_client.get("/seed/instrument/details/NSE:TCS").json()["id"] == inst.pk
    assert user_api_client.get("/seed/instrument/details/nse:tcs/").json()["id"] == inst.pk
    assert_error(user_api_client.get("/seed/instrument/details/TCS"), 400)
    assert_error(user_api_client.get("/seed/instrument/details/ZZZ:TCS"), 404)
    assert_error(user_api_client.get("/seed/instrument/details/NSE:NOPE"), 404)


def test_search_ranked_limited_and_across_exchanges(user_api_client, nse, bse, eq):
    InstrumentFactory(symbol="INFYX", name="Other", exchange=nse, instrument_type=eq)
    exact = InstrumentFactory(symbol="INFY", name="Infosys", exchange=bse, instrument_type=eq)
    InstrumentFactory(symbol="ABC", name="infy holdings", exchange=nse, instrument_type=eq)
    InstrumentFactory(symbol="INFYHIDE", exchange=nse, instrument_type=eq, is_active=False)
    for n in range(12):
        InstrumentFactory(symbol=f"ZZ{n}", name=f"Z infy {n}", exchange=nse, instrument_type=eq)

    rows = user_api_client.get("/seed/instrument/search?query=infy").json()
    assert isinstance(rows, list) and len(rows) == 10
    assert [r["symbol"] for r in rows[:3]] == ["INFY", "INFYX", "ABC"]
    assert rows[0]["id"] == exact.pk and list(rows[0]) == FIELDS
    assert "INFYHIDE" not in {r["symbol"] for r in rows}
    on_bse = user_api_client.get("/seed/instrument/search?query=infy&exchange=BSE").json()
    assert [r["id"] for r in on_bse] == [exact.pk]
    assert user_api_client.get("/seed/instrument/search/?query=nothing-like-it").json() == []
    assert_error(user_api_client.get("/seed/instrument/search?query=infy&exchange=NOPE"), 404)
    assert_error(user_api_client.get("/seed/instrument/search"), 400)
    assert_error(user_api_client.get("/seed/instrument/search?query=%20"), 400)
    assert_error(user_api_client.get("/seed/instrument/search?query=" + "x" * 300), 400)


def test_create_update_and_delete(admin_api_client, nse, bse, eq):
    sector = SectorFactory()
    body = {
        "symbol": "NEWCO",
        "name": "New Co",
        "exchange_id": nse.pk,
        "instrument_type_id": eq.pk,
        "sector_id": None,
        "blacklisted": False,
        "delisted": False,
        "should_record_data": True,
    }
    created = admin_api_client.post("/seed/instrument/", body, format="json")
    assert created.status_code == 201, created.content
    out = created.json()
    assert list(out) == FIELDS
    assert (out["symbol"], out["sector_id"], out["is_active"], out["should_record_data"]) == (
        "NEWCO",
        None,
        True,
        False,
    )

    assert_error(admin_api_client.post("/seed/instrument", body, format="json"), 400)  # duplicate symbol
    assert_error(admin_api_client.post("/seed/instrument/", {**body, "exchange_id": 999999}, format="json"), 400)
    assert_error(admin_api_client.post("/seed/instrument/", {"name": "x"}, format="json"), 400)
    assert_error(admin_api_client.post("/seed/instrument/", [1, 2], format="json"), 400)

    pk = out["id"]
    update = {
        "symbol": "NEWCO",
        "name": "Renamed",
        "exchange_id": nse.pk,
        "instrument_type_id": eq.pk,
        "sector_id": sector.pk,
        "blacklisted": True,
        "delisted": False,
    }
    changed = admin_api_client.put(f"/seed/instrument/{pk}", update, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["name"], changed.json()["sector_id"], changed.json()["blacklisted"]) == (
        "Renamed",
        sector.pk,
        True,
    )
    assert_error(admin_api_client.put("/seed/instrument/999999", update, format="json"), 404)
    assert_error(admin_api_client.put(f"/seed/instrument/{pk}", {"sector_id": 999999}, format="json"), 400)

    deleted = admin_api_client.delete(f"/seed/instrument/{pk}/")
    assert deleted.status_code == 200 and isinstance(deleted.json()["message"], str)
    assert not Instrument.objects.filter(pk=pk).exists()
    assert_error(admin_api_client.delete(f"/seed/instrument/{pk}"), 404)


def test_update_with_the_shown_compat_symbol_keeps_ours(admin_api_client, nse, bse, eq):
    inst = InstrumentFactory(symbol="XYZ", exchange=nse, instrument_type=eq)
    InstrumentFactory(symbol="XYZ", exchange=bse, instrument_type=eq)
    shown = admin_api_client.get(f"/seed/instrument/{inst.pk}").json()
    assert shown["symbol"] == "XYZ.NSE"
    payload = {k: shown[k] for k in ("symbol", "exchange_id", "instrument_type_id", "sector_id")}
    response = admin_api_client.put(f"/seed/instrument/{inst.pk}", {**payload, "name": "Same"}, format="json")
    assert response.status_code == 200 and response.json()["symbol"] == "XYZ.NSE"
    inst.refresh_from_db()
    assert (inst.symbol, inst.name) == ("XYZ", "Same")


def test_delete_with_history_is_a_conflict_and_force_keeps_it(admin_api_client, nse, eq):
    inst = InstrumentFactory(symbol="OLD", exchange=nse, instrument_type=eq)
    PriceHistoryDailyFactory(instrument=inst)
    assert_error(admin_api_client.delete(f"/seed/instrument/{inst.pk}"), 409)
    forced = admin_api_client.delete(f"/seed/instrument/{inst.pk}?force=true")
    assert forced.status_code == 200 and "message" in forced.json()
    inst.refresh_from_db()
    assert (inst.is_active, inst.record_data) == (False, False)
    assert PriceHistoryDaily.objects.filter(instrument=inst).count() == 1


def test_recording_toggle_needs_a_mapping_and_keeps_history(admin_api_client, nse, eq):
    inst = InstrumentFactory(symbol="REC", exchange=nse, instrument_type=eq, record_data=False)
    PriceHistoryDailyFactory(instrument=inst)
    refused = admin_api_client.patch(
        f"/seed/instrument/{inst.pk}/recording?should_record=true", content_type="application/json"
    )
    assert_error(refused, 400)
    assert refused.json()["detail"] == "Cannot enable recording: No provider mapping found for this instrument."

    ProviderInstrumentMappingFactory(instrument=inst)
    on = admin_api_client.patch(
        f"/seed/instrument/{inst.pk}/recording?should_record=true", content_type="application/json"
    )
    assert on.status_code == 200 and list(on.json()) == FIELDS
    assert (on.json()["id"], on.json()["should_record_data"]) == (inst.pk, True)

    recording = admin_api_client.get("/seed/instrument/recording/all").json()
    assert [r["id"] for r in recording] == [inst.pk]

    off = admin_api_client.patch(f"/seed/instrument/{inst.pk}/recording/?should_record=false")
    assert off.status_code == 200 and off.json()["should_record_data"] is False
    assert PriceHistoryDaily.objects.filter(instrument=inst).count() == 1  # history kept
    assert admin_api_client.get("/seed/instrument/recording/all/").json() == []

    assert_error(admin_api_client.patch(f"/seed/instrument/{inst.pk}/recording"), 400)
    assert_error(admin_api_client.patch(f"/seed/instrument/{inst.pk}/recording?should_record=perhaps"), 400)
    assert_error(admin_api_client.patch("/seed/instrument/999999/recording?should_record=false"), 404)


def test_list_all_instruments(user_api_client, admin_api_client, nse, bse, eq):
    a = InstrumentFactory(symbol="AAA", exchange=bse, instrument_type=eq)
    b = InstrumentFactory(symbol="BBB", exchange=nse, instrument_type=eq)
    hidden = InstrumentFactory(symbol="CCC", exchange=nse, instrument_type=eq, is_active=False)
    assert [r["id"] for r in user_api_client.get("/seed/instrument").json()] == [a.pk, b.pk]
    assert [r["id"] for r in admin_api_client.get("/seed/instrument/").json()] == [a.pk, b.pk, hidden.pk]
    assert_error(user_api_client.get(f"/seed/instrument/{hidden.pk}"), 404)
    assert admin_api_client.get(f"/seed/instrument/{hidden.pk}").status_code == 200


READS = [
    "/seed/instrument/",
    "/seed/instrument/list/NSE",
    "/seed/instrument/by-symbol/AAA",
    "/seed/instrument/details/NSE:AAA",
    "/seed/instrument/search?query=a",
    "/seed/instrument/{pk}",
]
WRITES = [
    ("post", "/seed/instrument/"),
    ("put", "/seed/instrument/{pk}"),
    ("delete", "/seed/instrument/{pk}"),
    ("patch", "/seed/instrument/{pk}/recording?should_record=false"),
    ("get", "/seed/instrument/recording/all"),
]


def test_permission_matrix(api_client, user_api_client, admin_api_client, nse, eq):
    inst = InstrumentFactory(symbol="AAA", exchange=nse, instrument_type=eq)
    for url in READS:
        url = url.format(pk=inst.pk)
        assert_error(api_client.get(url), 401)
        assert user_api_client.get(url).status_code == 200, url
    for method, url in WRITES:
        url = url.format(pk=inst.pk)
        assert_error(getattr(api_client, method)(url, {}, format="json"), 401)
        assert_error(getattr(user_api_client, method)(url, {}, format="json"), 403)
    assert admin_api_client.patch(f"/seed/instrument/{inst.pk}/recording?should_record=false").status_code == 200
    assert admin_api_client.get("/seed/instrument/recording/all").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/seed/instrument/99999999999999999",
        "/seed/instrument/999999999999999999999999",
        "/seed/instrument/by-symbol/%00",
        "/seed/instrument/details/NSE:%00",
        "/seed/instrument/list/%00",
        "/seed/instrument/search?query=%00",
        "/seed/instrument/search?query=a&exchange=%00",
        "/seed/instrument/list/NSE?instrument_type_id=-1",
    ],
)
def test_bad_input_is_never_a_500(admin_api_client, nse, url):
    response = admin_api_client.get(url)
    assert response.status_code in (400, 404), (url, response.status_code)
    assert isinstance(response.json()["detail"], str)
