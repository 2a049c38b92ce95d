"""Seed front end user routes: own password change and user administration under ``/seed/user/``."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import RefreshToken

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


def seed_client(email: str, password: str = DEFAULT_PASSWORD) -> APIClient:
    """A client holding the token the seed front end would get from its login."""
    client = APIClient()
    response = client.post("/seed/auth/login", {"username_or_email": email, "password": password}, format="json")
    assert response.status_code == 200, response.json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
    return client


def patch_no_body(client: APIClient, path: str):
    """As the front end does: no body, but a JSON content type."""
    return client.generic("PATCH", path, "", content_type="application/json")


@pytest.fixture
def admin():
    return UserFactory(email="admin@example.com", role=User.Role.ADMIN, first_name="Ann", last_name="Admin")


@pytest.fixture
def viewer():
    return UserFactory(email="viewer@example.com", first_name="Vic", last_name="Viewer")


@pytest.fixture
def admin_client(admin):
    return seed_client(admin.email)


@pytest.fixture
def viewer_client(viewer):
    return seed_client(viewer.email)


# --- permissions ----------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("get", "/seed/user/?user_status=1", None),
    ("get", "/seed/user?user_status=0", None),
    ("get", "/seed/user/{id}", None),
    ("put", "/seed/user/{id}", {"fname": "X"}),
    ("get", "/seed/user/email/viewer@example.com", None),
    ("patch", "/seed/user/update_status/{id}?user_status=2", None),
    ("patch", "/seed/user/update_role/{id}?role_id=1", None),
    ("post", "/seed/user/{id}/reset-password", {"new_password": STRONG_PASSWORD}),
]


def call(client: APIClient, method: str, path: str, body, user: User):
    path = path.format(id=user.id)
    if body is None and method == "patch":
        return patch_no_body(client, path)
    return getattr(client, method)(path, body, format="json")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_anonymous_401_bad_token_401_viewer_403(viewer, viewer_client, method, path, body):
    anonymous = call(APIClient(), method, path, body, viewer)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    invalid = call(bad, method, path, body, viewer)
    refused = call(viewer_client, method, path, body, viewer)

    assert_error(anonymous, 401)
    assert_error(invalid, 401)
    assert assert_error(refused, 403)["detail"] == "Insufficient permissions"
    viewer.refresh_from_db()
    assert (viewer.status, viewer.role, viewer.first_name) == (User.Status.APPROVED, User.Role.USER, "Vic")
    assert viewer.check_password(DEFAULT_PASSWORD)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_answer_json_to_an_admin(admin_client, viewer, method, path, body):
    response = call(admin_client, method, path, body, viewer)

    assert response.status_code == 200, response.json()
    assert response.json() is not None


def test_change_password_needs_a_token(api_client):
    response = api_client.post("/seed/user/change-password", {"old_password": "a", "new_password": "b"}, format="json")

    assert_error(response, 401)


# --- own password ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/seed/user/change-password", "/seed/user/change-password/"])
def test_change_password(viewer, viewer_client, path):
    refresh = RefreshToken.for_user(viewer)  # another session of ours

    response = viewer_client.post(
        path, {"old_password": DEFAULT_PASSWORD, "new_password": STRONG_PASSWORD}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {"message": "Password changed successfully"}
    viewer.refresh_from_db()
    assert viewer.check_password(STRONG_PASSWORD)
    assert BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()
    # Every token issued before the change ends, the front end's too: it signs in again.
    assert viewer_client.get("/auth/me").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"old_password": "wrong-password", "new_password": STRONG_PASSWORD}, "old_password"),
        ({"old_password": DEFAULT_PASSWORD, "new_password": "123"}, "new_password"),
        ({"old_password": DEFAULT_PASSWORD}, "new_password"),
        ({}, "old_password"),
    ],
)
def test_change_password_refusals_are_a_400(viewer, viewer_client, body, field):
    response = viewer_client.post("/seed/user/change-password", body, format="json")

    assert field in assert_error(response, 400)["detail"]
    viewer.refresh_from_db()
    assert viewer.check_password(DEFAULT_PASSWORD)


# --- list -----------------------------------------------------------------------------------


def test_list_by_status_is_a_bare_array_of_users_in_the_seed_shape(admin, admin_client, viewer):
    pending = UserFactory(email="p@example.com", status=User.Status.PENDING, first_name="Pat", last_name="")
    rejected = UserFactory(email="r@example.com", status=User.Status.REJECTED)

    lists = {n: admin_client.get(f"/seed/user/?user_status={n}") for n in (0, 1, 2)}

    for response in lists.values():
        assert response.status_code == 200, response.json()
        assert isinstance(response.json(), list)
        assert all(set(row) == USER_IN_DB_KEYS for row in response.json())
    assert lists[0].json() == [
        {
            "id": pending.id,
            "email": "p@example.com",
            "fname": "Pat",
            "lname": None,
            "username": "Pat",
            "profile_picture_url": None,
            "blacklisted": False,
            "role_id": 2,
            "is_active": False,
            "status": 0,
        }
    ]
    assert [row["email"] for row in lists[1].json()] == ["admin@example.com", "viewer@example.com"]
    assert [row["role_id"] for row in lists[1].json()] == [1, 2]
    assert [row["id"] for row in lists[2].json()] == [rejected.id]
    assert lists[2].json()[0]["status"] == 2


@pytest.mark.parametrize("path", ["/seed/user", "/seed/user/?user_status=", "/seed/user/?_=123"])
def test_list_without_a_status_is_every_user(admin_client, viewer, path):
    response = admin_client.get(path)

    assert response.status_code == 200
    assert len(response.json()) == 2


@pytest.mark.parametrize("value", ["3", "x", "-1", "1.0", "true"])
def test_list_with_an_unknown_status_is_a_400(admin_client, value):
    assert "user_status" in assert_error(admin_client.get(f"/seed/user/?user_status={value}"), 400)["detail"]


# --- one user -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/seed/user/{id}", "/seed/user/{id}/"])
def test_get_one_user(admin_client, viewer, path):
    response = admin_client.get(path.format(id=viewer.id))

    assert response.status_code == 200
    assert response.json()["id"] == viewer.id
    assert set(response.json()) == USER_IN_DB_KEYS


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/seed/user/999999", None),
        ("get", "/seed/user/0", None),
        ("get", "/seed/user/9999999999999999999", None),
        ("put", "/seed/user/999999", {"fname": "X"}),
        ("patch", "/seed/user/update_status/999999?user_status=1", None),
        ("patch", "/seed/user/update_role/999999?role_id=1", None),
        ("post", "/seed/user/999999/reset-password", {"new_password": STRONG_PASSWORD}),
        ("get", "/seed/user/email/nobody@example.com", None),
        ("get", "/seed/user/abc", None),
    ],
)
def test_unknown_users_are_a_404(admin, admin_client, method, path, body):
    response = call(admin_client, method, path, body, admin)

    assert_error(response, 404)


def test_get_by_email_in_any_case(admin_client, viewer):
    response = admin_client.get("/seed/user/email/Viewer@Example.COM")

    assert response.status_code == 200
    assert response.json()["id"] == viewer.id


def test_put_changes_names_picture_role_status_and_blacklisting(admin_client, viewer):
    response = admin_client.put(
        f"/seed/user/{viewer.id}",
        {
            "fname": "Victoria",
            "lname": "",
            "profile_picture_url": "https://example.com/v.png",
            "role_id": 1,
            "status": 2,
            "blacklisted": True,
            "email": "viewer@example.com",
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["fname"] == "Victoria" and body["lname"] is None and body["username"] == "Victoria"
    assert body["profile_picture_url"] == "https://example.com/v.png"
    assert (body["role_id"], body["status"], body["blacklisted"], body["is_active"]) == (1, 2, True, False)
    viewer.refresh_from_db()
    assert (viewer.role, viewer.status, viewer.is_active) == (User.Role.ADMIN, User.Status.REJECTED, False)


def test_put_with_nothing_or_nulls_changes_nothing(admin_client, viewer):
    before = admin_client.get(f"/seed/user/{viewer.id}").json()

    empty = admin_client.put(f"/seed/user/{viewer.id}", {}, format="json")
    nulls = admin_client.put(
        f"/seed/user/{viewer.id}",
        {"fname": None, "lname": None, "username": None, "role_id": None, "status": None, "blacklisted": None},
        format="json",
    )

    assert empty.json() == before
    assert nulls.json() == before


def test_put_username_alone_becomes_the_display_name(admin_client, viewer):
    response = admin_client.put(f"/seed/user/{viewer.id}", {"username": "vic"}, format="json")

    assert response.status_code == 200
    assert (response.json()["username"], response.json()["fname"], response.json()["lname"]) == ("vic", "vic", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "other@example.com"}, "email"),
        ({"role_id": 3}, "role_id"),
        ({"status": 7}, "status"),
        ({"blacklisted": "maybe"}, "blacklisted"),
        ({"profile_picture_url": "not a url"}, "profile_picture_url"),
        ({"password": "x"}, "password"),
    ],
)
def test_put_refusals_are_a_400_and_change_nothing(admin_client, viewer, body, field):
    response = admin_client.put(f"/seed/user/{viewer.id}", body, format="json")

    assert field in assert_error(response, 400)["detail"]
    viewer.refresh_from_db()
    assert (viewer.email, viewer.role, viewer.status) == ("viewer@example.com", User.Role.USER, User.Status.APPROVED)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role_id": 2}, "role_id"),
        ({"status": 2}, "status"),
        ({"status": 0}, "status"),
        ({"blacklisted": True}, "blacklisted"),
    ],
)
def test_an_admin_cannot_demote_reject_or_blacklist_themselves_through_put(admin, admin_client, body, field):
    response = admin_client.put(f"/seed/user/{admin.id}", {"fname": "Changed", **body}, format="json")

    assert field in assert_error(response, 400)["detail"]
    admin.refresh_from_db()
    assert (admin.role, admin.status, admin.is_active, admin.first_name) == (
        User.Role.ADMIN,
        User.Status.APPROVED,
        True,
        "Ann",
    )


# --- status and role ------------------------------------------------------------------------


def test_approve_a_pending_user_with_no_body(admin_client):
    pending = UserFactory(email="p@example.com", status=User.Status.PENDING)

    response = patch_no_body(admin_client, f"/seed/user/update_status/{pending.id}?user_status=1")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == 1
    assert response.json()["is_active"] is True
    pending.refresh_from_db()
    assert pending.status == User.Status.APPROVED


def test_reject_with_an_empty_json_object_and_a_trailing_slash(admin_client, viewer):
    viewer_token_client = seed_client(viewer.email)

    response = admin_client.patch(f"/seed/user/update_status/{viewer.id}/?user_status=2", {}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == 2
    # The rejected user's token is refused at once.
    assert assert_error(viewer_token_client.get("/auth/me"), 403)["detail"].startswith("account_rejected")


@pytest.mark.parametrize("query", ["", "?user_status=5", "?user_status=approved", "?role_id=1"])
def test_update_status_needs_a_valid_status(admin_client, viewer, query):
    response = patch_no_body(admin_client, f"/seed/user/update_status/{viewer.id}{query}")

    assert "user_status" in assert_error(response, 400)["detail"]


def test_an_admin_cannot_reject_themselves(admin, admin_client):
    response = patch_no_body(admin_client, f"/seed/user/update_status/{admin.id}?user_status=2")

    body = assert_error(response, 400)
    assert "user_status" in body["detail"] and "your own account" in body["detail"]
    admin.refresh_from_db()
    assert admin.status == User.Status.APPROVED


def test_update_role_both_ways(admin_client, viewer):
    promoted = patch_no_body(admin_client, f"/seed/user/update_role/{viewer.id}?role_id=1")
    demoted = patch_no_body(admin_client, f"/seed/user/update_role/{viewer.id}/?role_id=2")

    assert promoted.status_code == 200 and promoted.json()["role_id"] == 1
    assert demoted.status_code == 200 and demoted.json()["role_id"] == 2
    viewer.refresh_from_db()
    assert viewer.role == User.Role.USER


@pytest.mark.parametrize("query", ["", "?role_id=0", "?role_id=3", "?role_id=admin"])
def test_update_role_needs_a_valid_role(admin_client, viewer, query):
    response = patch_no_body(admin_client, f"/seed/user/update_role/{viewer.id}{query}")

    assert "role_id" in assert_error(response, 400)["detail"]


def test_an_admin_cannot_demote_themselves(admin, admin_client):
    response = patch_no_body(admin_client, f"/seed/user/update_role/{admin.id}?role_id=2")

    assert "admin role" in assert_error(response, 400)["detail"]
    admin.refresh_from_db()
    assert admin.role == User.Role.ADMIN


# --- password reset by an admin -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/seed/user/{id}/reset-password", "/seed/user/{id}/reset-password/"])
def test_reset_password_sets_the_new_one_and_ends_refresh_tokens(admin_client, viewer, path):
    refresh = RefreshToken.for_user(viewer)

    response = admin_client.post(path.format(id=viewer.id), {"new_password": STRONG_PASSWORD}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json() == {"message": "Password reset successfully"}
    assert BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()
    seed_client(viewer.email, STRONG_PASSWORD)  # signs in with the new password


@pytest.mark.parametrize("body", [{}, {"new_password": "123"}, {"new_password": STRONG_PASSWORD, "mode": "link"}])
def test_reset_password_refusals_are_a_400(admin_client, viewer, body):
    response = admin_client.post(f"/seed/user/{viewer.id}/reset-password", body, format="json")

    assert_error(response, 400)
    viewer.refresh_from_db()
    assert viewer.check_password(DEFAULT_PASSWORD)
