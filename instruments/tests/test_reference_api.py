"""REST API of sectors and instrument types: /sectors/ and /instrument-types/."""

from __future__ import annotations

import pytest

from instruments.models import Instrument, InstrumentType, Sector
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory, SectorFactory

pytestmark = pytest.mark.django_db


def _assert_error(response, status_code: int) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) <= {"detail", "status_code", "errors"}
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# --- reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/sectors/", "/sectors", "/instrument-types/", "/instrument-types"])
def test_list_with_and_without_trailing_slash(user_api_client, path):
    SectorFactory(name="Energy")
    InstrumentTypeFactory(code="EQ", name="Equity")

    response = user_api_client.get(path)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 1


def test_sector_list_shape_order_and_filters(user_api_client):
    SectorFactory(name="Technology")
    SectorFactory(name="Energy")
    SectorFactory(name="Old Energy", is_active=False)

    body = user_api_client.get("/sectors/").json()

    assert [row["name"] for row in body["results"]] == ["Energy", "Old Energy", "Technology"]
    assert set(body["results"][0]) == {"id", "name", "is_active", "created_at", "updated_at"}
    names = [r["name"] for r in user_api_client.get("/sectors/?search=ENERGY&is_active=true").json()["results"]]
    assert names == ["Energy"]


def test_instrument_type_list_filters(user_api_client):
    InstrumentTypeFactory(code="EQ", name="Equity")
    InstrumentTypeFactory(code="ETF", name="Exchange traded fund")
    InstrumentTypeFactory(code="FUT", name="Future", is_active=False)

    codes = [r["code"] for r in user_api_client.get("/instrument-types/?search=e").json()["results"]]
    assert codes == ["EQ", "ETF", "FUT"]
    codes = [r["code"] for r in user_api_client.get("/instrument-types/?search=fund").json()["results"]]
    assert codes == ["ETF"]
    assert [r["code"] for r in user_api_client.get("/instrument-types/?is_active=no").json()["results"]] == ["FUT"]


def test_lists_are_paginated(user_api_client):
    SectorFactory.create_batch(7)

    first = user_api_client.get("/sectors/?limit=5").json()
    last = user_api_client.get("/sectors/?limit=5&offset=5").json()

    assert first["count"] == 7 and len(first["results"]) == 5 and "offset=5" in first["next"]
    assert len(last["results"]) == 2 and last["next"] is None


def test_retrieve(user_api_client):
    kind = InstrumentTypeFactory(code="INDEX", name="Index")
    sector = SectorFactory(name="Energy")

    assert user_api_client.get(f"/instrument-types/{kind.pk}").json()["code"] == "INDEX"
    assert user_api_client.get(f"/sectors/{sector.pk}/").json()["name"] == "Energy"
    _assert_error(user_api_client.get("/sectors/424242"), 404)
    _assert_error(user_api_client.get("/instrument-types/424242/"), 404)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/sectors/?is_active=maybe", "is_active"),
        ("/sectors/?search=a%00b", "search"),
        ("/sectors/?limit=0", "limit"),
        ("/instrument-types/?offset=-1", "offset"),
        ("/instrument-types/?search=" + "x" * 101, "search"),
        ("/instrument-types/?is_active=2", "is_active"),
    ],
)
def test_list_rejects_bad_parameters(user_api_client, path, field):
    body = _assert_error(user_api_client.get(path), 400)
    assert field in body["errors"]


# --- writes --------------------------------------------------------------------------------------


