"""REST API of instruments: /instruments/ and /instruments/{id}."""

from __future__ import annotations

import pytest

from exchanges.tests.factories import ExchangeFactory
from ingestion.tests.factories import ProviderFactory, ProviderInstrumentMappingFactory
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory, SectorFactory

pytestmark = pytest.mark.django_db


def _assert_error(response, status_code: int) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@pytest.fixture
def catalog():
    """Two exchanges, two types, two sectors and a handful of instruments across them."""
    nse = ExchangeFactory(code="NSE", name="National Stock Exchange", timezone="Asia/Kolkata", currency="INR")
    nasdaq = ExchangeFactory(code="NASDAQ", name="Nasdaq")
    eq = InstrumentTypeFactory(code="EQ", name="Equity")
    index = InstrumentTypeFactory(code="INDEX", name="Index")
    energy = SectorFactory(name="Energy")
    tech = SectorFactory(name="Technology")
    rows = {
        "RELIANCE": InstrumentFactory(
            symbol="RELIANCE", name="Reliance Industries", exchange=nse, instrument_type=eq, sector=energy
        ),
        "RELINFRA": InstrumentFactory(
            symbol="RELINFRA", name="Reliance Infrastructure", exchange=nse, instrument_type=eq, sector=energy
        ),
        "INFY": InstrumentFactory(symbol="INFY", name="Infosys", exchange=nse, instrument_type=eq, sector=tech),
        "NIFTY": InstrumentFactory(symbol="NIFTY", name="Nifty 50", exchange=nse, instrument_type=index, sector=None),
        "AAPL": InstrumentFactory(symbol="AAPL", name="Apple", exchange=nasdaq, instrument_type=eq, sector=tech),
        "OLD": InstrumentFactory(
            symbol="OLD", name="Delisted Co", exchange=nasdaq, instrument_type=eq, sector=tech, is_active=False
        ),
    }
    return {"nse": nse, "nasdaq": nasdaq, "eq": eq, "index": index, "energy": energy, "tech": tech, **rows}


def _symbols(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(row["symbol"] for row in response.json()["results"])


# --- list --------------------------------------------------------------------------------------


def test_list_shape(user_api_client, catalog):
    ProviderInstrumentMappingFactory(
        instrument=catalog["RELIANCE"], provider=ProviderFactory(code="DHAN"), search_code="2885", segment="NSE_EQ"
    )

    response = user_api_client.get("/instruments/?symbol=RELIANCE")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["exchange"] == {
        "id": catalog["nse"].pk,
        "code": "NSE",
        "name": "National Stock Exchange",
        "timezone": "Asia/Kolkata",
    }
    assert row["instrument_type"]["code"] == "EQ"
    assert row["sector"] == {"id": catalog["energy"].pk, "name": "Energy"}
    assert row["effective_currency"] == "INR"
    assert [(m["provider"], m["search_code"], m["segment"]) for m in row["provider_mappings"]] == [
        ("DHAN", "2885", "NSE_EQ")
    ]


@pytest.mark.parametrize("path", ["/instruments", "/instruments/"])
def test_list_answers_with_and_without_trailing_slash(user_api_client, catalog, path):
    assert len(_symbols(user_api_client.get(path))) == 6


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("exchange=nse", ["INFY", "NIFTY", "RELIANCE", "RELINFRA"]),
        ("exchange=NASDAQ", ["AAPL", "OLD"]),
        ("exchange=LSE", []),
        ("symbol=reliance", ["RELIANCE"]),
        ("symbol=RELI", []),
        ("search=rel", ["RELIANCE", "RELINFRA"]),
        ("search=infos", ["INFY"]),
        ("search=ance", ["RELIANCE", "RELINFRA"]),
        ("search=zzz", []),
        ("search=reliance%20inf", ["RELINFRA"]),
        ("sector=energy", ["RELIANCE", "RELINFRA"]),
        ("sector=Technology&exchange=nse", ["INFY"]),
        ("sector=Nonexistent", []),
        ("instrument_type=index", ["NIFTY"]),
        ("instrument_type=EQ&exchange=NASDAQ&is_active=true", ["AAPL"]),
        ("is_active=false", ["OLD"]),
        ("is_active=0", ["OLD"]),
        ("exchange_id=424242", []),
    ],
)
def test_list_filters(user_api_client, catalog, query, expected):
    assert _symbols(user_api_client.get(f"/instruments/?{query}")) == expected


