"""Settings from the environment: the embedded default, the stack mode and production checks.

Each case runs ``manage.py`` in a fresh interpreter, since settings are read once per process.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRIP = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "VAR_DIR", "DJANGO_SETTINGS_MODULE")


def manage(*args: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in STRIP}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_production_without_secret_key_is_a_clear_error(tmp_path):
    result = manage("check", env={"DEBUG": "false", "ALLOWED_HOSTS": "example.com", "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=false" in result.stderr


def test_production_without_allowed_hosts_is_a_clear_error(tmp_path):
    env = {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(60), "VAR_DIR": str(tmp_path)}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set when DEBUG=false" in result.stderr


def test_check_deploy_is_clean_in_production(tmp_path):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "markets.example.com",
        "VAR_DIR": str(tmp_path),
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_embedded_default_migrates_sqlite_and_keeps_its_generated_secret(tmp_path):
    """Nothing set: SQLite under VAR_DIR, a generated key written once and reused."""
    result = manage("migrate", "--noinput", env={"VAR_DIR": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "marketapp.sqlite3"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "accounts_user",
        "exchanges_exchange",
        "instruments_instrument",
        "marketdata_pricehistoryintraday",
    } <= tables
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    manage("check", env={"VAR_DIR": str(tmp_path)})
    assert (tmp_path / "secret_key").read_text() == key


@pytest.mark.parametrize("mode", ["embedded", "stack"])
def test_channel_layer_and_database_follow_the_environment(tmp_path, mode):
    env = {"VAR_DIR": str(tmp_path)}
    if mode == "stack":
        env |= {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE']);"
        "print(s.CHANNEL_LAYERS['default']['BACKEND']);"
        "print(s.USE_TZ, s.TIME_ZONE)"
    )
    result = manage("shell", "--no-imports", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    engine, layer, tz = result.stdout.split("\n")[:3]
    if mode == "stack":
        assert engine == "core.db_backend"  # Django's PostgreSQL backend with its pool (DB_POOL)
        assert layer == "channels_redis.pubsub.RedisPubSubChannelLayer"
    else:
        assert engine == "django.db.backends.sqlite3"
        assert layer == "channels.layers.InMemoryChannelLayer"
    assert tz == "True UTC"
