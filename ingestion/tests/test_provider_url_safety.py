"""A provider's credentials go only to its own hosts.

Dhan's access token travels with every REST call and the feed handshake; an admin (or anyone
holding an admin session) who could point ``rest_url``/``feed_url`` elsewhere would receive
it. URL settings are checked against the provider kind's hosts; only the deployment setting
``PROVIDER_URL_ALLOWED_HOSTS`` adds others (the local fakes these tests use). A fake on a
host that is not allowed must receive no request at all.
"""

from __future__ import annotations

import json
from datetime import date, time

import pytest
from django.core.exceptions import ValidationError

from exchanges.tests.factories import ExchangeFactory
from ingestion.admin.providers import ProviderAdminForm
from ingestion.backfill import BackfillError, backfill_plan
from ingestion.backfill.service import history_client_for
from ingestion.jobs import job_run
from ingestion.manager import ProviderManager
from ingestion.models import Provider
from ingestion.services import provider_create, provider_update
from ingestion.streaming import ProviderSpec
from ingestion.tests.factories import ProviderFactory, ProviderInstrumentMappingFactory
from ingestion.tests.fakes.history_stub import HistoryStub
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory

pytestmark = pytest.mark.django_db

TOKEN = "dhan-access-token-never-elsewhere"
CREDENTIALS = {"access_token": TOKEN, "client_id": "1000000001"}


@pytest.fixture
def stub():
    with HistoryStub(dhan_token=TOKEN, dhan_client_id="1000000001") as server:
        yield server


@pytest.fixture
def dhan():
    return provider_create(name="Dhan", code="DHAN", kind="dhan", credentials=dict(CREDENTIALS))


def _history(admin_api_client):
    return admin_api_client.post(
        "/populate/history",
        {"provider": "DHAN", "interval": "1d", "start": "2024-03-11", "end": "2024-03-11"},
        format="json",
    )


def test_an_api_update_pointing_rest_url_elsewhere_is_refused_and_nothing_is_sent(admin_api_client, dhan, stub):
    response = admin_api_client.patch(
        f"/providers/{dhan.pk}", {"settings": {"rest_url": stub.url + "/v2"}}, format="json"
    )

    assert response.status_code == 400, response.content
    assert "settings" in response.json()["errors"]
    dhan.refresh_from_db()
    assert dhan.settings == {}
    _history(admin_api_client)
    assert stub.requests == []


@pytest.mark.parametrize(
    "settings_value",
    [
        {"feed_url": "wss://attacker.example/feed"},
        {"rest_url": "https://api.dhan.co.attacker.example/v2"},
        {"rest_url": "https://attacker.example/api.dhan.co/v2"},
        {"rest_url": "https://api.dhan.co@attacker.example/v2"},
        {"rest_url": "http://api.dhan.co/v2"},  # the right host, but the token would travel in clear
        {"rest_url": "ftp://api.dhan.co/v2"},
        {"rest_url": 12},
    ],
)
def test_foreign_or_insecure_urls_are_refused_on_create_and_update(admin_api_client, settings_value):
    created = admin_api_client.post(
        "/providers/",
        {"name": "Dhan", "code": "DH2", "kind": "dhan", "settings": settings_value, "credentials": CREDENTIALS},
        format="json",
    )
    assert created.status_code == 400, created.content
    assert not Provider.objects.filter(code="DH2").exists()

    yahoo = ProviderFactory(kind="yahoo", settings={})
    with pytest.raises(ValidationError) as info:
        provider_update(provider=yahoo, data={"settings": settings_value})
    assert "settings" in info.value.message_dict


def test_the_real_hosts_are_accepted(admin_api_client, dhan):
    provider_update(
        provider=dhan, data={"settings": {"rest_url": "https://api.dhan.co/v2", "feed_url": "wss://api-feed.dhan.co"}}
    )
    yahoo = ProviderFactory(kind="yahoo", settings={})
    provider_update(
        provider=yahoo,
        data={
            "settings": {
                "rest_url": "https://query1.finance.yahoo.com",
                "feed_url": "wss://streamer.finance.yahoo.com/?version=2",
            }
        },
    )


def test_changing_the_kind_does_not_escape_the_check(dhan):
    sim = ProviderFactory(kind="simulated", settings={"rest_url": "https://attacker.example/v2"})
    with pytest.raises(ValidationError):
        provider_update(provider=sim, data={"kind": "dhan", "credentials": dict(CREDENTIALS)})


def test_the_admin_form_refuses_a_foreign_url(dhan):
    form = ProviderAdminForm(
        data={
            "code": "DHAN",
            "name": "Dhan",
            "kind": "dhan",
            "rate_limit": "5",
            "is_active": "on",
            "settings": '{"feed_url": "wss://attacker.example/"}',
        },
        instance=dhan,
    )

    assert not form.is_valid()
    assert "settings" in form.errors


def test_a_url_stored_before_the_check_sends_nothing(admin_api_client, stub):
    """A row written around the services (an older release, a raw SQL fix) is refused at use."""
    dhan = ProviderFactory(
        code="DHAN", kind="dhan", settings={"rest_url": stub.url + "/v2"}, credentials=dict(CREDENTIALS), rate_limit=50
    )
    nse = ExchangeFactory(code="NSE", timezone="Asia/Kolkata", market_open=time(9, 15), market_close=time(15, 30))
    infy = InstrumentFactory(symbol="INFY", exchange=nse, instrument_type=InstrumentTypeFactory(code="EQ"))
    ProviderInstrumentMappingFactory(provider=dhan, instrument=infy, search_code="1594", segment="NSE_EQ")
    stub.dhan_days("NSE_EQ", "1594", {date(2024, 3, 11): (1600.0, 1620.0, 1590.0, 1610.0, 50000)})

    response = admin_api_client.post(
        "/populate/history",
        {"provider": "DHAN", "interval": "1d", "start": "2024-03-11", "end": "2024-03-11", "symbols": ["INFY"]},
        format="json",
    )
    if response.status_code == 202:  # before the fix: the job ran and called the stub with the token
        job_run(job_id=response.json()["job_id"])
    assert [r.headers.get("access-token") for r in stub.requests] == []  # the access token never left
    with pytest.raises(BackfillError):
        history_client_for(Provider.objects.get(code="DHAN"))
    spec = ProviderSpec(1, "DHAN", "dhan", {"feed_url": stub.url.replace("http", "ws")}, dict(CREDENTIALS))
    with pytest.raises(ValueError, match="feed_url"):
        ProviderManager.build_client(ProviderManager.__new__(ProviderManager), spec)

    assert response.status_code == 400, response.content
    assert "rest_url" in json.dumps(response.json()["errors"])


def test_the_deployment_setting_allows_a_host(admin_api_client, dhan, stub, settings):
    settings.PROVIDER_URL_ALLOWED_HOSTS = [stub.host]

    response = admin_api_client.patch(
        f"/providers/{dhan.pk}", {"settings": {"rest_url": stub.url + "/v2"}}, format="json"
    )

    assert response.status_code == 200, response.content
    assert backfill_plan(provider_code="DHAN", interval="1d", start="2024-03-11", end="2024-03-11").provider == dhan
    assert history_client_for(Provider.objects.get(pk=dhan.pk)).rest_url == stub.url + "/v2"


def test_providers_without_credentials_are_not_restricted():
    provider_create(name="Sim", code="SIMX", kind="simulated", settings={"feed_url": "ws://127.0.0.1:1/"})
