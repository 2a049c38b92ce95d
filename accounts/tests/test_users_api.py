"""The admin /users/ API, password change and reset, the login alias and strict input bodies."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Tr1cky-Quokka-Meadow"


def assert_error(response, status_code: int) -> dict:
    body = response.json()
    assert response.status_code == status_code, body
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def login(client: APIClient, email: str, password: str = DEFAULT_PASSWORD):
    return client.post("/auth/login", {"email": email, "password": password}, format="json")


@pytest.fixture
def target():
    return UserFactory(email="target@example.com", first_name="Tess", last_name="Target")


# --- permission matrix -------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/users/", None),
    ("get", "/users/{id}", None),
    ("patch", "/users/{id}", {"status": "approved"}),
    ("post", "/users/{id}/reset-password", {"mode": "temporary"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_anonymous_gets_401(api_client, target, method, path, body):
    assert_error(getattr(api_client, method)(path.format(id=target.pk), body, format="json"), 401)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_role_user_gets_403(user_api_client, target, method, path, body):
    assert_error(getattr(user_api_client, method)(path.format(id=target.pk), body, format="json"), 403)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_admin_may(admin_api_client, target, method, path, body):
    response = getattr(admin_api_client, method)(path.format(id=target.pk), body, format="json")
    assert response.status_code == 200, response.json()


def test_superuser_without_admin_role_may(superuser, target):
    from conftest import _jwt_client

    superuser.role = User.Role.USER
    superuser.save()
    assert _jwt_client(superuser).get("/users/").status_code == 200


def test_change_password_anonymous_gets_401(api_client):
    assert_error(
        api_client.post("/auth/change-password", {"old_password": "x", "new_password": "y"}, format="json"), 401
    )


# --- list and filters ---------------------------------------------------------------------------


def test_list_is_paginated_by_email(admin_api_client):
    for n in range(3):
        UserFactory(email=f"list{n}@example.com")

    body = admin_api_client.get("/users/", {"limit": 2, "offset": 1}).json()

    assert body["count"] == 4  # three plus the admin
    assert [row["email"] for row in body["results"]] == ["list0@example.com", "list1@example.com"]
    assert body["next"] and body["previous"]
    row = body["results"][0]
    assert set(row) == {
        "id",
        "email",
        "first_name",
        "last_name",
        "role",
        "status",
        "is_active",
        "is_superuser",
        "profile_picture_url",
        "date_joined",
        "last_login",
        "updated_at",
    }


def test_list_filters_status_role_and_search(admin_api_client):
    UserFactory(email="waiting@example.com", status=User.Status.PENDING)
    UserFactory(email="nope@example.com", status=User.Status.REJECTED, first_name="Zed")
    UserFactory(email="boss2@example.com", role=User.Role.ADMIN, last_name="Bossman")

    def emails(**params):
        response = admin_api_client.get("/users/", params)
        assert response.status_code == 200, response.json()
        return [row["email"] for row in response.json()["results"]]

    assert emails(status="pending") == ["waiting@example.com"]
    assert emails(status="rejected") == ["nope@example.com"]
    assert emails(role="admin") == ["admin@example.com", "boss2@example.com"]
    assert emails(search="BOSSMAN") == ["boss2@example.com"]
    assert emails(search="zed") == ["nope@example.com"]
    assert emails(search="WAIT") == ["waiting@example.com"]
    assert emails(role="user", status="approved") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "maybe"}, "status"),
        ({"role": "root"}, "role"),
        ({"is_active": "perhaps"}, "is_active"),
        ({"limit": "abc"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_list_bad_query_is_a_400(admin_api_client, params, field):
    body = assert_error(admin_api_client.get("/users/", params), 400)
    assert field in body["errors"]


def test_detail_and_trailing_slash(admin_api_client, target):
    for path in (f"/users/{target.pk}", f"/users/{target.pk}/"):
        response = admin_api_client.get(path)
        assert response.status_code == 200
        assert response.json()["email"] == "target@example.com"


@pytest.mark.parametrize("user_id", ["999999", "9223372036854775807", "9999999999999999999"])
def test_unknown_user_is_a_404(admin_api_client, user_id):
    assert_error(admin_api_client.get(f"/users/{user_id}"), 404)
    assert_error(admin_api_client.patch(f"/users/{user_id}", {"status": "approved"}, format="json"), 404)
    assert_error(admin_api_client.post(f"/users/{user_id}/reset-password", {"mode": "link"}, format="json"), 404)


# --- PATCH ------------------------------------------------------------------------------------


def test_patch_changes_status_role_and_active(admin_api_client, target):
    response = admin_api_client.patch(
        f"/users/{target.pk}", {"status": "rejected", "role": "admin", "is_active": False}, format="json"
    )

    assert response.status_code == 200, response.json()
    target.refresh_from_db()
    assert (target.status, target.role, target.is_active) == ("rejected", "admin", False)
    assert response.json()["status"] == "rejected"


def test_rejecting_blacklists_refresh_tokens(admin_api_client, target, api_client):
    refresh = login(api_client, target.email).json()["refresh"]

    admin_api_client.patch(f"/users/{target.pk}", {"status": "rejected"}, format="json")

    assert_error(api_client.post("/auth/refresh", {"refresh": refresh}, format="json"), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "user"}, "role"),
        ({"is_active": False}, "is_active"),
        ({"status": "rejected"}, "status"),
        ({"status": "pending"}, "status"),
    ],
)
def test_admin_cannot_demote_deactivate_or_reject_themselves(admin_api_client, body, field):
    me = admin_api_client.user

    error = assert_error(admin_api_client.patch(f"/users/{me.pk}", body, format="json"), 400)

    assert list(error["errors"]) == [field]
    assert "own account" in error["detail"]
    me.refresh_from_db()
    assert (me.role, me.is_active, me.status) == ("admin", True, "approved")


def test_admin_may_patch_themselves_harmlessly(admin_api_client):
    me = admin_api_client.user
    response = admin_api_client.patch(f"/users/{me.pk}", {"status": "approved", "is_active": True}, format="json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "banned"}, "status"),
        ({"role": "root"}, "role"),
        ({"is_active": "perhaps"}, "is_active"),
        ({"email": "x@example.com"}, "email"),
        ({"password": "whatever-123"}, "password"),
    ],
)
def test_patch_bad_input_is_a_400_naming_the_field(admin_api_client, target, body, field):
    error = assert_error(admin_api_client.patch(f"/users/{target.pk}", body, format="json"), 400)
    assert list(error["errors"]) == [field]


def test_patch_with_a_non_object_body_is_a_400(admin_api_client, target):
    assert_error(admin_api_client.patch(f"/users/{target.pk}", "[1, 2]", content_type="application/json"), 400)
    assert_error(admin_api_client.patch(f"/users/{target.pk}", "{not json", content_type="application/json"), 400)


# --- reset password -------------------------------------------------------------------------


def test_reset_temporary_sets_and_answers_a_password_once(admin_api_client, target, api_client):
    refresh = login(api_client, target.email).json()["refresh"]

    response = admin_api_client.post(f"/users/{target.pk}/reset-password", {"mode": "temporary"}, format="json")

    assert response.status_code == 200, response.json()
    password = response.json()["temporary_password"]
    assert len(password) >= 12
    assert login(api_client, target.email, password).status_code == 200
    assert login(api_client, target.email).status_code == 401
    assert_error(api_client.post("/auth/refresh", {"refresh": refresh}, format="json"), 401)
    assert admin_api_client.get(f"/users/{target.pk}").json().get("temporary_password") is None


def _link_from_mail() -> str:
    assert len(mail.outbox) == 1
    match = re.search(r"https?://\S+", mail.outbox[0].body)
    assert match, mail.outbox[0].body
    return match.group(0)


def test_reset_link_emails_a_link_to_the_servers_page(admin_api_client, target, api_client, client):
    refresh = login(api_client, target.email).json()["refresh"]

    response = admin_api_client.post(f"/users/{target.pk}/reset-password", {"mode": "link"}, format="json")

    assert response.status_code == 202, response.json()
    assert "token" not in response.json() and "target@example.com" in response.json()["detail"]
    assert mail.outbox[0].to == ["target@example.com"]
    link = _link_from_mail()
    assert link.startswith("http://testserver/auth/reset-password/")
    assert_error(api_client.post("/auth/refresh", {"refresh": refresh}, format="json"), 401)

    # The page (Django's reset views) takes the new password once.
    page = client.get(link, follow=True)
    assert page.status_code == 200
    form_url = page.redirect_chain[-1][0]
    done = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert login(api_client, target.email, NEW_PASSWORD).status_code == 200
    assert b"invalid" in client.get(link, follow=True).content.lower()


def test_reset_link_uses_the_configured_url_and_the_api_confirms_it(settings, admin_api_client, target, api_client):
    settings.PASSWORD_RESET_URL = "https://app.example.com/reset?uid={uid}&token={token}"

    admin_api_client.post(f"/users/{target.pk}/reset-password", {"mode": "link"}, format="json")

    link = _link_from_mail()
    match = re.fullmatch(r"https://app\.example\.com/reset\?uid=([\w-]+)&token=([\w-]+)", link)
    assert match, link
    uid, token = match.groups()
    confirm = {"uid": uid, "token": token, "new_password": NEW_PASSWORD}

    weak = assert_error(api_client.post("/auth/reset-password/confirm", {**confirm, "new_password": "123"}), 400)
    assert list(weak["errors"]) == ["new_password"]
    assert api_client.post("/auth/reset-password/confirm", confirm, format="json").status_code == 204
    assert login(api_client, target.email, NEW_PASSWORD).status_code == 200
    again = assert_error(api_client.post("/auth/reset-password/confirm", confirm, format="json"), 400)
    assert list(again["errors"]) == ["token"]


@pytest.mark.parametrize(
    "body",
    [
        {"uid": "x", "token": "y", "new_password": NEW_PASSWORD},
        {"uid": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NQ", "token": "abc-def", "new_password": NEW_PASSWORD},
        {"uid": "", "token": "", "new_password": ""},
    ],
)
def test_reset_confirm_with_a_bad_link_is_a_400(api_client, body):
    assert_error(api_client.post("/auth/reset-password/confirm", body, format="json"), 400)


@pytest.mark.parametrize("body", [{}, {"mode": "sms"}, {"mode": "link", "email": "x@example.com"}])
def test_reset_bad_mode_is_a_400(admin_api_client, target, body):
    assert_error(admin_api_client.post(f"/users/{target.pk}/reset-password", body, format="json"), 400)
    assert mail.outbox == []


def test_reset_link_when_mail_fails_is_a_503(settings, admin_api_client, target):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens

    assert_error(admin_api_client.post(f"/users/{target.pk}/reset-password", {"mode": "link"}, format="json"), 503)


# --- change password ----------------------------------------------------------------------------


def test_change_password_blacklists_every_refresh_token_and_answers_a_fresh_pair(api_client, target):
    first = login(api_client, target.email).json()
    second = login(api_client, target.email).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['access']}")

    response = client.post(
        "/auth/change-password", {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"access", "refresh", "token_type", "user"}
    still_valid = OutstandingToken.objects.filter(user=target, blacklistedtoken__isnull=True)
    assert [t.token for t in still_valid] == [body["refresh"]]
    for old in (first["refresh"], second["refresh"]):
        assert_error(api_client.post("/auth/refresh", {"refresh": old}, format="json"), 401)
    assert api_client.post("/auth/refresh", {"refresh": body["refresh"]}, format="json").status_code == 200
    assert login(api_client, target.email).status_code == 401
    assert login(api_client, target.email, NEW_PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"old_password": "wrong-password-9", "new_password": NEW_PASSWORD}, "old_password"),
        ({"old_password": DEFAULT_PASSWORD, "new_password": "12345678"}, "new_password"),
        ({"old_password": DEFAULT_PASSWORD, "new_password": "short"}, "new_password"),
        ({"old_password": DEFAULT_PASSWORD, "new_password": "target@example.com"}, "new_password"),
        ({"old_password": DEFAULT_PASSWORD}, "new_password"),
        ({"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, "confirm"),
    ],
)
def test_change_password_bad_input_is_a_400(api_client, target, body, field):
    access = login(api_client, target.email).json()["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")

    error = assert_error(client.post("/auth/change-password", body, format="json"), 400)

    assert list(error["errors"]) == [field]
    target.refresh_from_db()
    assert target.check_password(DEFAULT_PASSWORD)


# --- login alias and strict bodies ------------------------------------------------------------


def test_login_accepts_username_or_email(api_client, target):
    response = api_client.post(
        "/auth/login", {"username_or_email": "TARGET@example.com", "password": DEFAULT_PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.json()
    both = {"email": "target@example.com", "username_or_email": "Target@Example.com", "password": DEFAULT_PASSWORD}
    assert api_client.post("/auth/login", both, format="json").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"email": "target@example.com", "username_or_email": "other@example.com"}, "username_or_email", 400),
        ({}, "email", 400),
        ({"email": "target@example.com", "remember_me": True}, "remember_me", 400),
        ({"username_or_email": "nobody"}, None, 401),
    ],
)
def test_login_bad_input(api_client, target, body, field, status):
    error = assert_error(api_client.post("/auth/login", {**body, "password": DEFAULT_PASSWORD}, format="json"), status)
    if field:
        assert field in error["errors"]


@pytest.mark.parametrize(
    ("path", "body", "unknown"),
    [
        ("/auth/register", {"email": "n@example.com", "password": NEW_PASSWORD, "status": "approved"}, "status"),
        ("/auth/refresh", {"refresh": "x", "access": "y"}, "access"),
        ("/auth/logout", {"refresh": "x", "all": True}, "all"),
    ],
)
def test_credential_endpoints_refuse_unknown_fields(api_client, path, body, unknown):
    error = assert_error(api_client.post(path, body, format="json"), 400)
    assert unknown in error["errors"]


def test_watchlist_bodies_refuse_unknown_fields(user_api_client):
    error = assert_error(user_api_client.post("/watchlists/", {"name": "Mine", "owner": 1}, format="json"), 400)
    assert list(error["errors"]) == ["owner"]
    created = user_api_client.post("/watchlists/", {"name": "Mine"}, format="json").json()
    error = assert_error(
        user_api_client.post(f"/watchlists/{created['id']}/items", {"instrument": 1, "position": 2}, format="json"),
        400,
    )
    assert "position" in error["errors"]


# --- Django admin -------------------------------------------------------------------------------


def test_admin_site_filters_by_status_and_approves_or_rejects(client, superuser):
    waiting = UserFactory(email="waiting@example.com", status=User.Status.PENDING)
    other = UserFactory(email="other@example.com", status=User.Status.PENDING)
    client.force_login(superuser)

    page = client.get("/admin/accounts/user/", {"status__exact": "pending"})
    assert page.status_code == 200
    assert {u.email for u in page.context["cl"].result_list} == {"waiting@example.com", "other@example.com"}
    assert b"Approve selected users" in page.content

    client.post("/admin/accounts/user/", {"action": "approve_selected", "_selected_action": [waiting.pk]}, follow=True)
    client.post(
        "/admin/accounts/user/",
        {"action": "reject_selected", "_selected_action": [other.pk, superuser.pk]},
        follow=True,
    )

    waiting.refresh_from_db(), other.refresh_from_db(), superuser.refresh_from_db()
    assert (waiting.status, other.status, superuser.status) == ("approved", "rejected", "approved")
