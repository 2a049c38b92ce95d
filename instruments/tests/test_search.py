"""Instrument search (``GET /instruments/?search=``): where it matches, how it ranks, the trigram path."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchanges.tests.factories import ExchangeFactory
from instruments.models import Instrument
from instruments.search import TRIGRAM_INDEXES, search_instruments
from instruments.selectors import instrument_list
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def listed():
    nse = ExchangeFactory(code="NSE")
    bse = ExchangeFactory(code="BSE")
    kind = InstrumentTypeFactory(code="EQ")

    def make(symbol, name, exchange=nse, isin=""):
        return InstrumentFactory(symbol=symbol, name=name, exchange=exchange, instrument_type=kind, isin=isin)

    make("TATA", "Tata Sons", isin="INE000A01011")
    make("TATA", "Tata Sons", exchange=bse)
    make("TATAMOTORS", "Tata Motors", isin="INE155A01022")
    make("TATASTEEL", "Tata Steel", isin="INE081A01020")
    make("TCS", "Tata Consultancy Services", isin="INE467B01029")
    make("TITAN", "Titan Company (a Tata company)", isin="INE280A01028")
    make("XTATA", "Holding of many things")
    make("INFY", "Infosys", isin="INE009A01021")
    make("PCT", "100% Pure_Co")
    return nse


def _search(client, text: str, extra: str = "") -> list[str]:
    response = client.get("/instruments/", {"search": text, **dict([extra.split("=")] if extra else [])})
    assert response.status_code == 200, response.content
    return [f"{row['exchange']['code']}:{row['symbol']}" for row in response.json()["results"]]


def test_ranking_exact_symbol_then_symbol_prefix_then_name_prefix_then_contains(user_api_client, listed):
    assert _search(user_api_client, "tata") == [
        "BSE:TATA",  # exact symbol (both exchanges, by exchange code)
        "NSE:TATA",
        "NSE:TATAMOTORS",  # symbol starts with it
        "NSE:TATASTEEL",
        "NSE:TCS",  # name starts with it
        "NSE:TITAN",  # contains it (name)
        "NSE:XTATA",  # contains it (symbol)
    ]


def test_matches_anywhere_in_symbol_and_name(user_api_client, listed):
    assert _search(user_api_client, "steel") == ["NSE:TATASTEEL"]
    assert _search(user_api_client, "MOTOR") == ["NSE:TATAMOTORS"]
    assert _search(user_api_client, "consultancy serv") == ["NSE:TCS"]
    assert _search(user_api_client, "nothing like this") == []


def test_matches_the_isin_whole_or_in_part(user_api_client, listed):
    assert _search(user_api_client, "INE009A01021") == ["NSE:INFY"]
    assert _search(user_api_client, "ine155a") == ["NSE:TATAMOTORS"]


@pytest.mark.parametrize("text", ["tatamotors", "TATAMOTORS", "TataMotors", "  tAtAmOtOrS  "])
def test_case_and_surrounding_spaces_do_not_matter(user_api_client, listed, text):
    assert _search(user_api_client, text) == ["NSE:TATAMOTORS"]


def test_like_wildcards_match_themselves(user_api_client, listed):
    assert _search(user_api_client, "100%") == ["NSE:PCT"]
    assert _search(user_api_client, "pure_co") == ["NSE:PCT"]
    assert _search(user_api_client, "%") == ["NSE:PCT"]
    assert _search(user_api_client, "_") == ["NSE:PCT"]


def test_blank_search_lists_everything_in_the_usual_order(user_api_client, listed):
    body = user_api_client.get("/instruments/?search=%20%20").json()
    assert body["count"] == 9
    assert [row["exchange"]["code"] for row in body["results"]][:1] == ["BSE"]


def test_search_combines_with_filters_and_pages(user_api_client, listed):
    assert _search(user_api_client, "tata", "exchange=BSE") == ["BSE:TATA"]
    page = user_api_client.get("/instruments/?search=tata&limit=2&offset=2").json()
    assert page["count"] == 7
    assert [row["symbol"] for row in page["results"]] == ["TATAMOTORS", "TATASTEEL"]


@pytest.mark.parametrize(
    "query",
    ["search=a%00b", "search=" + "x" * 256, "search=tata&limit=abc", "search=tata&is_active=perhaps"],
)
def test_bad_input_is_a_400_in_the_error_shape(user_api_client, listed, query):
    response = user_api_client.get(f"/instruments/?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"detail", "status_code", "errors"} and body["status_code"] == 400


@pytest.mark.parametrize("text", ["'", '"', "\\", "\\%", "';--", "ü", "日本", "x" * 255, "(", "[a-z]", "*"])
def test_odd_text_never_fails(user_api_client, listed, text):
    assert user_api_client.get("/instruments/", {"search": text}).status_code == 200


def test_search_needs_authentication(api_client, listed):
    response = api_client.get("/instruments/?search=tata")
    assert response.status_code == 401
    assert response.json()["status_code"] == 401


def test_selector_search_annotates_the_rank(listed):
    ranks = {(i.exchange.code, i.symbol): i.search_rank for i in instrument_list(filters={"search": "tata"})}
    assert ranks[("NSE", "TATA")] == 0
    assert ranks[("NSE", "TATAMOTORS")] == 1
    assert ranks[("NSE", "TCS")] == 2
    assert ranks[("NSE", "XTATA")] == 3


# --- the trigram path (the tests run on PostgreSQL) ----------------------------------------------


def test_the_migration_created_pg_trgm_and_the_trigram_indexes():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() is not None
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'instruments_instrument' "
            "AND indexdef LIKE '%%gin_trgm_ops%%'"
        )
        found = dict(cursor.fetchall())
    for name, column in TRIGRAM_INDEXES:
        assert name in found
        assert f"upper(({column})::text) gin_trgm_ops" in found[name], found[name]


def test_postgresql_answers_a_search_from_the_trigram_indexes():
    """Both queries of a page (count and rows) can be answered from the three GIN trigram indexes.

    Which plan PostgreSQL picks depends on the table's size (on a few thousand rows a scan is
    cheaper; ``bench.search`` shows the plan at 200,000), so scans are priced out here: what is
    tested is that the indexes match the expressions the search compares.
    """
    exchange = ExchangeFactory()
    kind = InstrumentTypeFactory()
    Instrument.objects.bulk_create(
        Instrument(
            symbol=f"S{n:05d}", name=f"Company {n}", isin=f"INE{n:07d}01", exchange=exchange, instrument_type=kind
        )
        for n in range(5000)
    )
    InstrumentFactory(symbol="TATAMOTORS", name="Tata Motors", exchange=exchange, instrument_type=kind)
    queryset = search_instruments(instrument_list(), "motors")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE instruments_instrument")
    with CaptureQueriesContext(connection) as captured:
        queryset.count()
        list(queryset[:100])
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        for query in captured.captured_queries[:2]:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    for plan in plans:
        assert "Seq Scan on instruments_instrument" not in plan, plan
        for name, _column in TRIGRAM_INDEXES:
            assert name in plan, plan
    assert [i.symbol for i in queryset] == ["TATAMOTORS"]
