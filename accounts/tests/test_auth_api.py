"""The /auth API: register, login, refresh, logout, me, throttling."""

import json
from datetime import timedelta

import pytest
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "Tr1cky-Quokka-Meadow"


def assert_error(response, status_code: int) -> dict:
    """The response is in the one error format with this status."""
    body = response.json()
    assert response.status_code == status_code, body
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def login(client: APIClient, email: str, password: str = DEFAULT_PASSWORD, path: str = "/auth/login"):
    return client.post(path, {"email": email, "password": password}, format="json")


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


# --- register -------------------------------------------------------------------------------


def test_register_creates_a_user_who_can_log_in(api_client):
    response = api_client.post(
        "/auth/register",
        {
            "email": "Grace.Hopper@Example.com",
            "password": STRONG_PASSWORD,
            "first_name": "Grace",
            "last_name": "Hopper",
        },
        format="json",
    )

    # 202 and a generic answer, the same for a taken address (test_security): nothing tells which exist.
    assert response.status_code == 202, response.json()
    body = response.json()
    user = User.objects.get()
    assert body == {
        "detail": "If this address was not registered yet, the account was created: sign in with this email "
        "and password.",
        "email": "grace.hopper@example.com",
    }
    assert (user.email, user.first_name, user.last_name, user.role, user.status) == (
        "grace.hopper@example.com",
        "Grace",
        "Hopper",
        "user",
        "approved",
    )
    assert user.check_password(STRONG_PASSWORD)
    assert not user.is_admin
    assert login(api_client, "grace.hopper@example.com", STRONG_PASSWORD).status_code == 200


def test_register_accepts_trailing_slash_without_redirect(api_client):
    response = api_client.post(
        "/auth/register/", {"email": "slash@example.com", "password": STRONG_PASSWORD}, format="json"
    )

    assert response.status_code == 202
    assert User.objects.filter(email="slash@example.com").exists()


@pytest.mark.parametrize(
    "password",
    ["short1", "password123", "12345678901", "weaklingwho@example.com"],
    ids=["too-short", "common", "numeric", "like-email"],
)
def test_register_rejects_weak_password(api_client, password):
    response = api_client.post(
        "/auth/register", {"email": "weaklingwho@example.com", "password": password}, format="json"
    )

    body = assert_error(response, 400)
    assert body["errors"]["password"]
    assert not User.objects.exists()


def test_register_rejects_bad_email(api_client):
    response = api_client.post("/auth/register", {"email": "not-an-email", "password": STRONG_PASSWORD}, format="json")

    body = assert_error(response, 400)
    assert list(body["errors"]) == ["email"]


def test_register_requires_email_and_password(api_client):
    body = assert_error(api_client.post("/auth/register", {}, format="json"), 400)

    assert set(body["errors"]) == {"email", "password"}


def test_register_with_duplicate_email_in_other_case_changes_nothing_and_does_not_tell(api_client):
    taken = UserFactory(email="taken@example.com")

    response = api_client.post(
        "/auth/register", {"email": "TAKEN@Example.COM", "password": STRONG_PASSWORD}, format="json"
    )

    assert response.status_code == 202
    assert response.json()["email"] == "taken@example.com"
    assert User.objects.count() == 1
    taken.refresh_from_db()
    assert not taken.check_password(STRONG_PASSWORD)


@override_settings(REGISTRATION_OPEN=False)
def test_register_closed_answers_403(api_client):
    response = api_client.post(
        "/auth/register", {"email": "late@example.com", "password": STRONG_PASSWORD}, format="json"
    )

    body = assert_error(response, 403)
    assert "Registration is closed" in body["detail"]
    assert not User.objects.exists()


def test_register_refuses_role_in_body(api_client):
    response = api_client.post(
        "/auth/register", {"email": "sneaky@example.com", "password": STRONG_PASSWORD, "role": "admin"}, format="json"
    )

    body = assert_error(response, 400)
    assert list(body["errors"]) == ["role"]
    assert not User.objects.exists()


# --- login ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/login", "/auth/login/"])
def test_login_returns_jwt_pair_and_user(api_client, path):
    user = UserFactory(email="ada@example.com", first_name="Ada", last_name="Lovelace")

    response = login(api_client, "ADA@example.com", path=path)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"] == {
        "id": user.id,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "role": "user",
        "status": "approved",
        "profile_picture_url": "",
    }
    assert AccessToken(body["access"])["user_id"] == str(user.id)
    assert RefreshToken(body["refresh"])["user_id"] == str(user.id)
    me = bearer(body["access"]).get("/auth/me")
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"
    user.refresh_from_db()
    assert user.last_login is not None


