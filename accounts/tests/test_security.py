"""Issue 15: forged X-Forwarded-For, per-account login limit, email enumeration, token revocation and chain age."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import RequestFactory
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "Tr1cky-Quokka-Meadow"
NEW_PASSWORD = "Brisk-Otter-Lantern-42"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    # Hundreds of logins here: a slow hash would outlast the short lock windows the tests use.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def login(client: APIClient, email: str, password: str = DEFAULT_PASSWORD, path: str = "/auth/login", **extra):
    return client.post(path, {"email": email, "password": password}, format="json", **extra)


def seed_login(client: APIClient, email: str, password: str = DEFAULT_PASSWORD, **extra):
    return client.post("/seed/auth/login", {"username_or_email": email, "password": password}, format="json", **extra)


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


# --- client address -------------------------------------------------------------------------


def test_forged_forwarded_for_does_not_bypass_the_login_throttle():
    """60 wrong passwords, each with another X-Forwarded-For from one socket peer: 429 long before the 60th."""
    UserFactory(email="ada@example.com")
    client = APIClient(REMOTE_ADDR="203.0.113.7")

    statuses = [
        login(client, "ada@example.com", f"wrong-{i}", HTTP_X_FORWARDED_FOR=f"198.51.{i}.{i}").status_code
        for i in range(60)
    ]

    assert 429 in statuses
    assert statuses.index(429) <= 20


def test_rotating_accounts_from_one_address_hits_the_address_limit():
    client = APIClient(REMOTE_ADDR="203.0.113.8")

    statuses = [
        login(client, f"victim{i}@example.com", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}").status_code
        for i in range(30)
    ]

    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}


def test_registration_with_forged_forwarded_for_is_throttled():
    client = APIClient(REMOTE_ADDR="203.0.113.9")

    statuses = [
        client.post(
            "/auth/register",
            {"email": f"bot{i}@example.com", "password": STRONG_PASSWORD},
            format="json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        ).status_code
        for i in range(30)
    ]

    assert 429 in statuses
    assert User.objects.count() <= 20


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not a proxy: the header is ignored
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # forged left part ignored
        ("10.0.0.5", "6.6.6.6, 198.51.100.1, 10.0.0.9", "198.51.100.1"),  # chain of trusted proxies
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "not-an-address", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.7, 10.0.0.9", "10.0.0.7"),  # every hop trusted: the left-most
        ("2001:db8::5", "198.51.100.1", "198.51.100.1"),
    ],
)
def test_client_address_trusts_forwarded_for_from_configured_proxies_only(settings, remote, forwarded, expected):
    from core.api.client_ip import client_address

    settings.TRUSTED_PROXIES = "10.0.0.0/8, 2001:db8::/32"
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_address(request) == expected


def test_client_address_ignores_forwarded_for_without_trusted_proxies(settings):
    from core.api.client_ip import client_address

    settings.TRUSTED_PROXIES = ""
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1")

    assert client_address(request) == "10.0.0.5"


def test_trusted_proxy_forwarded_for_separates_clients_behind_it(settings):
    settings.TRUSTED_PROXIES = "10.0.0.5"
    proxy = APIClient(REMOTE_ADDR="10.0.0.5")
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "3/min"}}
    settings.REST_FRAMEWORK = rest_framework

    first = [login(proxy, "x@example.com", "w", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code for _ in range(4)]
    other = login(proxy, "y@example.com", "w", HTTP_X_FORWARDED_FOR="198.51.100.2").status_code
    # A client behind the proxy forging its own header still lands in its own bucket.
    forged = login(proxy, "z@example.com", "w", HTTP_X_FORWARDED_FOR="198.51.100.2, 198.51.100.1").status_code

    assert first == [401, 401, 401, 429]
    assert other == 401
    assert forged == 429


def test_allauth_uses_the_same_client_address(settings):
    from allauth.account.adapter import get_adapter

    settings.TRUSTED_PROXIES = ""
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1")

    assert get_adapter(request).get_client_ip(request) == "203.0.113.7"


# --- per-account login limit ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/login", "/seed/auth/login"])
def test_account_locks_after_failures_from_many_addresses(settings, path):
    settings.SEED_COMPAT = True
    settings.ROOT_URLCONF = "seedcompat.tests.urlconf"
    settings.LOGIN_FAILURE_LIMIT = 10
    settings.LOGIN_FAILURE_WINDOW_S = 600
    UserFactory(email="ada@example.com")

    def attempt(i: int, password: str):
        client = APIClient(REMOTE_ADDR=f"198.51.{i // 250}.{i % 250 + 1}")
        if path == "/auth/login":
            return login(client, "ADA@example.com", password)
        return seed_login(client, "ada@example.com", password)

    statuses = [attempt(i, f"wrong-{i}").status_code for i in range(60)]
    locked = attempt(100, DEFAULT_PASSWORD)

    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 600
    assert "access" not in locked.json() and "access_token" not in locked.json()


def test_a_locked_account_opens_when_the_window_passes(settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.LOGIN_FAILURE_WINDOW_S = 2
    UserFactory(email="ada@example.com")

    for i in range(2):
        assert login(APIClient(REMOTE_ADDR=f"198.51.100.{i + 1}"), "ada@example.com", "wrong").status_code == 401
    locked = login(APIClient(REMOTE_ADDR="198.51.100.9"), "ada@example.com")
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 2

    time.sleep(2.2)
    assert login(APIClient(REMOTE_ADDR="198.51.100.10"), "ada@example.com").status_code == 200


def test_a_successful_login_clears_the_failures(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    UserFactory(email="ada@example.com")

    for i in range(2):
        assert login(APIClient(REMOTE_ADDR=f"198.51.100.{i + 1}"), "ada@example.com", "wrong").status_code == 401
    assert login(APIClient(REMOTE_ADDR="198.51.100.9"), "ada@example.com").status_code == 200
    for i in range(2):
        assert login(APIClient(REMOTE_ADDR=f"198.51.100.{i + 20}"), "ada@example.com", "wrong").status_code == 401
    assert login(APIClient(REMOTE_ADDR="198.51.100.30"), "ada@example.com").status_code == 200


# --- registration does not reveal taken emails ----------------------------------------------


def test_registering_a_taken_email_answers_like_a_free_one():
    UserFactory(email="taken@example.com")
    client = APIClient()

    taken = client.post("/auth/register", {"email": "Taken@Example.com", "password": STRONG_PASSWORD}, format="json")
    free = client.post("/auth/register", {"email": "free@example.com", "password": STRONG_PASSWORD}, format="json")

    assert taken.status_code == free.status_code
    assert set(taken.json()) == set(free.json())
    assert taken.json() == {**free.json(), "email": "taken@example.com"}
    assert User.objects.filter(email="free@example.com").exists()
    assert User.objects.count() == 2


def test_registering_a_taken_email_with_a_weak_password_answers_like_a_free_one():
    UserFactory(email="taken@example.com")
    client = APIClient()

    taken = client.post("/auth/register", {"email": "taken@example.com", "password": "123"}, format="json")
    free = client.post("/auth/register", {"email": "free@example.com", "password": "123"}, format="json")

    assert taken.status_code == free.status_code == 400
    assert taken.json() == free.json()


# --- refresh and access tokens end with a password change, reset, deactivation, logout-all ----


def _pair(email: str) -> dict:
    response = login(APIClient(REMOTE_ADDR="192.0.2.50"), email)
    assert response.status_code == 200, response.json()
    return response.json()


def _admin() -> APIClient:
    admin = User.objects.create_superuser(email="root@example.com", password=STRONG_PASSWORD)
    return bearer(str(RefreshToken.for_user(admin).access_token))


def _change_password(user, pair, settings):
    response = bearer(pair["access"]).post(
        "/auth/change-password", {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.json()


def _seed_change_password(user, pair, settings):
    response = bearer(pair["access"]).post(
        "/seed/user/change-password", {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.json()


def _admin_reset_temporary(user, pair, settings):
    response = _admin().post(f"/users/{user.pk}/reset-password", {"mode": "temporary"}, format="json")
    assert response.status_code == 200, response.json()


def _admin_reset_link(user, pair, settings):
    response = _admin().post(f"/users/{user.pk}/reset-password", {"mode": "link"}, format="json")
    assert response.status_code == 202, response.json()


def _reset_link_confirm(user, pair, settings):
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(User.objects.get(pk=user.pk))  # last_login changed at sign-in
    response = APIClient().post(
        "/auth/reset-password/confirm", {"uid": uid, "token": token, "new_password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 204, response.content


def _seed_admin_reset(user, pair, settings):
    response = _admin().post(f"/seed/user/{user.pk}/reset-password", {"new_password": NEW_PASSWORD}, format="json")
    assert response.status_code == 200, response.json()


def _deactivate(user, pair, settings):
    response = _admin().patch(f"/users/{user.pk}", {"is_active": False}, format="json")
    assert response.status_code == 200, response.json()


def _reject(user, pair, settings):
    response = _admin().patch(f"/users/{user.pk}", {"status": "rejected"}, format="json")
    assert response.status_code == 200, response.json()


def _logout_all(user, pair, settings):
    response = bearer(pair["access"]).post("/auth/logout-all", format="json")
    assert response.status_code == 204, response.content


def _django_set_password(user, pair, settings):
    # Any other path (Django admin, allauth, manage.py changepassword) goes through set_password + save.
    user = User.objects.get(pk=user.pk)
    user.set_password(NEW_PASSWORD)
    user.save()


REVOKERS = [
    _change_password,
    _seed_change_password,
    _admin_reset_temporary,
    _admin_reset_link,
    _reset_link_confirm,
    _seed_admin_reset,
    _deactivate,
    _reject,
    _logout_all,
    _django_set_password,
]


@pytest.mark.parametrize("revoke", REVOKERS, ids=[f.__name__.lstrip("_") for f in REVOKERS])
def test_older_tokens_are_refused_after(settings, revoke):
    settings.SEED_COMPAT = True
    settings.ROOT_URLCONF = "seedcompat.tests.urlconf"
    user = UserFactory(email="ada@example.com")
    older = _pair("ada@example.com")
    rotated = APIClient().post("/auth/refresh", {"refresh": older["refresh"]}, format="json").json()
    assert bearer(older["access"]).get("/auth/me").status_code == 200

    revoke(user, older, settings)

    refreshed = APIClient().post("/auth/refresh", {"refresh": rotated["refresh"]}, format="json")
    assert refreshed.status_code == 401, refreshed.json()
    for access in (older["access"], rotated["access"]):
        assert bearer(access).get("/auth/me").status_code in (401, 403)
        assert bearer(access).get("/watchlists/").status_code in (401, 403)


def test_the_pair_answered_by_a_password_change_keeps_working():
    UserFactory(email="ada@example.com")
    older = _pair("ada@example.com")

    fresh = bearer(older["access"]).post(
        "/auth/change-password", {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert fresh.status_code == 200
    assert bearer(fresh.json()["access"]).get("/auth/me").status_code == 200
    assert APIClient().post("/auth/refresh", {"refresh": fresh.json()["refresh"]}, format="json").status_code == 200


def test_logout_all_requires_authentication():
    assert APIClient().post("/auth/logout-all").status_code == 401


def test_seed_lone_access_token_is_refused_after_logout_all(settings):
    settings.SEED_COMPAT = True
    settings.ROOT_URLCONF = "seedcompat.tests.urlconf"
    UserFactory(email="ada@example.com")
    seed_token = seed_login(APIClient(), "ada@example.com").json()["access_token"]
    pair = _pair("ada@example.com")

    assert bearer(pair["access"]).post("/auth/logout-all").status_code == 204

    assert bearer(seed_token).get("/auth/me").status_code == 401


def test_every_issued_refresh_token_is_outstanding():
    user = UserFactory(email="ada@example.com")
    pair = _pair("ada@example.com")
    second = APIClient().post("/auth/refresh", {"refresh": pair["refresh"]}, format="json").json()

    jtis = {RefreshToken(second["refresh"], verify=False)["jti"], RefreshToken(pair["refresh"], verify=False)["jti"]}
    assert set(OutstandingToken.objects.filter(user=user).values_list("jti", flat=True)) >= jtis


# --- a refresh chain's absolute age ---------------------------------------------------------


def test_a_refresh_chain_older_than_the_max_age_is_refused(settings):
    # auth_time is whole seconds (truncated), so a chain may look up to 1 s older than it is:
    # the first refresh comes well inside the limit, the second well past it.
    settings.JWT_REFRESH_MAX_AGE_S = 3
    UserFactory(email="ada@example.com")
    refresh = _pair("ada@example.com")["refresh"]
    first_auth_time = RefreshToken(refresh)["auth_time"]

    time.sleep(0.5)
    rotated = APIClient().post("/auth/refresh", {"refresh": refresh}, format="json")
    assert rotated.status_code == 200
    assert RefreshToken(rotated.json()["refresh"])["auth_time"] == first_auth_time
    time.sleep(3.1)
    # The rotated token is ~3 s old, but the chain began over 3.5 s ago.
    refused = APIClient().post("/auth/refresh", {"refresh": rotated.json()["refresh"]}, format="json")

    assert refused.status_code == 401, refused.json()


def test_a_fresh_refresh_token_never_outlives_its_chain(settings):
    settings.JWT_REFRESH_MAX_AGE_S = 3600
    UserFactory(email="ada@example.com")
    token = RefreshToken(_pair("ada@example.com")["refresh"])

    assert token["exp"] <= token["auth_time"] + 3600


def test_history_endpoints_refuse_a_revoked_token_despite_their_user_cache(settings):
    """The history views cache the user row (HISTORY_AUTH_CACHE_S); a revocation in this process drops it."""
    settings.HISTORY_AUTH_CACHE_S = 10
    UserFactory(email="ada@example.com")
    pair = _pair("ada@example.com")
    client = bearer(pair["access"])
    assert client.get("/marketdata/intraday", {"symbol": "NOSUCH"}).status_code not in (401, 403)

    assert bearer(pair["access"]).post("/auth/logout-all").status_code == 204

    assert client.get("/marketdata/intraday", {"symbol": "NOSUCH"}).status_code == 401
