"""Seed front end sign-in and registration: ``POST /seed/auth/login`` and ``POST /seed/auth/register``."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "Tr1cky-Quokka-Meadow"
USER_IN_DB_KEYS = {
    "id",
    "email",
    "fname",
    "lname",
    "username",
    "profile_picture_url",
    "blacklisted",
    "role_id",
    "is_active",
    "status",
}


@pytest.fixture(autouse=True)
def _clear_throttle_counters():
    cache.clear()
    yield
    cache.clear()


def assert_error(response, status_code: int) -> dict:
    """An error the seed front end can show: JSON with a non-empty string ``detail``."""
    body = response.json()
    assert response.status_code == status_code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def login(client: APIClient, who: str, password: str = DEFAULT_PASSWORD, path: str = "/seed/auth/login"):
    return client.post(path, {"username_or_email": who, "password": password}, format="json")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- login ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/seed/auth/login", "/seed/auth/login/"])
def test_login_answers_a_bearer_token_and_the_user_in_the_seed_shape(api_client, path):
    user = UserFactory(email="ada@example.com", first_name="Ada", last_name="Lovelace")

    response = login(api_client, "ada@example.com", path=path)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"access_token", "token_type", "user"}
    assert body["token_type"] == "bearer"
    assert body["user"] == {
        "id": user.id,
        "email": "ada@example.com",
        "fname": "Ada",
        "lname": "Lovelace",
        "username": "Ada Lovelace",
        "profile_picture_url": None,
        "blacklisted": False,
        "role_id": 2,
        "is_active": True,
        "status": 1,
    }
    # The token is one of ours: it opens our own API too.
    me = bearer(body["access_token"]).get("/auth/me")
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"


def test_login_of_an_admin_says_role_1_and_the_email_is_matched_in_any_case(api_client):
    UserFactory(email="root@example.com", role=User.Role.ADMIN, first_name="", last_name="")

    response = login(api_client, "  ROOT@Example.com ")

    assert response.status_code == 200, response.json()
    user = response.json()["user"]
    assert user["role_id"] == 1
    assert user["fname"] is None and user["lname"] is None
    assert user["username"] == "root"  # no name stored: the email's local part


def test_a_superuser_is_an_admin_for_the_front_end(api_client, superuser):
    response = login(api_client, "root@example.com", "pw-root-12345")

    assert response.status_code == 200
    assert response.json()["user"]["role_id"] == 1


def test_the_token_lives_as_configured_and_has_no_refresh_token(api_client, settings):
    settings.SEED_COMPAT_ACCESS_LIFETIME_S = 4321
    UserFactory(email="ada@example.com")

    response = login(api_client, "ada@example.com")

    token = AccessToken(response.json()["access_token"])
    assert token["exp"] - token["iat"] == 4321
    assert token["token_type"] == "access"
    assert not OutstandingToken.objects.exists()


def test_login_records_the_last_login(api_client):
    user = UserFactory(email="ada@example.com")

    login(api_client, "ada@example.com")

    user.refresh_from_db()
    assert user.last_login is not None


@pytest.mark.parametrize(
    ("who", "password"),
    [
        ("ada@example.com", "wrong-password-1"),
        ("nobody@example.com", DEFAULT_PASSWORD),
        ("ada", DEFAULT_PASSWORD),  # no user names here: the email is the sign-in name
    ],
)
def test_wrong_credentials_are_a_401_invalid_credentials(api_client, who, password):
    UserFactory(email="ada@example.com", first_name="ada", last_name="")

    response = login(api_client, who, password)

    body = assert_error(response, 401)
    assert body["detail"] == "Invalid credentials"


def test_a_blacklisted_user_cannot_log_in(api_client):
    UserFactory(email="ada@example.com", is_active=False)

    response = login(api_client, "ada@example.com")

    assert assert_error(response, 401)["detail"] == "Invalid credentials"


@pytest.mark.parametrize(
    ("status", "code"),
    [(User.Status.PENDING, 0), (User.Status.REJECTED, 2)],
)
def test_pending_and_rejected_users_log_in_but_get_no_data(api_client, status, code):
    # An admin account, so even the admin routes are tried: approval comes first.
    UserFactory(email="wait@example.com", status=status, role=User.Role.ADMIN)

    response = login(api_client, "wait@example.com")

    assert response.status_code == 200, response.json()
    user = response.json()["user"]
    assert user["status"] == code
    assert user["is_active"] is False  # the seed's "approved" flag
    assert user["blacklisted"] is False
    client = bearer(response.json()["access_token"])
    for path in ("/seed/user/?user_status=0", "/exchange/", "/auth/me"):
        refused = assert_error(client.get(path), 403)
        assert refused["detail"].startswith(("account_pending", "account_rejected")), path


def test_a_token_stops_working_once_the_user_is_rejected(api_client):
    user = UserFactory(email="ada@example.com")
    client = bearer(login(api_client, "ada@example.com").json()["access_token"])
    user.status = User.Status.REJECTED
    user.save()

    assert assert_error(client.get("/auth/me"), 403)["detail"].startswith("account_rejected")


def test_a_stale_authorization_header_does_not_block_a_login():
    UserFactory(email="ada@example.com")
    client = bearer("not-a-token")

    response = login(client, "ada@example.com")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username_or_email": "ada@example.com"},
        {"password": DEFAULT_PASSWORD},
        {"email": "ada@example.com", "password": DEFAULT_PASSWORD},
        {"username_or_email": "ada@example.com", "password": DEFAULT_PASSWORD, "remember": True},
        {"username_or_email": "x" * 300, "password": DEFAULT_PASSWORD},
    ],
)
def test_bad_login_bodies_are_a_400_with_a_text_detail(api_client, body):
    UserFactory(email="ada@example.com")

    response = api_client.post("/seed/auth/login", body, format="json")

    assert_error(response, 400)


def test_a_login_body_that_is_not_json_is_a_400(api_client):
    response = api_client.post("/seed/auth/login", "{not json", content_type="application/json")

    assert_error(response, 400)


def test_get_on_login_is_a_405_in_json(api_client):
    assert_error(api_client.get("/seed/auth/login"), 405)


def throttled(rate: str):
    from django.conf import settings

    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": rate}})


def test_login_is_throttled_like_ours():
    UserFactory(email="ada@example.com")
    client = APIClient(REMOTE_ADDR="203.0.113.9")

    with throttled("2/min"):
        statuses = [login(client, "ada@example.com", "wrong-pw").status_code for _ in range(2)]
        blocked = login(client, "ada@example.com")

    assert statuses == [401, 401]
    assert "throttled" in assert_error(blocked, 429)["detail"]


# --- register -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/seed/auth/register", "/seed/auth/register/"])
def test_register_with_the_front_end_body_creates_a_viewer(api_client, path):
    response = api_client.post(
        path,
        {"username": "Grace Hopper", "email": "Grace@Example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 201, response.json()
    user = User.objects.get()
    assert response.json() == {
        "id": user.id,
        "email": "grace@example.com",
        "fname": "Grace Hopper",
        "lname": None,
        "username": "Grace Hopper",
        "profile_picture_url": None,
        "blacklisted": False,
        "role_id": 2,
        "is_active": True,
        "status": 1,
    }
    assert user.role == User.Role.USER
    assert login(api_client, "grace@example.com", STRONG_PASSWORD).status_code == 200


def test_register_with_names_and_picture(api_client):
    response = api_client.post(
        "/seed/auth/register",
        {
            "username": "grace",
            "email": "grace@example.com",
            "password": STRONG_PASSWORD,
            "fname": "Grace",
            "lname": "Hopper",
            "profile_picture_url": "https://example.com/g.png",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == USER_IN_DB_KEYS
    assert (body["fname"], body["lname"], body["username"]) == ("Grace", "Hopper", "Grace Hopper")
    assert body["profile_picture_url"] == "https://example.com/g.png"


def test_register_makes_a_pending_user_when_approval_is_required(api_client, settings):
    settings.REGISTRATION_REQUIRES_APPROVAL = True

    response = api_client.post(
        "/seed/auth/register",
        {"username": "Grace", "email": "grace@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["status"] == 0
    assert response.json()["is_active"] is False
    signed_in = login(api_client, "grace@example.com", STRONG_PASSWORD)
    assert signed_in.status_code == 200
    assert signed_in.json()["user"]["status"] == 0


def test_register_a_taken_email_is_a_400(api_client):
    UserFactory(email="grace@example.com")

    response = api_client.post(
        "/seed/auth/register",
        {"username": "Grace", "email": "GRACE@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert "already exists" in assert_error(response, 400)["detail"]
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"username": "Grace", "email": "grace@example.com", "password": "123"},  # our password validators
        {"username": "Grace", "email": "not-an-email", "password": STRONG_PASSWORD},
        {"username": "Grace", "password": STRONG_PASSWORD},
        {"username": "G" * 151, "email": "grace@example.com", "password": STRONG_PASSWORD},
        {"username": "Grace", "email": "grace@example.com", "password": STRONG_PASSWORD, "role_id": 1},
        {"email": "grace@example.com", "password": STRONG_PASSWORD, "profile_picture_url": "not a url"},
    ],
)
def test_bad_registrations_are_a_400(api_client, body):
    response = api_client.post("/seed/auth/register", body, format="json")

    assert_error(response, 400)
    assert not User.objects.exists()


def test_register_without_a_name_answers_the_email_local_part_as_username(api_client):
    response = api_client.post(
        "/seed/auth/register", {"email": "grace@example.com", "password": STRONG_PASSWORD}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["username"] == "grace"


def test_register_when_registration_is_closed_is_a_403(api_client, settings):
    settings.REGISTRATION_OPEN = False

    response = api_client.post(
        "/seed/auth/register",
        {"username": "Grace", "email": "grace@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert_error(response, 403)
    assert not User.objects.exists()


def test_register_is_throttled():
    client = APIClient(REMOTE_ADDR="203.0.113.10")

    with throttled("1/min"):
        first = client.post(
            "/seed/auth/register", {"email": "a@example.com", "password": STRONG_PASSWORD}, format="json"
        )
        second = client.post(
            "/seed/auth/register", {"email": "b@example.com", "password": STRONG_PASSWORD}, format="json"
        )

    assert first.status_code == 201
    assert_error(second, 429)
