"""REST API of holidays, calendars and market status: /exchange/{id}/holidays, /calendar, /status, /marketstatus."""

from __future__ import annotations

import datetime as dt

import pytest

from exchanges.models import ExchangeHoliday
from exchanges.tests.factories import ExchangeFactory, ExchangeHolidayFactory

pytestmark = pytest.mark.django_db


def _assert_error(response, status_code: int) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# --- holiday rows ------------------------------------------------------------------------------------


def test_holiday_list_is_by_date_and_filtered_by_range(user_api_client, local_exchange):
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 7, 4), name="Independence Day")
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 1, 1), name="New Year")
    ExchangeHolidayFactory(date=dt.date(2024, 3, 1))  # another exchange's

    body = user_api_client.get(f"/exchange/{local_exchange.pk}/holidays").json()
    assert body["count"] == 2
    assert [(row["date"], row["name"]) for row in body["results"]] == [
        ("2024-01-01", "New Year"),
        ("2024-07-04", "Independence Day"),
    ]
    assert body["results"][0]["exchange"] == local_exchange.pk

    ranged = user_api_client.get(f"/exchange/{local_exchange.pk}/holidays/?start=2024-02-01&end=2024-12-31").json()
    assert [row["date"] for row in ranged["results"]] == ["2024-07-04"]


def test_holiday_create_retrieve_patch_put_delete(admin_api_client, local_exchange):
    base = f"/exchange/{local_exchange.pk}/holidays"

    created = admin_api_client.post(base, {"date": "2024-03-05", "name": " Election day "}, format="json")
    assert created.status_code == 201, created.content
    row = created.json()
    assert (row["name"], row["is_closed"], row["open_time"], row["is_active"]) == ("Election day", True, None, True)
    url = f"{base}/{row['id']}"

    assert admin_api_client.get(url + "/").json()["date"] == "2024-03-05"

    patched = admin_api_client.patch(url, {"is_closed": False, "close_time": "13:00"}, format="json")
    assert patched.status_code == 200, patched.content
    assert (patched.json()["is_closed"], patched.json()["close_time"]) == (False, "13:00:00")
    assert patched.json()["name"] == "Election day"

    replaced = admin_api_client.put(url, {"date": "2024-03-06"}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["date"], replaced.json()["name"], replaced.json()["close_time"]) == (
        "2024-03-06",
        "",
        None,
    )

    assert admin_api_client.delete(url).status_code == 204
    assert not ExchangeHoliday.objects.exists()


def test_a_holiday_row_changes_the_calendar_and_the_status(admin_api_client, nyse):
    response = admin_api_client.post(
        f"/exchange/{nyse.pk}/holidays", {"date": "2024-01-16", "name": "Snow day"}, format="json"
    )
    assert response.status_code == 201, response.content

    calendar = admin_api_client.get(f"/exchange/{nyse.pk}/calendar?start=2024-01-15&end=2024-01-17").json()
    assert [s["date"] for s in calendar["sessions"]] == ["2024-01-17"]
    assert calendar["holidays"] == [
        {"date": "2024-01-15", "name": "Dr. Martin Luther King Jr. Day", "source": "calendar"},
        {"date": "2024-01-16", "name": "Snow day", "source": "override"},
    ]
    status = admin_api_client.get(f"/exchange/{nyse.pk}/status?at=2024-01-16T15:00:00Z").json()
    assert (status["status"], status["holiday"]["name"]) == ("closed", "Snow day")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "date"),
        ({"date": "05/03/2024"}, "date"),
        ({"date": "2024-03-05", "open_time": "10:00"}, "open_time"),
        ({"date": "2024-03-05", "is_closed": False, "open_time": "14:00", "close_time": "13:00"}, "close_time"),
        ({"date": "2024-03-05", "is_closed": False, "open_time": "17:00"}, "non_field_errors"),  # closes at 16:00
        ({"date": "2024-03-05", "name": "x" * 121}, "name"),
        ({"date": "2024-03-05", "is_closed": "maybe"}, "is_closed"),
        ({"date": "2024-03-05", "kind": "holiday"}, "kind"),
        ({"date": "2024-03-05", "exchange": 1}, "exchange"),
    ],
)
def test_holiday_bad_input_is_a_400_naming_the_field(admin_api_client, local_exchange, body, field):
    response = admin_api_client.post(f"/exchange/{local_exchange.pk}/holidays", body, format="json")

    assert field in _assert_error(response, 400)["errors"]
    assert not ExchangeHoliday.objects.exists()


