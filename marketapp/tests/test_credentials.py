"""Provider credentials are encrypted at rest (EncryptedJSONField), checked on the raw column."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import override_settings

from ingestion.models import Provider

pytestmark = pytest.mark.django_db

SECRET = "sekrit-token-123"
CREDENTIALS = {"client_id": "1100001234", "access_token": SECRET}


def _raw_credentials(provider_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM ingestion_provider WHERE id=%s", [provider_id])
        (raw,) = cursor.fetchone()
    return raw


def _dhan(**extra) -> Provider:
    return Provider.objects.create(code="DHAN", name="Dhan", kind="dhan", credentials=CREDENTIALS, **extra)


def test_credentials_are_encrypted_in_the_row():
    provider = _dhan()
    raw = _raw_credentials(provider.pk)
    assert raw.startswith("fernet:")
    assert SECRET not in raw
    assert "1100001234" not in raw
    assert "access_token" not in raw


def test_orm_reads_back_the_dict():
    provider = _dhan()
    fresh = Provider.objects.get(pk=provider.pk)
    assert fresh.credentials == CREDENTIALS
    assert fresh.credentials_set is True


def test_same_value_encrypts_differently_each_time():
    # Fernet tokens carry a random IV, so equal credentials are not recognisable in the table.
    first = _dhan()
    second = Provider.objects.create(code="DHAN2", name="Dhan 2", kind="dhan", credentials=CREDENTIALS)
    assert _raw_credentials(first.pk) != _raw_credentials(second.pk)


def test_empty_credentials_are_stored_encrypted_and_read_as_empty():
    provider = Provider.objects.create(code="SIM", name="Simulator", kind="simulated")
    assert _raw_credentials(provider.pk).startswith("fernet:")
    fresh = Provider.objects.get(pk=provider.pk)
    assert fresh.credentials == {}
    assert fresh.credentials_set is False


def test_queryset_update_encrypts_too():
    provider = _dhan()
    Provider.objects.filter(pk=provider.pk).update(credentials={"access_token": "updated-token-77"})
    assert "updated-token-77" not in _raw_credentials(provider.pk)
    assert Provider.objects.get(pk=provider.pk).credentials == {"access_token": "updated-token-77"}


def test_changed_key_fails_with_a_clear_error():
    provider = _dhan()
    with override_settings(CREDENTIALS_KEY="not-the-key-it-was-written-with"):
        with pytest.raises(ImproperlyConfigured, match=r"cannot be decrypted.*CREDENTIALS_KEY"):
            Provider.objects.get(pk=provider.pk)
        # Rows are still usable without the secret column.
        assert Provider.objects.defer("credentials").get(pk=provider.pk).code == "DHAN"


def test_key_rotation_keeps_old_tokens_readable():
    with override_settings(CREDENTIALS_KEY="old-key"):
        provider = _dhan()
    with override_settings(CREDENTIALS_KEY="new-key,old-key"):
        assert Provider.objects.get(pk=provider.pk).credentials == CREDENTIALS
        provider.save()  # re-encrypted with the newest key
    with override_settings(CREDENTIALS_KEY="new-key"):
        assert Provider.objects.get(pk=provider.pk).credentials == CREDENTIALS
    with override_settings(CREDENTIALS_KEY="old-key"), pytest.raises(ImproperlyConfigured):
        Provider.objects.get(pk=provider.pk)
