"""Contract of the seed's exchange routes under /seed/: exchanges, their providers, their holidays."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from exchanges.models import Exchange, ExchangeHoliday
from exchanges.selectors import exchange_trading_date
from exchanges.services import exchange_create, exchange_holiday_create
from ingestion.models import ExchangeProviderMapping, Provider
from ingestion.services import exchange_provider_mapping_create, provider_create
from instruments.models import InstrumentType
from instruments.services import instrument_create

pytestmark = pytest.mark.django_db

EXCHANGE_KEYS = {
    "id",
    "name",
    "code",
    "timezone",
    "country",
    "currency",
    "pre_market_open_time",
    "market_open_time",
    "market_close_time",
    "post_market_close_time",
    "current_day_holidays",
}
HOLIDAY_KEYS = {"id", "exchange_id", "date", "description", "is_closed", "open_time", "close_time"}
MAPPING_KEYS = {"provider_id", "exchange_id", "is_active", "is_primary"}


def make_exchange(code="NSE", tz="Asia/Kolkata", **extra) -> Exchange:
    fields = {
        "name": f"{code} exchange",
        "code": code,
        "timezone": tz,
        "currency": "INR",
        "country": "India",
        "pre_market_open": dt.time(9, 0),
        "market_open": dt.time(9, 15),
        "market_close": dt.time(15, 30),
        "post_market_close": dt.time(16, 0),
        **extra,
    }
    return exchange_create(**fields)


def make_provider(code="YF", kind="yahoo") -> Provider:
    return provider_create(name=f"{code} feed", code=code, kind=kind)


def local_today(exchange: Exchange) -> dt.date:
    return exchange_trading_date(exchange=exchange, at=timezone.now())


def error_detail(response, code: int) -> str:
    """The status is ``code`` and the body carries a string ``detail`` (what the seed front end shows)."""
    assert response.status_code == code, response.content
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


# --- exchanges ---------------------------------------------------------------------------------------


def test_list_is_a_bare_array_of_active_exchanges_by_id_with_the_seed_fields(user_api_client):
    second = make_exchange("ZZZ", country="")
    first_created_later = make_exchange("AAA")
    make_exchange("OFF", is_active=False)

    response = user_api_client.get("/seed/exchange/")

    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [row["id"] for row in body] == [second.pk, first_created_later.pk]
    row = body[0]
    assert set(row) == EXCHANGE_KEYS
    assert row == {
        "id": second.pk,
        "name": "ZZZ exchange",
        "code": "ZZZ",
        "timezone": "Asia/Kolkata",
        "country": None,
        "currency": "INR",
        "pre_market_open_time": "09:00:00",
        "market_open_time": "09:15:00",
        "market_close_time": "15:30:00",
        "post_market_close_time": "16:00:00",
        "current_day_holidays": [],
    }


def test_list_fills_current_day_holidays_for_today_in_each_exchanges_own_zone(user_api_client):
    east = make_exchange("EAST", tz="Pacific/Kiritimati")  # UTC+14
    west = make_exchange("WEST", tz="Pacific/Pago_Pago")  # UTC-11: a different date than EAST most of the day
    quiet = make_exchange("QUIET")
    east_today, west_today = local_today(east), local_today(west)
    special = exchange_holiday_create(
        exchange=east,
        date=east_today,
        name="Short day",
        is_closed=False,
        open_time=dt.time(10, 0),
        close_time=dt.time(12, 30),
    )
    closed = exchange_holiday_create(exchange=west, date=west_today, name="Closed")
    # Not today: neither the day before nor an inactive row for today.
    exchange_holiday_create(exchange=quiet, date=local_today(quiet) - dt.timedelta(days=1), name="Yesterday")
    exchange_holiday_create(exchange=quiet, date=local_today(quiet), name="Switched off", is_active=False)
    if east_today != west_today:
        # WEST's date at EAST: a row there must not show for EAST.
        exchange_holiday_create(exchange=east, date=west_today, name="Not today at EAST")

    body = {row["code"]: row for row in user_api_client.get("/seed/exchange").json()}

    assert body["EAST"]["current_day_holidays"] == [
        {
            "id": special.pk,
            "exchange_id": east.pk,
            "date": east_today.isoformat(),
            "description": "Short day",
            "is_closed": False,
            "open_time": "10:00:00",
            "close_time": "12:30:00",
        }
    ]
    assert body["WEST"]["current_day_holidays"] == [
        {
            "id": closed.pk,
            "exchange_id": west.pk,
            "date": west_today.isoformat(),
            "description": "Closed",
            "is_closed": True,
            "open_time": None,
            "close_time": None,
        }
    ]
    assert body["QUIET"]["current_day_holidays"] == []


def test_anonymous_gets_401_with_a_string_detail_everywhere(api_client):
    exchange = make_exchange()
    for method, path in [
        ("get", "/seed/exchange/"),
        ("post", "/seed/exchange/"),
        ("get", f"/seed/exchange/{exchange.pk}"),
        ("put", f"/seed/exchange/{exchange.pk}"),
        ("delete", f"/seed/exchange/{exchange.pk}"),
        ("get", f"/seed/exchange/{exchange.pk}/providers"),
        ("post", f"/seed/exchange/{exchange.pk}/providers/1"),
        ("get", f"/seed/exchange/{exchange.pk}/holidays"),
        ("post", "/seed/exchange/holidays"),
        ("put", "/seed/exchange/holidays/1"),
        ("delete", "/seed/exchange/holidays/1"),
    ]:
        error_detail(getattr(api_client, method)(path, {}, format="json"), 401)


def test_viewers_read_but_may_not_write(user_api_client):
    exchange = make_exchange()
    provider = make_provider()
    holiday = exchange_holiday_create(exchange=exchange, date=dt.date(2030, 1, 1))
    assert user_api_client.get(f"/seed/exchange/{exchange.pk}").status_code == 200
    assert user_api_client.get(f"/seed/exchange/{exchange.pk}/holidays").status_code == 200
    for method, path in [
        ("post", "/seed/exchange/"),
        ("put", f"/seed/exchange/{exchange.pk}"),
        ("delete", f"/seed/exchange/{exchange.pk}"),
        # The seed keeps an exchange's providers to admins, reads too.
        ("get", f"/seed/exchange/{exchange.pk}/providers"),
        ("post", f"/seed/exchange/{exchange.pk}/providers/{provider.pk}"),
        ("put", f"/seed/exchange/{exchange.pk}/providers/{provider.pk}"),
        ("delete", f"/seed/exchange/{exchange.pk}/providers/{provider.pk}"),
        ("post", "/seed/exchange/holidays"),
        ("put", f"/seed/exchange/holidays/{holiday.pk}"),
        ("delete", f"/seed/exchange/holidays/{holiday.pk}"),
    ]:
        error_detail(getattr(user_api_client, method)(path, {}, format="json"), 403)
    assert Exchange.objects.filter(pk=exchange.pk).exists()
    assert ExchangeHoliday.objects.filter(pk=holiday.pk).exists()


SEED_EXCHANGE_FORM = {
    "name": "NASDAQ",
    "code": "nasdaq",
    "timezone": "America/New_York",
    "country": "USA",
    "currency": "USD",
    "pre_market_open_time": "04:00",
    "market_open_time": "09:30",
    "market_close_time": "16:00:00",
    "post_market_close_time": None,
}


def test_create_takes_the_seed_form_and_answers_201_with_exchange_in_db(admin_api_client):
    response = admin_api_client.post("/seed/exchange/", SEED_EXCHANGE_FORM, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    exchange = Exchange.objects.get(code="NASDAQ")
    assert body == {
        "id": exchange.pk,
        "name": "NASDAQ",
        "code": "NASDAQ",
        "timezone": "America/New_York",
        "country": "USA",
        "currency": "USD",
        "pre_market_open_time": "04:00:00",
        "market_open_time": "09:30:00",
        "market_close_time": "16:00:00",
        "post_market_close_time": None,
        "current_day_holidays": [],
    }
    assert exchange.is_active and exchange.market_open == dt.time(9, 30)


def test_create_refuses_bad_input_with_400_and_a_string_detail(admin_api_client):
    make_exchange("NASDAQ")
    bad_forms = [
        SEED_EXCHANGE_FORM,  # the code exists (any case)
        {**SEED_EXCHANGE_FORM, "code": "NEW", "timezone": "Mars/Olympus"},
        {**SEED_EXCHANGE_FORM, "code": "NEW", "timezone": None},
        {**SEED_EXCHANGE_FORM, "code": "NEW", "currency": None},
        {**SEED_EXCHANGE_FORM, "code": "NEW", "market_open_time": "25:00"},
        {**SEED_EXCHANGE_FORM, "code": "NEW", "market_open_time": "17:00"},  # opens after it closes
        {**SEED_EXCHANGE_FORM, "code": "NEW", "name": None},
        {key: value for key, value in SEED_EXCHANGE_FORM.items() if key != "code"},
    ]
    for form in bad_forms:
        error_detail(admin_api_client.post("/seed/exchange/", form, format="json"), 400)
    error_detail(admin_api_client.post("/seed/exchange/", "not json", content_type="application/json"), 400)
    error_detail(admin_api_client.post("/seed/exchange/", [1, 2], format="json"), 400)
    assert Exchange.objects.count() == 1


def test_get_one_exchange_and_404_for_unknown_ids(user_api_client):
    exchange = make_exchange()
    body = user_api_client.get(f"/seed/exchange/{exchange.pk}/").json()
    assert set(body) == EXCHANGE_KEYS and body["id"] == exchange.pk and body["code"] == "NSE"
    assert error_detail(user_api_client.get(f"/seed/exchange/{exchange.pk + 1000}"), 404) == "Exchange not found"
    error_detail(user_api_client.get("/seed/exchange/99999999999999999999999"), 404)


def test_put_applies_every_key_sent_and_null_clears(admin_api_client):
    exchange = make_exchange()
    response = admin_api_client.put(
        f"/seed/exchange/{exchange.pk}",
        {
            "name": "National Stock Exchange",
            "code": "NSE",
            "timezone": "Asia/Kolkata",
            "country": None,
            "currency": "INR",
            "pre_market_open_time": None,
            "market_open_time": "09:15",
            "market_close_time": "15:30",
            "post_market_close_time": "",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == EXCHANGE_KEYS
    assert body["name"] == "National Stock Exchange"
    assert body["country"] is None
    assert body["pre_market_open_time"] is None and body["post_market_close_time"] is None
    exchange.refresh_from_db()
    assert exchange.pre_market_open is None and exchange.country == ""

    # Keys not sent are kept.
    body = admin_api_client.put(f"/seed/exchange/{exchange.pk}", {"country": "India"}, format="json").json()
    assert body["country"] == "India" and body["name"] == "National Stock Exchange"


def test_put_refuses_bad_input_and_unknown_exchanges(admin_api_client):
    exchange = make_exchange()
    make_exchange("BSE")
    for form in [
        {"market_close_time": "08:00"},
        {"code": "bse"},
        {"timezone": None},
        {"name": None},
        {"market_open_time": "noon"},
    ]:
        error_detail(admin_api_client.put(f"/seed/exchange/{exchange.pk}", form, format="json"), 400)
    error_detail(admin_api_client.put(f"/seed/exchange/{exchange.pk + 1000}", {"name": "X"}, format="json"), 404)
    exchange.refresh_from_db()
    assert exchange.code == "NSE" and exchange.market_close == dt.time(15, 30)


def test_delete_answers_a_message(admin_api_client):
    exchange = make_exchange()
    response = admin_api_client.delete(f"/seed/exchange/{exchange.pk}/")
    assert response.status_code == 200
    assert response.json() == {"message": "Exchange deleted successfully"}
    assert not Exchange.objects.filter(pk=exchange.pk).exists()
    error_detail(admin_api_client.delete(f"/seed/exchange/{exchange.pk}"), 404)


def test_delete_of_an_exchange_with_instruments_is_a_409_unless_forced(admin_api_client):
    exchange = make_exchange()
    equity, _ = InstrumentType.objects.get_or_create(code="EQ", defaults={"name": "Equity"})
    instrument_create(symbol="RELIANCE", exchange=exchange, instrument_type=equity)

    assert "instrument" in error_detail(admin_api_client.delete(f"/seed/exchange/{exchange.pk}"), 409)
    response = admin_api_client.delete(f"/seed/exchange/{exchange.pk}?force=true")
    assert response.status_code == 200
    assert set(response.json()) == {"message"}
    exchange.refresh_from_db()
    assert exchange.is_active is False


def test_every_route_answers_with_and_without_the_trailing_slash(admin_api_client):
    exchange = make_exchange()
    make_provider()
    holiday = exchange_holiday_create(exchange=exchange, date=dt.date(2030, 1, 1))
    for path in [
        "/seed/exchange",
        f"/seed/exchange/{exchange.pk}",
        f"/seed/exchange/{exchange.pk}/providers",
        f"/seed/exchange/{exchange.pk}/holidays",
    ]:
        for spelling in (path, path + "/"):
            response = admin_api_client.get(spelling)
            assert response.status_code == 200, (spelling, response.status_code)
    for spelling in (f"/seed/exchange/holidays/{holiday.pk}", f"/seed/exchange/holidays/{holiday.pk}/"):
        assert admin_api_client.put(spelling, {"description": "x"}, format="json").status_code == 200


def test_exchange_holidays_is_not_taken_for_an_exchange_id(admin_api_client):
    make_exchange()
    # GET is not a route of exchange/holidays (the seed has none): a 405, not "Exchange not found".
    response = admin_api_client.get("/seed/exchange/holidays")
    assert response.status_code == 405
    response = admin_api_client.get("/seed/exchange/holidays/1")
    assert response.status_code == 405


# --- providers of an exchange -----------------------------------------------------------------------


def test_exchange_providers_list_is_a_bare_array_of_mappings(admin_api_client):
    exchange = make_exchange()
    yahoo, dhan = make_provider("YF"), make_provider("DHAN", "dhan")
    exchange_provider_mapping_create(exchange=exchange, provider=yahoo, priority=20)
    exchange_provider_mapping_create(exchange=exchange, provider=dhan, is_primary=True, priority=10)

    body = admin_api_client.get(f"/seed/exchange/{exchange.pk}/providers").json()

    # Primary first, then by priority (the order our ingestion tries them in).
    assert body == [
        {"provider_id": dhan.pk, "exchange_id": exchange.pk, "is_active": True, "is_primary": True},
        {"provider_id": yahoo.pk, "exchange_id": exchange.pk, "is_active": True, "is_primary": False},
    ]
    assert admin_api_client.get(f"/seed/exchange/{make_exchange('BSE').pk}/providers").json() == []
    assert error_detail(admin_api_client.get(f"/seed/exchange/{exchange.pk + 1000}/providers"), 404) == (
        "Exchange not found"
    )


def test_add_a_provider_to_an_exchange(admin_api_client):
    exchange = make_exchange()
    provider = make_provider()
    body = {"provider_id": provider.pk, "exchange_id": exchange.pk, "is_active": True, "is_primary": True}

    response = admin_api_client.post(f"/seed/exchange/{exchange.pk}/providers/{provider.pk}", body, format="json")

    assert response.status_code == 201, response.content
    assert response.json() == body
    assert set(response.json()) == MAPPING_KEYS
    mapping = ExchangeProviderMapping.objects.get(exchange=exchange, provider=provider)
    assert mapping.is_primary

    duplicate = admin_api_client.post(f"/seed/exchange/{exchange.pk}/providers/{provider.pk}", body, format="json")
    assert error_detail(duplicate, 400) == "Mapping already exists"


def test_adding_a_provider_refuses_ids_that_disagree_with_the_path_and_unknown_ids(admin_api_client):
    exchange = make_exchange()
    other = make_exchange("BSE")
    provider = make_provider()
    path = f"/seed/exchange/{exchange.pk}/providers/{provider.pk}"
    for body in [
        {"provider_id": provider.pk, "exchange_id": other.pk, "is_active": True, "is_primary": False},
        {"provider_id": provider.pk + 1000, "exchange_id": exchange.pk, "is_active": True, "is_primary": False},
    ]:
        assert error_detail(admin_api_client.post(path, body, format="json"), 400) == "Provider or exchange ID mismatch"
    error_detail(admin_api_client.post(path, {"provider_id": "x", "exchange_id": exchange.pk}, format="json"), 400)
    body = {"provider_id": provider.pk + 1000, "exchange_id": exchange.pk}
    assert error_detail(
        admin_api_client.post(f"/seed/exchange/{exchange.pk}/providers/{provider.pk + 1000}", body, format="json"),
        404,
    ) == ("Provider not found")
    body = {"provider_id": provider.pk, "exchange_id": exchange.pk + 1000}
    error_detail(
        admin_api_client.post(f"/seed/exchange/{exchange.pk + 1000}/providers/{provider.pk}", body, format="json"),
        404,
    )
    assert not ExchangeProviderMapping.objects.exists()


def test_update_and_remove_a_provider_of_an_exchange(admin_api_client):
    exchange = make_exchange()
    yahoo, dhan = make_provider("YF"), make_provider("DHAN", "dhan")
    exchange_provider_mapping_create(exchange=exchange, provider=yahoo, is_primary=True)
    exchange_provider_mapping_create(exchange=exchange, provider=dhan)

    response = admin_api_client.put(
        f"/seed/exchange/{exchange.pk}/providers/{dhan.pk}", {"is_active": False, "is_primary": True}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "provider_id": dhan.pk,
        "exchange_id": exchange.pk,
        "is_active": False,
        "is_primary": True,
    }
    # One primary per exchange: the previous one was demoted.
    assert not ExchangeProviderMapping.objects.get(provider=yahoo).is_primary
    error_detail(
        admin_api_client.put(
            f"/seed/exchange/{exchange.pk}/providers/{dhan.pk}", {"is_active": "maybe"}, format="json"
        ),
        400,
    )
    missing = admin_api_client.put(f"/seed/exchange/{exchange.pk}/providers/{dhan.pk + 1000}", {}, format="json")
    assert error_detail(missing, 404) == "Mapping not found"

    response = admin_api_client.delete(f"/seed/exchange/{exchange.pk}/providers/{dhan.pk}/")
    assert response.status_code == 200
    assert set(response.json()) == {"message"}
    assert not ExchangeProviderMapping.objects.filter(provider=dhan).exists()
    error_detail(admin_api_client.delete(f"/seed/exchange/{exchange.pk}/providers/{dhan.pk}"), 404)


# --- holidays --------------------------------------------------------------------------------------


def test_holiday_list_is_a_bare_array_by_date(user_api_client):
    exchange = make_exchange()
    later = exchange_holiday_create(exchange=exchange, date=dt.date(2030, 12, 25), name="Christmas")
    earlier = exchange_holiday_create(
        exchange=exchange,
        date=dt.date(2030, 10, 21),
        is_closed=False,
        open_time=dt.time(18, 0),
        close_time=dt.time(19, 0),
    )
    exchange_holiday_create(exchange=make_exchange("BSE"), date=dt.date(2030, 1, 26))

    body = user_api_client.get(f"/seed/exchange/{exchange.pk}/holidays").json()

    assert body == [
        {
            "id": earlier.pk,
            "exchange_id": exchange.pk,
            "date": "2030-10-21",
            "description": None,
            "is_closed": False,
            "open_time": "18:00:00",
            "close_time": "19:00:00",
        },
        {
            "id": later.pk,
            "exchange_id": exchange.pk,
            "date": "2030-12-25",
            "description": "Christmas",
            "is_closed": True,
            "open_time": None,
            "close_time": None,
        },
    ]
    assert error_detail(user_api_client.get(f"/seed/exchange/{exchange.pk + 1000}/holidays"), 404) == (
        "Exchange not found"
    )


def test_create_holidays_from_the_seed_form(admin_api_client):
    exchange = make_exchange()
    form = {
        "date": "2030-11-01",
        "description": "Muhurat trading",
        "is_closed": False,
        "open_time": "18:00",
        "close_time": "19:15",
        "exchange_id": exchange.pk,
    }

    response = admin_api_client.post("/seed/exchange/holidays", form, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    holiday = ExchangeHoliday.objects.get(exchange=exchange, date=dt.date(2030, 11, 1))
    assert body == {
        "id": holiday.pk,
        "exchange_id": exchange.pk,
        "date": "2030-11-01",
        "description": "Muhurat trading",
        "is_closed": False,
        "open_time": "18:00:00",
        "close_time": "19:15:00",
    }

    # A closed day keeps no times, even when the form still carries some; is_closed defaults to true.
    closed = admin_api_client.post(
        "/seed/exchange/holidays/",
        {"date": "2030-11-02", "description": "", "open_time": "10:00", "close_time": None, "exchange_id": exchange.pk},
        format="json",
    ).json()
    assert closed["is_closed"] is True and closed["open_time"] is None and closed["description"] is None


def test_create_holiday_refuses_bad_input(admin_api_client):
    exchange = make_exchange()
    exchange_holiday_create(exchange=exchange, date=dt.date(2030, 1, 1))
    base = {"date": "2030-11-01", "description": "x", "is_closed": True, "exchange_id": exchange.pk}
    for form in [
        {**base, "date": "2030-01-01"},  # one row per date
        {**base, "date": "soon"},
        {**base, "is_closed": False, "open_time": "19:00", "close_time": "18:00"},
        {key: value for key, value in base.items() if key != "exchange_id"},
        {**base, "exchange_id": "NSE"},
    ]:
        error_detail(admin_api_client.post("/seed/exchange/holidays", form, format="json"), 400)
    assert error_detail(
        admin_api_client.post("/seed/exchange/holidays", {**base, "exchange_id": exchange.pk + 1000}, format="json"),
        404,
    ) == ("Exchange not found")
    assert ExchangeHoliday.objects.count() == 1


def test_update_holiday_treats_empty_times_as_null_and_returns_the_full_holiday(admin_api_client):
    exchange = make_exchange()
    holiday = exchange_holiday_create(
        exchange=exchange,
        date=dt.date(2030, 11, 1),
        name="Muhurat",
        is_closed=False,
        open_time=dt.time(18, 0),
        close_time=dt.time(19, 0),
    )

    response = admin_api_client.put(
        f"/seed/exchange/holidays/{holiday.pk}",
        {
            "date": "2030-11-01",
            "description": "Muhurat trading",
            "is_closed": False,
            "open_time": "",
            "close_time": "14:00:00",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": holiday.pk,
        "exchange_id": exchange.pk,
        "date": "2030-11-01",
        "description": "Muhurat trading",
        "is_closed": False,
        "open_time": None,
        "close_time": "14:00:00",
    }

    # Closing the day drops its times.
    body = admin_api_client.put(
        f"/seed/exchange/holidays/{holiday.pk}",
        {"is_closed": True, "open_time": None, "close_time": "14:00:00"},
        format="json",
    ).json()
    assert body["is_closed"] is True and body["close_time"] is None


def test_update_holiday_refuses_bad_input_and_unknown_ids(admin_api_client):
    exchange = make_exchange()
    holiday = exchange_holiday_create(exchange=exchange, date=dt.date(2030, 11, 1))
    exchange_holiday_create(exchange=exchange, date=dt.date(2030, 11, 2))
    for form in [{"date": "2030-11-02"}, {"date": None}, {"is_closed": False, "open_time": "7pm"}]:
        error_detail(admin_api_client.put(f"/seed/exchange/holidays/{holiday.pk}", form, format="json"), 400)
    missing = admin_api_client.put(f"/seed/exchange/holidays/{holiday.pk + 1000}", {"description": "x"}, format="json")
    assert error_detail(missing, 404) == "Holiday not found"


def test_delete_holiday_answers_a_message(admin_api_client):
    holiday = exchange_holiday_create(exchange=make_exchange(), date=dt.date(2030, 11, 1))
    response = admin_api_client.delete(f"/seed/exchange/holidays/{holiday.pk}")
    assert response.status_code == 200
    assert set(response.json()) == {"message"}
    assert not ExchangeHoliday.objects.filter(pk=holiday.pk).exists()
    error_detail(admin_api_client.delete(f"/seed/exchange/holidays/{holiday.pk}"), 404)