def test_a_second_row_for_the_same_date_is_a_400(admin_api_client, local_exchange):
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 3, 5))

    response = admin_api_client.post(f"/exchange/{local_exchange.pk}/holidays", {"date": "2024-03-05"}, format="json")

    assert "date" in _assert_error(response, 400)["errors"]


def test_a_holiday_before_the_calendar_is_a_400(admin_api_client, nyse):
    response = admin_api_client.post(f"/exchange/{nyse.pk}/holidays", {"date": "1990-01-02"}, format="json")
    assert "date" in _assert_error(response, 400)["errors"]


def test_holiday_of_another_exchange_or_unknown_exchange_is_404(admin_api_client, local_exchange):
    other = ExchangeHolidayFactory()
    _assert_error(admin_api_client.get(f"/exchange/{local_exchange.pk}/holidays/{other.pk}"), 404)
    _assert_error(admin_api_client.patch(f"/exchange/{local_exchange.pk}/holidays/{other.pk}", {}, format="json"), 404)
    _assert_error(admin_api_client.get("/exchange/424242/holidays"), 404)
    _assert_error(admin_api_client.post("/exchange/424242/holidays", {"date": "2024-03-05"}, format="json"), 404)


def test_holiday_list_rejects_bad_query(user_api_client, local_exchange):
    for query in ("start=yesterday", "limit=0", "colour=red"):
        _assert_error(user_api_client.get(f"/exchange/{local_exchange.pk}/holidays?{query}"), 400)


HOLIDAY_WRITES = {
    "create": ("post", lambda h: f"/exchange/{h.exchange_id}/holidays", {"date": "2024-05-01"}, 201),
    "put": ("put", lambda h: f"/exchange/{h.exchange_id}/holidays/{h.pk}", {"date": "2024-05-02"}, 200),
    "patch": ("patch", lambda h: f"/exchange/{h.exchange_id}/holidays/{h.pk}", {"name": "Renamed"}, 200),
    "delete": ("delete", lambda h: f"/exchange/{h.exchange_id}/holidays/{h.pk}", None, 204),
}


@pytest.mark.parametrize("operation", HOLIDAY_WRITES)
@pytest.mark.parametrize(
    ("client_fixture", "expected"),
    [("api_client", 401), ("user_api_client", 403), ("admin_api_client", None)],
)
def test_holiday_write_authorization(request, operation, client_fixture, expected):
    method, path, payload, admin_status = HOLIDAY_WRITES[operation]
    client = request.getfixturevalue(client_fixture)
    holiday = ExchangeHolidayFactory(date=dt.date(2024, 4, 1), name="Kept")

    response = getattr(client, method)(path(holiday), payload, format="json")

    if expected is None:
        assert response.status_code == admin_status, response.content
        return
    _assert_error(response, expected)
    holiday.refresh_from_db()
    assert (holiday.date, holiday.name) == (dt.date(2024, 4, 1), "Kept")
    assert ExchangeHoliday.objects.count() == 1


@pytest.mark.parametrize(
    "path",
    [
        "/exchange/{id}/holidays",
        "/exchange/{id}/holidays/{holiday}",
        "/exchange/{id}/calendar",
        "/exchange/{id}/status",
        "/marketstatus",
    ],
)
@pytest.mark.parametrize(("client_fixture", "expected"), [("api_client", 401), ("user_api_client", 200)])
def test_reads_need_a_signed_in_user(request, path, client_fixture, expected):
    holiday = ExchangeHolidayFactory(date=dt.date(2024, 4, 1))
    client = request.getfixturevalue(client_fixture)

    response = client.get(path.format(id=holiday.exchange_id, holiday=holiday.pk))

    if expected == 200:
        assert response.status_code == 200, response.content
    else:
        _assert_error(response, expected)


