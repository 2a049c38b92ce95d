"""Model fields: JSON encrypted at rest (Fernet, key from CREDENTIALS_KEY or SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


def _fernet() -> MultiFernet:
    """Fernet keyed from CREDENTIALS_KEY (comma-separated for rotation, newest first) or SECRET_KEY."""
    raw = settings.CREDENTIALS_KEY or settings.SECRET_KEY
    keys = []
    for part in [p.strip() for p in raw.split(",") if p.strip()] or [settings.SECRET_KEY]:
        digest = hashlib.sha256(f"marketapp-credentials:{part}".encode()).digest()
        keys.append(Fernet(base64.urlsafe_b64encode(digest)))
    return MultiFernet(keys)


class EncryptedJSONField(models.TextField):
    """A dict stored as a Fernet token; the plaintext never reaches the database."""

    description = "JSON encrypted at rest"

    def from_db_value(self, value: str | None, expression, connection) -> dict[str, Any]:
        return self.to_python(value)

    def to_python(self, value: Any) -> dict[str, Any]:
        if value is None or value == "":
            return {}
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and value.startswith(PREFIX):
            try:
                plain = _fernet().decrypt(value[len(PREFIX) :].encode())
            except InvalidToken as exc:
                raise ImproperlyConfigured(
                    "Stored credentials cannot be decrypted: CREDENTIALS_KEY/SECRET_KEY changed?"
                ) from exc
            return json.loads(plain)
        return json.loads(value)

    def get_prep_value(self, value: Any) -> str:
        value = value or {}
        if isinstance(value, str):
            value = self.to_python(value)
        token = _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()
        return PREFIX + token

    def value_to_string(self, obj) -> str:
        return self.get_prep_value(self.value_from_object(obj))