def test_list_filters_by_ids(user_api_client, catalog):
    nse, energy, index = catalog["nse"], catalog["energy"], catalog["index"]

    assert _symbols(user_api_client.get(f"/instruments/?exchange_id={nse.pk}&sector={energy.pk}")) == [
        "RELIANCE",
        "RELINFRA",
    ]
    assert _symbols(user_api_client.get(f"/instruments/?instrument_type={index.pk}")) == ["NIFTY"]


def test_list_pages_with_limit_and_offset(user_api_client):
    exchange = ExchangeFactory()
    InstrumentFactory.create_batch(120, exchange=exchange)
    InstrumentFactory.create_batch(3)

    first = user_api_client.get(f"/instruments/?exchange_id={exchange.pk}&limit=50").json()
    last = user_api_client.get(f"/instruments/?exchange_id={exchange.pk}&limit=50&offset=100").json()
    default = user_api_client.get("/instruments/").json()

    assert first["count"] == 120
    assert len(first["results"]) == 50
    assert "offset=50" in first["next"]
    assert len(last["results"]) == 20
    assert last["next"] is None
    assert len(default["results"]) == 100
    assert default["count"] == 123
    seen = {row["id"] for row in first["results"]} | {row["id"] for row in last["results"]}
    assert len(seen) == 70


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("exchange_id=abc", "exchange_id"),
        ("exchange_id=1.5", "exchange_id"),
        ("exchange_id=-3", "exchange_id"),
        ("exchange_id=99999999999999999999999", "exchange_id"),
        ("is_active=maybe", "is_active"),
        ("search=a%00b", "search"),
        ("exchange=N%00SE", "exchange"),
        ("symbol=%00", "symbol"),
        ("sector=%00", "sector"),
        ("instrument_type=E%00Q", "instrument_type"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=1001", "limit"),
        ("limit=100000000000000000000", "limit"),
        ("offset=-1", "offset"),
        ("offset=xyz", "offset"),
    ],
)
def test_list_rejects_bad_parameters(user_api_client, catalog, query, field):
    body = _assert_error(user_api_client.get(f"/instruments/?{query}"), 400)
    assert field in body["errors"]


def test_limit_at_the_maximum_is_accepted(user_api_client, catalog):
    assert user_api_client.get("/instruments/?limit=1000").status_code == 200


def test_list_needs_authentication(api_client):
    _assert_error(api_client.get("/instruments/"), 401)


def test_list_query_count_does_not_grow_with_rows(user_api_client, django_assert_max_num_queries):
    providers = ProviderFactory.create_batch(2)
    for instrument in InstrumentFactory.create_batch(30):
        for provider in providers:
            ProviderInstrumentMappingFactory(instrument=instrument, provider=provider)

    # user (JWT) + count + page + mappings + their providers
    with django_assert_max_num_queries(5):
        response = user_api_client.get("/instruments/?limit=50")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 30
    assert all(len(row["provider_mappings"]) == 2 for row in rows)


# --- retrieve ----------------------------------------------------------------------------------


def test_retrieve_nested(user_api_client, catalog):
    instrument = catalog["INFY"]
    ProviderInstrumentMappingFactory(instrument=instrument, provider=ProviderFactory(code="YF"), search_code="INFY.NS")

    for path in (f"/instruments/{instrument.pk}", f"/instruments/{instrument.pk}/"):
        response = user_api_client.get(path)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["symbol"] == "INFY"
        assert body["exchange"]["code"] == "NSE"
        assert body["sector"]["name"] == "Technology"
        assert body["instrument_type"] == {"id": catalog["eq"].pk, "code": "EQ", "name": "Equity"}
        assert body["provider_mappings"][0]["provider"] == "YF"
        assert body["provider_mappings"][0]["search_code"] == "INFY.NS"


