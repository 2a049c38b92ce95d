"""Shared fixtures: users and API clients for each role."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _demo_settings_for_tests(settings):
    """Tests seed the demo set without synthetic history (a test that wants it asks) and with a
    simulator trading around the clock, so no test depends on the hour it runs at."""
    settings.DEMO_HISTORY_SESSIONS = 0
    settings.SIM_FOLLOW_SESSIONS = False
    # Never in the test process itself: its clean-up relies on collecting what tests left
    # behind (server processes the tests start freeze as in production).
    settings.GC_FREEZE_AT_START = False


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes():
    """PBKDF2 at 1,000 iterations in the test process instead of Django's 1,000,000 (~0.45 s a
    hash on this machine, paid by every user a test creates and every login it makes).

    The hashes keep the production algorithm and carry their iteration count, so the servers
    tests start in subprocesses (real settings) verify them as they are (upgrading them on a
    login, as Django upgrades any older hash). Production settings are not touched.
    """
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    saved = PBKDF2PasswordHasher.iterations
    PBKDF2PasswordHasher.iterations = 1000
    yield
    PBKDF2PasswordHasher.iterations = saved


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """Before the test database is dropped (``--create-db``, as CI runs), no session may stay on
    it: the threads that outlive a test (asgiref's shared sync thread) give their connections
    back, connections abandoned with a finished thread or event loop are collected (and closed),
    and the history route's async pool is dropped; Django then closes its own pool."""
    yield
    import asyncio
    import gc

    from asgiref.sync import SyncToAsync
    from django.db import connections

    from marketdata.api.history_route import close_history_pool

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    asyncio.run(close_history_pool())
    gc.collect()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(email="user@example.com", password="pw-user-12345")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user(
        email="admin@example.com", password="pw-admin-12345", role="admin", is_staff=True
    )


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(email="root@example.com", password="pw-root-12345")


def _jwt_client(user):
    """An APIClient that sends a real access token for the user, as an API client would."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    client.user = user
    return client


@pytest.fixture
def api_client():
    """Anonymous APIClient (expect 401 on protected endpoints)."""
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def user_api_client(user):
    """APIClient authenticated as ``user`` (role user) with a real JWT; ``.user`` is the user."""
    return _jwt_client(user)


@pytest.fixture
def admin_api_client(admin_user):
    """APIClient authenticated as ``admin_user`` (role admin) with a real JWT; ``.user`` is the user."""
    return _jwt_client(admin_user)