@pytest.mark.parametrize("path", ["/exchange/{id}/calendar", "/exchange/{id}/status", "/marketstatus"])
def test_reads_are_read_only(admin_api_client, local_exchange, path):
    _assert_error(admin_api_client.post(path.format(id=local_exchange.pk), {}, format="json"), 405)


# --- calendar ------------------------------------------------------------------------------------------


def test_calendar_of_nyse_around_christmas(user_api_client, nyse):
    response = user_api_client.get(f"/exchange/{nyse.pk}/calendar/?start=2024-12-23&end=2024-12-27")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["exchange"] == {
        "id": nyse.pk,
        "code": "NYSE",
        "name": nyse.name,
        "timezone": "America/New_York",
        "calendar_code": "XNYS",
    }
    assert (body["timezone"], body["start"], body["end"]) == ("America/New_York", "2024-12-23", "2024-12-27")
    assert [s["date"] for s in body["sessions"]] == ["2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27"]
    christmas_eve = body["sessions"][1]
    assert christmas_eve == {
        "date": "2024-12-24",
        "open": "2024-12-24T14:30:00Z",
        "close": "2024-12-24T18:00:00Z",
        "pre_market_open": "2024-12-24T09:00:00Z",
        "post_market_close": "2024-12-25T01:00:00Z",
        "break_start": None,
        "break_end": None,
        "is_early_close": True,
    }
    assert body["early_closes"] == ["2024-12-24"]
    assert body["holidays"] == [{"date": "2024-12-25", "name": "Christmas", "source": "calendar"}]


def test_calendar_defaults_to_today_and_the_next_30_days(user_api_client, local_exchange):
    body = user_api_client.get(f"/exchange/{local_exchange.pk}/calendar").json()

    start = dt.date.fromisoformat(body["start"])
    assert dt.date.fromisoformat(body["end"]) - start == dt.timedelta(days=30)
    assert abs((start - dt.datetime.now(dt.UTC).date()).days) <= 1


def test_calendar_of_a_full_year_is_allowed(user_api_client, nse):
    response = user_api_client.get(f"/exchange/{nse.pk}/calendar?start=2024-01-01&end=2024-12-31")

    assert response.status_code == 200, response.content
    assert 240 < len(response.json()["sessions"]) < 260


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2024-01-01&end=2025-01-01", "end"),  # 367 days
        ("start=2024-02-01&end=2024-01-01", "end"),
        ("start=2024-13-01", "start"),
        ("start=tomorrow", "start"),
        ("end=2024-02-30", "end"),
        ("start=1899-01-01&end=1899-01-02", "start"),
        ("start=9999-12-30", "start"),
        ("start=1990-01-01&end=1990-01-31", "start"),  # before the XNYS table this app builds
        ("from=2024-01-01", "from"),
    ],
)
def test_calendar_bad_query_is_a_400(user_api_client, nyse, query, field):
    body = _assert_error(user_api_client.get(f"/exchange/{nyse.pk}/calendar?{query}"), 400)
    assert field in body["errors"]


def test_calendar_of_an_unknown_exchange_is_404(user_api_client):
    _assert_error(user_api_client.get("/exchange/424242/calendar"), 404)


# --- status --------------------------------------------------------------------------------------------


def test_status_of_nyse_on_christmas(user_api_client, nyse):
    response = user_api_client.get(f"/exchange/{nyse.pk}/status?at=2024-12-25T15:00:00Z")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "closed"
    assert body["holiday"] == {"date": "2024-12-25", "name": "Christmas", "source": "calendar"}
    assert body["session"] is None
    assert (body["next_open"], body["next_close"]) == ("2024-12-26T14:30:00Z", "2024-12-26T21:00:00Z")
    assert body["local_time"] == "2024-12-25T10:00:00-05:00"
    assert (body["at"], body["timezone"], body["trading_date"]) == (
        "2024-12-25T15:00:00Z",
        "America/New_York",
        "2024-12-25",
    )
    assert body["exchange"]["code"] == "NYSE"


