"""Contract of the seed's sector and instrument-type routes under ``/seed/``, on real PostgreSQL."""

from __future__ import annotations

import pytest

from instruments.models import Instrument, InstrumentType, Sector
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory, SectorFactory

pytestmark = pytest.mark.django_db


def assert_error(response, code: int) -> None:
    assert response.status_code == code, response.content
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


# --- sectors --------------------------------------------------------------------------------


def test_sector_list_both_spellings_bare_array_by_name(user_api_client):
    energy = SectorFactory(name="Energy")
    banks = SectorFactory(name="Banks")
    expected = [
        {"id": banks.pk, "name": "Banks", "description": None},
        {"id": energy.pk, "name": "Energy", "description": None},
    ]
    for url in ("/seed/sector", "/seed/sector/"):
        response = user_api_client.get(url)
        assert response.status_code == 200  # no redirect
        assert response.json() == expected
    assert user_api_client.get(f"/seed/sector/{banks.pk}").json() == expected[0]
    assert_error(user_api_client.get("/seed/sector/999999"), 404)


def test_sector_create_update_delete(admin_api_client):
    created = admin_api_client.post("/seed/sector/", {"name": "IT", "description": "Software"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert list(body) == ["id", "name", "description"] and body["name"] == "IT"
    assert_error(admin_api_client.post("/seed/sector", {"name": "it"}, format="json"), 400)  # duplicate
    assert_error(admin_api_client.post("/seed/sector/", {"description": "x"}, format="json"), 400)
    assert_error(admin_api_client.post("/seed/sector/", {"name": ""}, format="json"), 400)

    pk = body["id"]
    updated = admin_api_client.put(f"/seed/sector/{pk}", {"name": "Tech", "description": None}, format="json")
    assert updated.status_code == 200 and updated.json() == {"id": pk, "name": "Tech", "description": None}
    assert Sector.objects.get(pk=pk).name == "Tech"
    assert_error(admin_api_client.put("/seed/sector/999999", {"name": "X"}, format="json"), 404)

    deleted = admin_api_client.delete(f"/seed/sector/{pk}/")
    assert deleted.status_code == 200 and isinstance(deleted.json()["message"], str)
    assert_error(admin_api_client.delete(f"/seed/sector/{pk}"), 404)


def test_sector_in_use_is_a_conflict_unless_forced(admin_api_client):
    sector = SectorFactory(name="Metals")
    inst = InstrumentFactory(sector=sector)
    assert_error(admin_api_client.delete(f"/seed/sector/{sector.pk}"), 409)
    forced = admin_api_client.delete(f"/seed/sector/{sector.pk}?force=true")
    assert forced.status_code == 200 and "message" in forced.json()
    inst.refresh_from_db()
    assert inst.sector_id is None


# --- instrument types -----------------------------------------------------------------------

TYPE_FIELDS = ["id", "code", "name", "description", "category", "display_order"]


def test_instrument_type_list_and_get(user_api_client):
    index = InstrumentTypeFactory(code="INDEX", name="Index")
    eq = InstrumentTypeFactory(code="EQ", name="Equity")
    rows = user_api_client.get("/seed/instrument_type/").json()
    assert [r["id"] for r in rows] == [eq.pk, index.pk]
    assert rows[0] == {
        "id": eq.pk,
        "code": "EQ",
        "name": "Equity",
        "description": None,
        "category": None,
        "display_order": None,
    }
    assert user_api_client.get("/seed/instrument_type").json() == rows
    assert list(user_api_client.get(f"/seed/instrument_type/{index.pk}").json()) == TYPE_FIELDS
    assert_error(user_api_client.get("/seed/instrument_type/999999"), 404)


def test_instrument_type_create_update_delete(admin_api_client):
    body = {"code": "etf", "name": "ETF", "description": "Funds", "category": "fund", "display_order": None}
    created = admin_api_client.post("/seed/instrument_type/", body, format="json")
    assert created.status_code == 201
    out = created.json()
    assert list(out) == TYPE_FIELDS and out["code"] == "ETF"
    assert_error(admin_api_client.post("/seed/instrument_type/", body, format="json"), 400)  # duplicate code
    assert_error(admin_api_client.post("/seed/instrument_type/", {"code": "X"}, format="json"), 400)
    assert_error(
        admin_api_client.post("/seed/instrument_type/", {**body, "code": "Y", "display_order": "a"}, format="json"),
        400,
    )

    pk = out["id"]
    changed = admin_api_client.put(
        f"/seed/instrument_type/{pk}", {**body, "name": "Exchange traded fund", "display_order": 3}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["name"] == "Exchange traded fund"
    assert_error(admin_api_client.put("/seed/instrument_type/999999", body, format="json"), 404)

    deleted = admin_api_client.delete(f"/seed/instrument_type/{pk}")
    assert deleted.status_code == 200 and "message" in deleted.json()
    assert not InstrumentType.objects.filter(pk=pk).exists()


def test_instrument_type_in_use_is_a_conflict_and_force_deactivates(admin_api_client):
    kind = InstrumentTypeFactory(code="FUT")
    InstrumentFactory(instrument_type=kind)
    assert_error(admin_api_client.delete(f"/seed/instrument_type/{kind.pk}"), 409)
    forced = admin_api_client.delete(f"/seed/instrument_type/{kind.pk}?force=true")
    assert forced.status_code == 200 and "message" in forced.json()
    kind.refresh_from_db()
    assert kind.is_active is False and Instrument.objects.filter(instrument_type=kind).count() == 1


@pytest.mark.parametrize("base", ["/seed/sector", "/seed/instrument_type"])
def test_permission_matrix(api_client, user_api_client, admin_api_client, base):
    row = SectorFactory() if "sector" in base else InstrumentTypeFactory()
    for url in (base, base + "/", f"{base}/{row.pk}"):
        assert_error(api_client.get(url), 401)
        assert user_api_client.get(url).status_code == 200
    for method, url in (("post", base + "/"), ("put", f"{base}/{row.pk}"), ("delete", f"{base}/{row.pk}")):
        assert_error(getattr(api_client, method)(url, {"name": "N", "code": "N"}, format="json"), 401)
        assert_error(getattr(user_api_client, method)(url, {"name": "N", "code": "N"}, format="json"), 403)
    assert admin_api_client.put(f"{base}/{row.pk}", {"name": "Renamed"}, format="json").status_code == 200


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/seed/sector/99999999999999999"),
        ("get", "/seed/sector/9999999999999999999999"),
        ("delete", "/seed/instrument_type/99999999999999999"),
        ("delete", "/seed/sector/1?force=perhaps"),
        ("put", "/seed/sector/1"),
    ],
)
def test_bad_input_is_never_a_500(admin_api_client, method, url):
    SectorFactory(name="One")
    if method == "get":
        response = admin_api_client.get(url)
    else:
        response = getattr(admin_api_client, method)(url, "[]", content_type="application/json")
    assert response.status_code in (400, 404), (url, response.status_code)
    assert isinstance(response.json()["detail"], str)
