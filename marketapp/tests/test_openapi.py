"""The OpenAPI schema: it validates, documents every endpoint, and the API keeps its word.

The schemathesis run drives every operation in-process (WSGI, real PostgreSQL) with a fixed,
deterministic budget of generated examples (valid and invalid, the same ones every run), once
as an anonymous caller, once as a viewer (role user) and once as an admin so writes are
exercised too, and checks that nothing answers 5xx and that every response matches its
documented status, media type and body schema. The three runs take about a minute and a half
on two cores (more under load). What such runs found is kept as explicit regression tests
(``marketapp/tests/test_bad_input.py``: a ``null`` body to ``POST /populate/instruments/`` was a 500).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import schemathesis
from django.core.cache import cache
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from marketapp.wsgi import application

MAX_EXAMPLES = 25  # per operation and role; derandomized, so every run sends the same requests
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_schema(db):
    # As Django's test client does: requests must not close the test transaction's connection.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/openapi.json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


ROLES = ["anonymous", "user", "admin"]


@pytest.fixture
def caller_headers(request, db, django_user_model) -> Callable[[], dict[str, str]]:
    """Headers for each request as the parametrised role: none, or a viewer's or an admin's JWT.

    A fresh token per request: a generated ``POST /auth/logout-all`` revokes every earlier one,
    and the rest of the run must still reach past authentication.
    """
    from rest_framework_simplejwt.tokens import RefreshToken

    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    role = request.param
    if role == "anonymous":
        return dict
    user = django_user_model.objects.create_user(email=f"fuzz-{role}@example.com", password="fuzz-pass-123", role=role)

    def headers() -> dict[str, str]:
        fresh = django_user_model.objects.get(pk=user.pk)
        return {"Authorization": f"Bearer {RefreshToken.for_user(fresh).access_token}"}

    return headers


# The Google login operations start a browser redirect flow (tested in accounts/tests/test_google_login.py).
SKIP_PATHS = ("/auth/google/",)


@pytest.mark.parametrize("caller_headers", ROLES, indirect=True)
def test_api_conforms_to_its_schema(api_schema, caller_headers):
    """Every operation, a fixed number of valid and invalid examples each; all failures reported together."""
    cache.clear()  # throttle counters of an earlier run must not answer first
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(SKIP_PATHS):
            continue
        operations += 1

        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case):
            case.call_and_validate(headers=caller_headers(), checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect: one run shows every non-conforming operation
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)


def test_schema_validates_and_lists_every_path(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    # Every path answers with and without a trailing slash; the schema names one form.
    paths = {p.rstrip("/") or "/" for p in response.json()["paths"]}
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/me",
        "/exchange/",
        "/exchange/{id}",
        "/exchange/{exchange_id}/providers",
        "/providers/{provider_id}/instruments",
        "/marketdata/quote",
        "/instruments/",
        "/providers/",
        "/marketdata/intraday",
        "/marketdata/daily",
        "/health/",
    ]:
        assert path.rstrip("/") in paths, sorted(paths)
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_swagger_and_redoc_pages(client):
    assert client.get("/").status_code == 200
    assert client.get("/redoc").status_code == 200


def test_unknown_paths_and_methods_answer_in_the_error_format(client, user_api_client):
    missing = client.get("/no/such/api/path")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found.", "status_code": 404}
    wrong = user_api_client.delete("/health/")
    assert wrong.status_code == 405
    assert wrong.json()["status_code"] == 405