def test_status_of_nse_on_monday_morning(user_api_client, nse):
    body = user_api_client.get(f"/exchange/{nse.pk}/status/", {"at": "2024-01-15T10:00:00+05:30"}).json()

    assert body["status"] == "open"
    assert body["session"]["date"] == "2024-01-15"
    assert body["session"]["open"] == "2024-01-15T03:45:00Z"
    assert body["next_close"] == "2024-01-15T10:00:00Z"
    assert body["local_time"] == "2024-01-15T10:00:00+05:30"
    assert body["holiday"] is None


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2024-01-16T13:00:00Z", "pre_market"),  # 08:00 New York
        ("2024-01-16T16:00:00Z", "open"),
        ("2024-01-16T23:00:00Z", "post_market"),  # 18:00
        ("2024-01-17T02:00:00Z", "closed"),  # 21:00
    ],
)
def test_status_windows(user_api_client, nyse, at, expected):
    assert user_api_client.get(f"/exchange/{nyse.pk}/status", {"at": at}).json()["status"] == expected


def test_status_without_at_describes_now(user_api_client, local_exchange):
    body = user_api_client.get(f"/exchange/{local_exchange.pk}/status").json()

    at = dt.datetime.fromisoformat(body["at"])
    assert abs((dt.datetime.now(dt.UTC) - at).total_seconds()) < 60
    assert body["status"] in {"open", "closed", "pre_market", "post_market"}


@pytest.mark.parametrize(
    "query",
    ["at=2024-12-25T15:00:00", "at=yesterday", "at=1969-12-31T00:00:00Z", "at=1990-01-02T15:00:00Z", "when=now"],
)
def test_status_bad_query_is_a_400(user_api_client, nyse, query):
    body = _assert_error(user_api_client.get(f"/exchange/{nyse.pk}/status?{query}"), 400)
    assert body["errors"]


def test_status_of_an_unknown_exchange_is_404(user_api_client):
    _assert_error(user_api_client.get("/exchange/424242/status"), 404)


def test_inconsistent_hours_are_a_409_not_a_500(user_api_client, local_exchange):
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 3, 5), is_closed=False, open_time=dt.time(15))
    # The operator later moves the regular close before that special open.
    type(local_exchange).objects.filter(pk=local_exchange.pk).update(market_close=dt.time(14, 0))

    _assert_error(user_api_client.get(f"/exchange/{local_exchange.pk}/status?at=2024-03-05T15:00:00Z"), 409)
    _assert_error(user_api_client.get(f"/exchange/{local_exchange.pk}/calendar?start=2024-03-01"), 409)
    body = user_api_client.get("/marketstatus?at=2024-03-05T15:00:00Z").json()
    assert [row["code"] for row in body["unavailable"]] == ["LOCAL"]


# --- every active exchange -------------------------------------------------------------------------


def test_marketstatus_lists_every_active_exchange_by_code(user_api_client, nyse, nse):
    ExchangeFactory(code="OLD", is_active=False)

    response = user_api_client.get("/marketstatus", {"at": "2024-01-15T04:30:00Z"})  # 10:00 IST, Monday

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["at"] == "2024-01-15T04:30:00Z"
    assert body["unavailable"] == []
    by_code = {row["exchange"]["code"]: row for row in body["results"]}
    assert list(by_code) == ["NSE", "NYSE"]
    assert by_code["NSE"]["status"] == "open"
    assert by_code["NYSE"]["status"] == "closed"
    # Still Sunday in New York: Monday's holiday (Martin Luther King Day) is not today's yet.
    assert by_code["NYSE"]["local_time"] == "2024-01-14T23:30:00-05:00"
    assert (by_code["NYSE"]["trading_date"], by_code["NYSE"]["holiday"]) == ("2024-01-14", None)
    assert by_code["NYSE"]["next_open"] == "2024-01-16T14:30:00Z"


def test_marketstatus_answers_with_a_trailing_slash_and_rejects_bad_at(user_api_client):
    assert user_api_client.get("/marketstatus/").status_code == 200
    assert "at" in _assert_error(user_api_client.get("/marketstatus?at=soon"), 400)["errors"]
