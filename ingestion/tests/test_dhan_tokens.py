"""Dhan access tokens: expiry from the JWT, renewal against a local fake of Dhan's RenewToken,
the new token stored encrypted, the outcome in the provider status and /health/, and the
renewal from a running feed's own process."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.test import override_settings

from exchanges.tests.factories import ExchangeFactory
from ingestion.dhan_tokens import dhan_token_renew, dhan_token_status, dhan_tokens_renew_due
from ingestion.engine import Engine
from ingestion.manager import ProviderManager
from ingestion.models import Provider
from ingestion.providers.dhan_token import token_expiry
from ingestion.tests.factories import (
    ExchangeProviderMappingFactory,
    ProviderFactory,
    ProviderInstrumentMappingFactory,
)
from ingestion.tests.fakes.dhan_rest import FakeDhanRest, make_jwt
from ingestion.tests.fakes.dhan_server import FakeDhanServer
from ingestion.tests.test_provider_dhan import CLIENT_ID, FAST
from instruments.tests.factories import InstrumentFactory
from marketdata.live.store.memory import MemoryTickStore

LOCAL = override_settings(PROVIDER_URL_ALLOWED_HOSTS=["127.0.0.1"], DHAN_TOKEN_RENEW_BEFORE_S=3600)


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def _dhan(rest_url: str, *, expires_in_s: float, code: str = "DHAN", **settings) -> Provider:
    token = make_jwt(exp=time.time() + expires_in_s, client_id=CLIENT_ID)
    return ProviderFactory(
        code=code,
        kind=Provider.Kind.DHAN,
        settings={"rest_url": rest_url, **settings},
        credentials={"client_id": CLIENT_ID, "access_token": token},
    )


def test_the_expiry_is_the_jwt_exp_read_without_verifying():
    assert token_expiry(make_jwt(exp=1_750_000_000)) == datetime.fromtimestamp(1_750_000_000, UTC)
    for not_a_jwt in ("", "abc", "a.b.c", "a.e30.c", make_jwt(exp=1).replace(".", "..", 1)):
        assert token_expiry(not_a_jwt) is None


@pytest.mark.django_db
def test_a_token_close_to_expiry_is_renewed_and_stored_encrypted():
    with FakeDhanRest() as fake, LOCAL:
        provider = _dhan(fake.url, expires_in_s=1800)
        old = provider.credentials["access_token"]
        result = dhan_token_renew(provider_code="DHAN")
    assert result["renewed"] is True
    [call] = fake.requests
    assert (call["path"], call["access-token"], call["dhanclientid"]) == ("/v2/RenewToken", old, CLIENT_ID)
    provider.refresh_from_db()
    assert provider.credentials == {"client_id": CLIENT_ID, "access_token": fake.issued[0]}
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials::text FROM ingestion_provider WHERE id = %s", [provider.id])
        assert fake.issued[0] not in cursor.fetchone()[0]  # encrypted at rest
    status = dhan_token_status(provider=provider)
    assert status["renewal"] == "ok" and not status["expired"]
    assert abs((status["expires_at"] - datetime.now(UTC)).total_seconds() - 24 * 3600) < 60


@pytest.mark.django_db
def test_a_token_not_due_is_left_alone():
    with FakeDhanRest() as fake, LOCAL:
        _dhan(fake.url, expires_in_s=5 * 3600)
        assert dhan_tokens_renew_due() == [{"provider": "DHAN", "renewed": False, "skipped": "not due"}]
    assert fake.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("unauthorized", "RenewToken answered HTTP 401: DH-901 expired"),
        ("malformed", "RenewToken answered a body that is not a JSON object"),
        ("no_token", "RenewToken answered no accessToken"),
    ],
)
def test_a_failed_renewal_alerts_keeps_the_token_and_fails_the_health_check(mode, error, caplog, api_client):
    with FakeDhanRest(mode) as fake, LOCAL:
        provider = _dhan(fake.url, expires_in_s=600)
        old = provider.credentials["access_token"]
        with caplog.at_level(logging.ERROR, logger="ingestion.dhan_tokens"):
            [result] = dhan_tokens_renew_due()
    assert result == {"provider": "DHAN", "renewed": False, "error": error}
    assert f"Dhan token renewal failed for DHAN: {error}" in caplog.text
    provider.refresh_from_db()
    assert provider.credentials["access_token"] == old
    status = dhan_token_status(provider=provider)
    assert (status["renewal"], status["renewal_error"], status["expired"]) == ("failed", error, False)

    response = api_client.get("/health/")
    body = response.json()
    assert response.status_code == 503, body
    assert body["providers"]["ok"] is False and body["providers"]["error"] == "ProviderUnhealthy"
    assert body["providers"]["providers"]["DHAN"]["token_renewal"] == "failed"


@pytest.mark.django_db
def test_a_rest_url_on_a_foreign_host_gets_no_token():
    with FakeDhanRest() as fake:  # not allowed: PROVIDER_URL_ALLOWED_HOSTS is empty
        _dhan(fake.url, expires_in_s=600)
        [result] = dhan_tokens_renew_due()
    assert result["renewed"] is False and "rest_url must point at one of the dhan provider's hosts" in result["error"]
    assert fake.requests == []


@pytest.mark.django_db
def test_an_expired_token_shows_in_the_status_api_and_fails_health(api_client, admin_api_client):
    provider = _dhan("", expires_in_s=-60)
    status = admin_api_client.get(f"/providers/{provider.id}/status").json()
    assert status["token"]["expired"] is True and status["token"]["expires_at"] is not None
    body = api_client.get("/health/").json()
    assert body["status"] == "degraded" and body["providers"]["providers"]["DHAN"]["token_expires_at"]
    assert admin_api_client.get(f"/providers/{ProviderFactory(code='SIM').id}/status").json()["token"] is None


def _streamed_dhan(rest_url: str, feed_url: str) -> None:
    exchange = ExchangeFactory(code="NSE", timezone="Asia/Kolkata")
    dhan = _dhan(rest_url, expires_in_s=600, feed_url=feed_url, **FAST)
    ExchangeProviderMappingFactory(exchange=exchange, provider=dhan, is_primary=True)
    instrument = InstrumentFactory(exchange=exchange, symbol="RELIANCE")
    ProviderInstrumentMappingFactory(provider=dhan, instrument=instrument, search_code="2885", segment="NSE_EQ")


@pytest.mark.django_db(transaction=True)
async def test_the_process_streaming_dhan_renews_its_token_and_reconnects_with_it():
    with FakeDhanRest() as rest, LOCAL, override_settings(DHAN_TOKEN_CHECK_S=0.2):
        async with FakeDhanServer(check_auth=False) as feed:
            await sync_to_async(_streamed_dhan)(rest.url, feed.url)
            manager = ProviderManager(engine=Engine(store=MemoryTickStore()), refresh_s=0.3)
            await manager.start()
            try:
                async with asyncio.timeout(10):
                    while not rest.issued or not any(h.get("token") == rest.issued[0] for h in feed.handshakes):  # noqa: ASYNC110 - the fakes' state
                        await asyncio.sleep(0.05)
            finally:
                await manager.stop()
    assert len(rest.issued) == 1  # renewed once: the new token is not due


@pytest.mark.django_db
def test_credentials_the_current_key_cannot_read_are_a_failed_renewal_not_a_crash(caplog):
    with FakeDhanRest() as fake, LOCAL:
        provider = _dhan(fake.url, expires_in_s=1800)
        with override_settings(CREDENTIALS_KEY="a-different-key"), caplog.at_level(logging.ERROR):
            result = dhan_token_renew(provider_code="DHAN")
            status = dhan_token_status(provider=Provider.objects.defer("credentials").get(pk=provider.pk))
    assert result["renewed"] is False and "CREDENTIALS_KEY" in result["error"]
    assert fake.requests == []
    assert "Dhan token renewal failed for DHAN" in caplog.text
    assert status["renewal"] == "failed" and "CREDENTIALS_KEY" in status["renewal_error"]
    assert status["expires_at"] is None