def test_sector_create_update_delete(admin_api_client):
    created = admin_api_client.post("/sectors/", {"name": "  Utilities "}, format="json")
    assert created.status_code == 201, created.content
    sector_id = created.json()["id"]
    assert created.json()["name"] == "Utilities" and created.json()["is_active"] is True

    renamed = admin_api_client.put(f"/sectors/{sector_id}", {"name": "Power"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Power"
    patched = admin_api_client.patch(f"/sectors/{sector_id}/", {"is_active": False}, format="json")
    assert patched.status_code == 200 and patched.json() == {**patched.json(), "name": "Power", "is_active": False}

    assert admin_api_client.delete(f"/sectors/{sector_id}").status_code == 204
    assert not Sector.objects.filter(pk=sector_id).exists()


def test_instrument_type_create_update_delete(admin_api_client):
    created = admin_api_client.post("/instrument-types", {"code": " reit ", "name": "Real estate trust"}, format="json")
    assert created.status_code == 201, created.content
    kind_id = created.json()["id"]
    assert created.json()["code"] == "REIT"

    patched = admin_api_client.patch(f"/instrument-types/{kind_id}", {"name": "REIT"}, format="json")
    assert patched.status_code == 200 and patched.json()["name"] == "REIT" and patched.json()["code"] == "REIT"

    assert admin_api_client.delete(f"/instrument-types/{kind_id}/").status_code == 204
    assert not InstrumentType.objects.filter(pk=kind_id).exists()


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/sectors/", {"name": "energy"}, "name"),
        ("/sectors/", {"name": " ENERGY "}, "name"),
        ("/instrument-types/", {"code": "eq", "name": "Another equity"}, "code"),
    ],
)
def test_duplicate_name_or_code_is_400_naming_it(admin_api_client, path, payload, field):
    SectorFactory(name="Energy")
    InstrumentTypeFactory(code="EQ", name="Equity")

    body = _assert_error(admin_api_client.post(path, payload, format="json"), 400)

    assert field in body["errors"]
    assert "already exists" in body["detail"] and "case-insensitive" in body["detail"]


def test_renaming_onto_a_taken_name_is_400_but_keeping_ones_own_is_fine(admin_api_client):
    SectorFactory(name="Energy")
    tech = SectorFactory(name="Technology")

    _assert_error(admin_api_client.patch(f"/sectors/{tech.pk}", {"name": "ENERGY"}, format="json"), 400)
    assert admin_api_client.patch(f"/sectors/{tech.pk}", {"name": "TECHNOLOGY"}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/sectors/", {}, "name"),
        ("/sectors/", {"name": ""}, "name"),
        ("/sectors/", {"name": "x" * 101}, "name"),
        ("/sectors/", {"name": ["Energy"]}, "name"),
        ("/sectors/", {"name": "Ok", "is_active": "perhaps"}, "is_active"),
        ("/sectors/", {"name": "Ok", "colour": "red"}, "colour"),
        ("/sectors/", {"name": "Ok", "id": 5}, "id"),
        ("/instrument-types/", {"code": "EQ"}, "name"),
        ("/instrument-types/", {"code": "x" * 17, "name": "Long"}, "code"),
        ("/instrument-types/", {"code": "N\x00", "name": "Nul"}, "code"),
        ("/instrument-types/", {"code": "NEW", "name": "New", "created_at": "2024-01-01"}, "created_at"),
    ],
)
def test_create_rejects_bad_bodies(admin_api_client, path, payload, field):
    body = _assert_error(admin_api_client.post(path, payload, format="json"), 400)
    assert field in body["errors"]
    assert not Sector.objects.exists() and not InstrumentType.objects.exists()


def test_unknown_field_on_patch_is_400(admin_api_client):
    sector = SectorFactory(name="Energy")

    body = _assert_error(admin_api_client.patch(f"/sectors/{sector.pk}", {"nmae": "Power"}, format="json"), 400)

    assert body["errors"] == {"nmae": ["Unknown field: not accepted here."]}
    sector.refresh_from_db()
    assert sector.name == "Energy"


def test_malformed_json_is_400(admin_api_client):
    response = admin_api_client.generic("POST", "/sectors/", "{not json", content_type="application/json")
    _assert_error(response, 400)


# --- deleting one in use -------------------------------------------------------------------------