@pytest.mark.parametrize(
    ("email", "password"),
    [("ada@example.com", "wrong-password-1"), ("nobody@example.com", DEFAULT_PASSWORD)],
    ids=["wrong-password", "unknown-email"],
)
def test_login_with_wrong_credentials_is_401(api_client, email, password):
    UserFactory(email="ada@example.com")

    response = login(api_client, email, password)

    body = assert_error(response, 401)
    assert body["detail"] == "Invalid email or password."
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_login_inactive_user_is_401(api_client):
    UserFactory(email="gone@example.com", is_active=False)

    assert_error(login(api_client, "gone@example.com"), 401)


def test_login_with_malformed_body_is_400(api_client):
    body = assert_error(api_client.post("/auth/login", {"email": ["x"], "password": {"a": 1}}, format="json"), 400)

    assert set(body["errors"]) == {"email", "password"}


def test_login_ignores_a_stale_authorization_header(api_client):
    UserFactory(email="ada@example.com")
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")

    assert login(api_client, "ada@example.com").status_code == 200


# --- refresh --------------------------------------------------------------------------------


def test_refresh_rotates_and_old_refresh_token_stops_working(api_client):
    user = UserFactory(email="ada@example.com")
    first = login(api_client, "ada@example.com").json()

    response = api_client.post("/auth/refresh", {"refresh": first["refresh"]}, format="json")

    assert response.status_code == 200, response.json()
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert AccessToken(second["access"])["user_id"] == str(user.id)
    assert bearer(second["access"]).get("/auth/me").status_code == 200
    reused = api_client.post("/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert_error(reused, 401)
    assert api_client.post("/auth/refresh/", {"refresh": second["refresh"]}, format="json").status_code == 200


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""], ids=["garbage", "not-jwt", "empty"])
def test_refresh_with_garbage_is_rejected(api_client, token):
    response = api_client.post("/auth/refresh", {"refresh": token}, format="json")

    assert_error(response, 400 if token == "" else 401)


def test_refresh_with_an_access_token_is_401(api_client):
    tokens = login(api_client, UserFactory().email).json()

    assert_error(api_client.post("/auth/refresh", {"refresh": tokens["access"]}, format="json"), 401)


def test_refresh_for_deleted_or_inactive_user_is_401(api_client):
    gone, disabled = UserFactory(), UserFactory()
    gone_refresh = str(RefreshToken.for_user(gone))
    disabled_refresh = str(RefreshToken.for_user(disabled))
    gone.delete()
    disabled.is_active = False
    disabled.save()

    assert_error(api_client.post("/auth/refresh", {"refresh": gone_refresh}, format="json"), 401)
    assert_error(api_client.post("/auth/refresh", {"refresh": disabled_refresh}, format="json"), 401)


def test_expired_refresh_token_is_401(api_client):
    token = RefreshToken.for_user(UserFactory())
    token.set_exp(from_time=aware_utcnow() - timedelta(days=30))

    assert_error(api_client.post("/auth/refresh", {"refresh": str(token)}, format="json"), 401)


# --- access token ---------------------------------------------------------------------------


def test_expired_access_token_is_401():
    token = AccessToken.for_user(UserFactory())
    token.set_exp(from_time=aware_utcnow() - timedelta(hours=1))

    response = bearer(str(token)).get("/auth/me")

    assert_error(response, 401)


def test_tampered_access_token_is_401():
    access = str(AccessToken.for_user(UserFactory()))
    header, payload, signature = access.split(".")

    assert_error(bearer(f"{header}.{payload}.{signature[::-1]}").get("/auth/me"), 401)


# --- logout ---------------------------------------------------------------------------------


