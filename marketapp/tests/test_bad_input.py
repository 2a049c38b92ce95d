"""Bodies that are not what an operation takes answer the documented 400, never a 5xx.

Every operation with a request body in ``/openapi.json`` gets, as an admin (so no permission
check answers first) and with real ids in its path (so no 404 answers first), a JSON ``null``,
an array, a string, a number and an empty object, an empty and a nonsense form, and a
multipart body without a boundary. Before ``core.api.parsers.JSONObjectParser``,
``POST /populate/instruments/`` answered ``null`` with a 500 (``"url" in None``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"

# (label, content type, raw body, must the answer be a 400?) An empty object or form is a
# valid body where every field is optional (PATCH), so those only must not be a 5xx.
BODIES: list[tuple[str, str, bytes, bool]] = [
    ("json null", JSON, b"null", True),
    ("json array", JSON, b"[]", True),
    ("json array of object", JSON, b"[{}]", True),
    ("json string", JSON, b'"x"', True),
    ("json number", JSON, b"1", True),
    ("json true", JSON, b"true", True),
    ("json object", JSON, b"{}", False),
    ("broken json", JSON, b"{", True),
    ("form nonsense", FORM, b"x", False),
    ("multipart without boundary", MULTIPART, b"x", True),
]


def error_problem(response, *, want_400: bool) -> str | None:
    """What is wrong with the answer to a bad body, or None when it is as documented."""
    code = response.status_code
    if code >= 500:
        return f"{code} {response.content[:300]!r}"
    if want_400 and code != 400:
        return f"{code} instead of 400: {response.content[:300]!r}"
    if code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{code} not JSON: {response.content[:300]!r}"
    if not isinstance(body, dict) or set(body) - {"detail", "status_code", "errors"}:
        return f"{code} not the error format: {body!r}"
    if not isinstance(body.get("detail"), str) or body.get("status_code") != code:
        return f"{code} not the error format: {body!r}"
    errors = body.get("errors", {})
    if not isinstance(errors, dict) or not all(
        isinstance(v, list) and all(isinstance(m, str) for m in v) for v in errors.values()
    ):
        return f"{code} errors not {{field: [messages]}}: {body!r}"
    return None


@pytest.fixture
def world(db, django_user_model) -> dict[str, Any]:
    """The demo data plus one of everything a path can name, and an admin's client."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import Watchlist
    from exchanges.models import ExchangeHoliday
    from ingestion.models import ExchangeProviderMapping, ProviderInstrumentMapping
    from instruments.models import Instrument, InstrumentType, Sector
    from seedcompat.models import Suggestion, SuggestionType

    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    admin = django_user_model.objects.create_user(email="bad-input@example.com", password="pw-bad-12345", role="admin")
    viewer = django_user_model.objects.create_user(email="viewer@example.com", password="pw-viewer-12345")
    exchange_mapping = ExchangeProviderMapping.objects.select_related("exchange").first()
    instrument_mapping = ProviderInstrumentMapping.objects.first()
    holiday = ExchangeHoliday.objects.create(exchange=exchange_mapping.exchange, date="2030-01-02", name="x")
    suggestion_type = SuggestionType.objects.create(name="Feature")
    suggestion = Suggestion.objects.create(user=admin, suggestion_type=suggestion_type, title="t", description="d")
    client = APIClient(raise_request_exception=False)  # a 500 is a finding to list, not a crash
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(admin).access_token}")
    return {
        "client": client,
        "admin": admin,
        "viewer": viewer,
        "exchange": exchange_mapping.exchange,
        "exchange_mapping": exchange_mapping,
        "provider": instrument_mapping.provider,
        "instrument_mapping": instrument_mapping,
        "holiday": holiday,
        "instrument": Instrument.objects.first(),
        "sector": Sector.objects.first(),
        "instrument_type": InstrumentType.objects.first(),
        "watchlist": Watchlist.objects.create(user=admin, name="Mine"),
        "suggestion_type": suggestion_type,
        "suggestion": suggestion,
    }


def _path_ids(path: str, world: dict[str, Any]) -> dict[str, int]:
    """Real ids for the parameters of one of our paths (``/exchange/{exchange_id}/holidays/{holiday_id}/``)."""
    first = path.strip("/").split("/")[0]
    by_collection = {
        "exchange": "exchange",
        "instruments": "instrument",
        "sectors": "sector",
        "instrument-types": "instrument_type",
        "providers": "provider",
    }
    mapping = "exchange_mapping" if first == "exchange" else "instrument_mapping"
    ids = {
        "id": world[by_collection[first]].pk if first in by_collection else 0,
        "exchange_id": world["exchange"].pk,
        "holiday_id": world["holiday"].pk,
        "provider_id": world["provider"].pk,
        "mapping_id": world[mapping].pk,
        "user_id": world["viewer"].pk,
        "watchlist_id": world["watchlist"].pk,
    }
    return {name: value for name, value in ids.items() if "{" + name + "}" in path}


def _operations_with_a_body(client) -> list[tuple[str, str, set[str]]]:
    schema = client.get("/openapi.json").json()
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                found.append((method, path, set(operation["requestBody"]["content"])))
    return found


def test_every_request_body_in_the_schema_is_an_object(client):
    """JSONObjectParser refuses anything else; a view that takes an array must opt out (see its docstring)."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for method, path, media_types in _operations_with_a_body(client):
        for media_type in media_types:
            body_schema = schema["paths"][path][method]["requestBody"]["content"][media_type]["schema"]
            if "$ref" in body_schema:
                body_schema = components[body_schema["$ref"].rsplit("/", 1)[1]]
            assert body_schema.get("type") == "object", (method, path, media_type, body_schema)


@pytest.mark.parametrize(("label", "content_type", "raw", "want_400"), BODIES, ids=[b[0] for b in BODIES])
def test_every_operation_answers_a_bad_body_with_the_documented_400(world, label, content_type, raw, want_400):
    client = world["client"]
    operations = _operations_with_a_body(client)
    assert len(operations) >= 30
    failures = []
    for method, path, media_types in operations:
        if content_type not in media_types and not (content_type == JSON and label == "broken json"):
            continue
        cache.clear()  # the sign-in endpoints' throttle must not answer first
        url = path.format(**_path_ids(path, world))
        response = client.generic(method.upper(), url, raw, content_type=content_type)
        if problem := error_problem(response, want_400=want_400):
            failures.append(f"{method.upper()} {url}: {problem}")
    assert not failures, "\n".join(failures)


def test_populate_instruments_with_a_null_body_is_a_400(world):
    """The example the property-based run found (a TypeError, 500, before)."""
    response = world["client"].generic("POST", "/populate/instruments/", b"null", content_type=JSON)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Expected a JSON object, got null.",
        "status_code": 400,
        "errors": {"non_field_errors": ["Expected a JSON object, got null."]},
    }


@pytest.mark.parametrize("raw", [b"null", b"[]", b'"x"', b"1"])
def test_anonymous_and_viewer_meet_authentication_and_permission_first(world, api_client, user_api_client, raw):
    """A bad body never turns a 401 or 403 into something else."""
    anonymous = api_client.generic("POST", "/populate/instruments/", raw, content_type=JSON)
    assert anonymous.status_code == 401
    viewer = user_api_client.generic("POST", "/populate/instruments/", raw, content_type=JSON)
    assert viewer.status_code == 403
    cache.clear()
    login = api_client.generic("POST", "/auth/login", raw, content_type=JSON)  # open to anyone: the body is read
    assert login.status_code == 400, login.content
    assert json.loads(login.content)["status_code"] == 400