def test_retrieve_without_sector(user_api_client, catalog):
    assert user_api_client.get(f"/instruments/{catalog['NIFTY'].pk}").json()["sector"] is None


@pytest.mark.parametrize("path", ["/instruments/424242", "/instruments/abc", "/instruments/99999999999999999999999"])
def test_retrieve_unknown_is_404(user_api_client, path):
    _assert_error(user_api_client.get(path), 404)


# --- create ------------------------------------------------------------------------------------


def test_create_with_ids(admin_api_client, catalog):
    payload = {
        "symbol": "TCS",
        "name": "Tata Consultancy Services",
        "exchange": catalog["nse"].pk,
        "instrument_type": catalog["eq"].pk,
        "sector": catalog["tech"].pk,
        "isin": "ine467b01029",
        "lot_size": 1,
        "tick_size": "0.05",
    }

    response = admin_api_client.post("/instruments/", payload, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["exchange"]["code"] == "NSE"
    assert body["sector"]["name"] == "Technology"
    assert body["provider_mappings"] == []
    instrument = Instrument.objects.get(pk=body["id"])
    assert (instrument.symbol, instrument.isin, str(instrument.tick_size)) == ("TCS", "INE467B01029", "0.050000")


def test_create_with_codes_and_names(admin_api_client, catalog):
    payload = {"symbol": "^NSEI", "exchange": "nse", "instrument_type": "index", "sector": "energy"}

    response = admin_api_client.post("/instruments", payload, format="json")

    assert response.status_code == 201, response.content
    instrument = Instrument.objects.get(pk=response.json()["id"])
    assert (instrument.exchange, instrument.instrument_type, instrument.sector) == (
        catalog["nse"],
        catalog["index"],
        catalog["energy"],
    )


@pytest.mark.parametrize("symbol", ["RELIANCE", "reliance", " Reliance "])
def test_create_duplicate_symbol_on_the_exchange_is_400(admin_api_client, catalog, symbol):
    payload = {"symbol": symbol, "exchange": catalog["nse"].pk, "instrument_type": "EQ"}

    body = _assert_error(admin_api_client.post("/instruments/", payload, format="json"), 400)

    assert "symbol" in body["errors"]
    assert Instrument.objects.filter(symbol__iexact="reliance").count() == 1


def test_same_symbol_on_another_exchange_is_fine(admin_api_client, catalog):
    payload = {"symbol": "RELIANCE", "exchange": catalog["nasdaq"].pk, "instrument_type": "EQ"}
    assert admin_api_client.post("/instruments/", payload, format="json").status_code == 201


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"exchange": 424242}, "exchange"),
        ({"exchange": "LSE"}, "exchange"),
        ({"exchange": "N\u0000SE"}, "exchange"),
        ({"symbol": "A\u0000B"}, "symbol"),
        ({"exchange": True}, "exchange"),
        ({"exchange": [1]}, "exchange"),
        ({"exchange": "99999999999999999999999"}, "exchange"),
        ({"instrument_type": "WARRANT"}, "instrument_type"),
        ({"sector": "Nope"}, "sector"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "X" * 65}, "symbol"),
        ({"lot_size": "many"}, "lot_size"),
        ({"lot_size": 0}, "lot_size"),
        ({"tick_size": "abc"}, "tick_size"),
        ({"tick_size": "0"}, "tick_size"),
        ({"expiry": "not-a-date"}, "expiry"),
        ({"strike": "high"}, "strike"),
        ({"option_type": "XX"}, "option_type"),
        ({"currency": "ABC"}, "currency"),
        ({"record_data": "sometimes"}, "record_data"),
    ],
)
def test_create_rejects_invalid_values(admin_api_client, catalog, overrides, field):
    payload = {"symbol": "TCS", "exchange": catalog["nse"].pk, "instrument_type": "EQ", **overrides}

    body = _assert_error(admin_api_client.post("/instruments/", payload, format="json"), 400)

    assert field in body["errors"], body
    assert not Instrument.objects.filter(symbol="TCS").exists()