def test_deleting_a_sector_in_use_is_409_unless_forced_which_clears_the_instruments_sector(admin_api_client):
    sector = SectorFactory(name="Energy")
    first, second = InstrumentFactory.create_batch(2, sector=sector)

    body = _assert_error(admin_api_client.delete(f"/sectors/{sector.pk}"), 409)
    assert "2 instruments" in body["detail"] and "force=true" in body["detail"]
    assert Sector.objects.filter(pk=sector.pk).exists()

    _assert_error(admin_api_client.delete(f"/sectors/{sector.pk}?force=maybe"), 400)
    assert admin_api_client.delete(f"/sectors/{sector.pk}?force=true").status_code == 204
    assert not Sector.objects.filter(pk=sector.pk).exists()
    assert list(Instrument.objects.filter(pk__in=[first.pk, second.pk]).values_list("sector", flat=True)) == [
        None,
        None,
    ]


def test_deleting_an_instrument_type_in_use_is_409_and_force_deactivates_it(admin_api_client):
    kind = InstrumentTypeFactory(code="EQ", name="Equity")
    instrument = InstrumentFactory(instrument_type=kind)

    body = _assert_error(admin_api_client.delete(f"/instrument-types/{kind.pk}"), 409)
    assert "1 instrument" in body["detail"] and "cannot be deleted" in body["detail"]
    assert "force=true" in body["detail"] and "deactivate" in body["detail"]

    forced = admin_api_client.delete(f"/instrument-types/{kind.pk}?force=true")
    assert forced.status_code == 200, forced.content
    assert forced.json()["code"] == "EQ" and forced.json()["is_active"] is False
    instrument.refresh_from_db()
    assert instrument.instrument_type_id == kind.pk


def test_force_on_an_unused_one_simply_deletes(admin_api_client):
    kind = InstrumentTypeFactory()
    sector = SectorFactory()

    assert admin_api_client.delete(f"/instrument-types/{kind.pk}?force=true").status_code == 204
    assert admin_api_client.delete(f"/sectors/{sector.pk}?force=1").status_code == 204


# --- who may do what -----------------------------------------------------------------------------


def _rows():
    return {"sector": SectorFactory(name="Energy"), "kind": InstrumentTypeFactory(code="EQ", name="Equity")}


OPERATIONS = {
    "sector-list": ("get", lambda r: "/sectors/", None, 200),
    "sector-get": ("get", lambda r: f"/sectors/{r['sector'].pk}", None, 200),
    "sector-create": ("post", lambda r: "/sectors/", {"name": "New"}, 201),
    "sector-put": ("put", lambda r: f"/sectors/{r['sector'].pk}", {"name": "New"}, 200),
    "sector-patch": ("patch", lambda r: f"/sectors/{r['sector'].pk}", {"name": "New"}, 200),
    "sector-delete": ("delete", lambda r: f"/sectors/{r['sector'].pk}", None, 204),
    "type-list": ("get", lambda r: "/instrument-types/", None, 200),
    "type-get": ("get", lambda r: f"/instrument-types/{r['kind'].pk}", None, 200),
    "type-create": ("post", lambda r: "/instrument-types/", {"code": "NEW", "name": "New"}, 201),
    "type-put": ("put", lambda r: f"/instrument-types/{r['kind'].pk}", {"code": "NEW", "name": "New"}, 200),
    "type-patch": ("patch", lambda r: f"/instrument-types/{r['kind'].pk}", {"code": "NEW"}, 200),
    "type-delete": ("delete", lambda r: f"/instrument-types/{r['kind'].pk}", None, 204),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("client_fixture", ["api_client", "user_api_client", "admin_api_client"])
def test_permission_matrix(request, operation, client_fixture):
    method, path, payload, ok = OPERATIONS[operation]
    client = request.getfixturevalue(client_fixture)
    rows = _rows()

    response = getattr(client, method)(path(rows), payload, format="json")

    if client_fixture == "admin_api_client" or (client_fixture == "user_api_client" and method == "get"):
        assert response.status_code == ok, response.content
        return
    _assert_error(response, 401 if client_fixture == "api_client" else 403)
    assert Sector.objects.filter(pk=rows["sector"].pk, name="Energy").exists()
    assert InstrumentType.objects.filter(pk=rows["kind"].pk, code="EQ").exists()
    assert not Sector.objects.filter(name="New").exists() and not InstrumentType.objects.filter(code="NEW").exists()