def test_logout_blacklists_the_refresh_token(api_client):
    tokens = login(api_client, UserFactory().email).json()

    response = api_client.post("/auth/logout", {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 204
    assert_error(api_client.post("/auth/refresh", {"refresh": tokens["refresh"]}, format="json"), 401)
    assert_error(api_client.post("/auth/logout/", {"refresh": tokens["refresh"]}, format="json"), 401)


def test_logout_with_garbage_is_401_and_missing_token_400(api_client):
    assert_error(api_client.post("/auth/logout", {"refresh": "garbage"}, format="json"), 401)
    body = assert_error(api_client.post("/auth/logout", {}, format="json"), 400)
    assert list(body["errors"]) == ["refresh"]


# --- me -------------------------------------------------------------------------------------


def test_me_anonymous_is_401(api_client):
    body = assert_error(api_client.get("/auth/me"), 401)

    assert body["detail"] == "Authentication credentials were not provided."


def test_me_returns_the_current_user(user_api_client):
    response = user_api_client.get("/auth/me/")

    assert response.status_code == 200
    assert response.json()["email"] == user_api_client.user.email
    assert response.json()["role"] == "user"


def test_me_patch_changes_names(user_api_client):
    response = user_api_client.patch("/auth/me", {"first_name": "Alan", "last_name": "Turing"}, format="json")

    assert response.status_code == 200, response.json()
    user = User.objects.get(pk=user_api_client.user.pk)
    assert (user.first_name, user.last_name, user.role, user.email) == ("Alan", "Turing", "user", "user@example.com")
    assert response.json()["first_name"] == "Alan"


@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        ({"first_name": "Alan", "role": "admin", "email": "x@example.com"}, ["email", "role"]),
        ({"password": "Tr1cky-Quokka-Meadow"}, ["password"]),
        ({"status": "approved"}, ["status"]),
        ({"id": 1}, ["id"]),
    ],
)
def test_me_patch_refuses_unknown_fields_naming_them(user_api_client, body, unknown):
    before = User.objects.get(pk=user_api_client.user.pk)

    error = assert_error(user_api_client.patch("/auth/me", body, format="json"), 400)

    assert sorted(error["errors"]) == unknown
    for name in unknown:
        assert name in error["detail"]
    after = User.objects.get(pk=user_api_client.user.pk)
    assert (after.first_name, after.role, after.email, after.password) == (
        before.first_name,
        before.role,
        before.email,
        before.password,
    )


def test_me_patch_rejects_overlong_name(user_api_client):
    body = assert_error(user_api_client.patch("/auth/me", {"first_name": "x" * 151}, format="json"), 400)

    assert list(body["errors"]) == ["first_name"]


def test_me_admin(admin_api_client):
    response = admin_api_client.get("/auth/me")

    assert response.status_code == 200
    assert response.json()["role"] == "admin"


# --- throttling -----------------------------------------------------------------------------


def throttled(rate: str):
    from django.conf import settings

    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": rate}}
    return override_settings(REST_FRAMEWORK=rest_framework)


def test_login_is_throttled_per_client_address():
    UserFactory(email="ada@example.com")
    attacker = APIClient(REMOTE_ADDR="203.0.113.7")
    bystander = APIClient(REMOTE_ADDR="198.51.100.20")

    with throttled("3/min"):
        statuses = [login(attacker, "ada@example.com", "wrong-password-1").status_code for _ in range(3)]
        blocked = login(attacker, "ada@example.com")
        allowed = login(bystander, "ada@example.com")

    assert statuses == [401, 401, 401]
    body = assert_error(blocked, 429)
    assert set(body) == {"detail", "status_code"}
    assert "throttled" in body["detail"]
    assert int(blocked["Retry-After"]) > 0
    assert allowed.status_code == 200


def test_register_is_throttled():
    client = APIClient(REMOTE_ADDR="203.0.113.8")

    with throttled("2/min"):
        responses = [
            client.post("/auth/register", {"email": f"bot{i}@example.com", "password": STRONG_PASSWORD}, format="json")
            for i in range(3)
        ]

    assert [r.status_code for r in responses] == [202, 202, 429]
    assert_error(responses[2], 429)
    assert User.objects.count() == 2


def test_refresh_and_me_are_not_throttled_by_the_auth_scope(user_api_client):
    with throttled("1/min"):
        statuses = [user_api_client.get("/auth/me").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


# --- schema ---------------------------------------------------------------------------------


def test_openapi_documents_auth_paths_and_error_format(api_client):
    response = api_client.get("/openapi.json", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(response.content)

    paths = schema["paths"]
    assert {"/auth/register", "/auth/login", "/auth/refresh", "/auth/logout", "/auth/me", "/auth/google/login"} <= set(
        paths
    )
    login_401 = paths["/auth/login"]["post"]["responses"]["401"]
    assert login_401["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"detail", "status_code"}
    assert "429" in paths["/auth/register"]["post"]["responses"]