def test_create_missing_required_fields(admin_api_client):
    body = _assert_error(admin_api_client.post("/instruments/", {}, format="json"), 400)
    assert {"symbol", "exchange", "instrument_type"} <= set(body["errors"])


# --- update and delete -------------------------------------------------------------------------


def test_put_replaces(admin_api_client, catalog):
    instrument = catalog["INFY"]
    payload = {"symbol": "INFY", "exchange": "NASDAQ", "instrument_type": "EQ", "name": "Infosys ADR"}

    response = admin_api_client.put(f"/instruments/{instrument.pk}", payload, format="json")

    assert response.status_code == 200, response.content
    instrument.refresh_from_db()
    assert (instrument.exchange, instrument.name, instrument.sector) == (catalog["nasdaq"], "Infosys ADR", None)


def test_patch_changes_only_what_is_sent(admin_api_client, catalog):
    instrument = catalog["INFY"]

    response = admin_api_client.patch(f"/instruments/{instrument.pk}/", {"record_data": False}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["record_data"] is False
    instrument.refresh_from_db()
    assert (instrument.record_data, instrument.symbol, instrument.sector) == (False, "INFY", catalog["tech"])


def test_patch_to_a_taken_symbol_is_400(admin_api_client, catalog):
    body = _assert_error(
        admin_api_client.patch(f"/instruments/{catalog['INFY'].pk}", {"symbol": "reliance"}, format="json"), 400
    )
    assert "symbol" in body["errors"]


def test_patch_unknown_is_404(admin_api_client):
    _assert_error(admin_api_client.patch("/instruments/424242", {"name": "x"}, format="json"), 404)


def test_delete(admin_api_client, catalog):
    instrument = catalog["AAPL"]
    ProviderInstrumentMappingFactory(instrument=instrument)

    assert admin_api_client.delete(f"/instruments/{instrument.pk}").status_code == 204
    assert not Instrument.objects.filter(pk=instrument.pk).exists()


def test_delete_with_history_is_409_unless_forced_which_deactivates(admin_api_client, catalog):
    from marketdata.tests.factories import PriceHistoryDailyFactory

    instrument = catalog["AAPL"]
    PriceHistoryDailyFactory(instrument=instrument)
    body = _assert_error(admin_api_client.delete(f"/instruments/{instrument.pk}"), 409)
    assert "force=true" in body["detail"]
    assert Instrument.objects.filter(pk=instrument.pk, is_active=True).exists()

    forced = admin_api_client.delete(f"/instruments/{instrument.pk}?force=true")
    assert forced.status_code == 200
    assert forced.json()["is_active"] is False and forced.json()["record_data"] is False
    assert instrument.daily_bars.count() == 1
    _assert_error(admin_api_client.delete(f"/instruments/{instrument.pk}?force=maybe"), 400)


# --- who may write -----------------------------------------------------------------------------


def _new(catalog):
    return {"symbol": "NEW", "exchange": catalog["nse"].pk, "instrument_type": "EQ"}


WRITES = {
    "create": ("post", lambda c: "/instruments/", _new, 201),
    "put": ("put", lambda c: f"/instruments/{c['INFY'].pk}", _new, 200),
    "patch": ("patch", lambda c: f"/instruments/{c['INFY'].pk}", lambda c: {"symbol": "NEW"}, 200),
    "delete": ("delete", lambda c: f"/instruments/{c['INFY'].pk}", lambda c: None, 204),
}


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize(
    ("client_fixture", "expected"),
    [("api_client", 401), ("user_api_client", 403), ("admin_api_client", None)],
)
def test_write_authorization(request, catalog, operation, client_fixture, expected):
    method, path, payload, admin_status = WRITES[operation]
    client = request.getfixturevalue(client_fixture)

    response = getattr(client, method)(path(catalog), payload(catalog), format="json")

    if expected is None:
        assert response.status_code == admin_status, response.content
        return
    _assert_error(response, expected)
    assert not Instrument.objects.filter(symbol="NEW").exists()
    assert Instrument.objects.filter(pk=catalog["INFY"].pk, symbol="INFY").exists()
