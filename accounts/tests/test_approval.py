"""User approval: pending/rejected sign-in, the approval flow, tokens of rejected or deactivated users."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from accounts.services import demo_admin_ensure
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from marketapp.asgi import application
from marketdata.live.hub import close_hub
from marketdata.tests.ws_support import redis_layer_settings, redis_url
from marketdata.ws_middleware import user_for_token

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "Tr1cky-Quokka-Meadow"
# Endpoints that serve data to any signed-in user (no query needed to get past authentication).
DATA_PATHS = ["/auth/me", "/watchlists/", "/instruments/", "/exchange/", "/marketdata/daily", "/marketdata/intraday"]


def assert_error(response, status_code: int) -> dict:
    body = response.json()
    assert response.status_code == status_code, body
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def bearer(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def login(client: APIClient, email: str, password: str = DEFAULT_PASSWORD):
    return client.post("/auth/login", {"email": email, "password": password}, format="json")


# --- sign-in ---------------------------------------------------------------------------------


def test_existing_and_new_users_are_approved_by_default(api_client):
    assert UserFactory().status == User.Status.APPROVED
    response = api_client.post("/auth/register", {"email": "new@example.com", "password": STRONG_PASSWORD})
    assert response.status_code == 202
    assert User.objects.get(email="new@example.com").status == "approved"


@pytest.mark.parametrize(("status", "code"), [("pending", "account_pending"), ("rejected", "account_rejected")])
def test_non_approved_user_with_right_password_learns_the_status(api_client, status, code):
    UserFactory(email="wait@example.com", status=status)

    body = assert_error(login(api_client, "wait@example.com"), 403)

    assert body["detail"].startswith(code)
    assert set(body) == {"detail", "status_code"}


def test_non_approved_user_with_wrong_password_gets_the_usual_401(api_client):
    UserFactory(email="wait@example.com", status=User.Status.PENDING)

    body = assert_error(login(api_client, "wait@example.com", "wrong-password-1"), 401)

    assert "account_pending" not in body["detail"]


def test_superusers_and_the_demo_admin_are_approved(settings):
    settings.REGISTRATION_REQUIRES_APPROVAL = True
    call_command("createsuperuser", "--noinput", "--email", "boss@example.com")
    admin = demo_admin_ensure(email="demo-admin@example.com", password=STRONG_PASSWORD).user

    assert User.objects.get(email="boss@example.com").status == User.Status.APPROVED
    assert admin.status == User.Status.APPROVED
    assert User.objects.create_superuser(email="root2@example.com", password="x").status == User.Status.APPROVED


# --- the approval flow -------------------------------------------------------------------------


def test_approval_flow_end_to_end(settings, api_client, admin_api_client):
    settings.REGISTRATION_REQUIRES_APPROVAL = True

    registered = api_client.post(
        "/auth/register", {"email": "newbie@example.com", "password": STRONG_PASSWORD}, format="json"
    )
    assert registered.status_code == 202, registered.json()
    assert "approval" in registered.json()["detail"]
    user_id = User.objects.get(email="newbie@example.com").id
    assert User.objects.get(pk=user_id).status == "pending"

    # Signs in only to learn it waits; the admin sees it among the pending users.
    assert assert_error(login(api_client, "newbie@example.com", STRONG_PASSWORD), 403)["detail"].startswith(
        "account_pending"
    )
    pending = admin_api_client.get("/users/", {"status": "pending"}).json()
    assert [row["email"] for row in pending["results"]] == ["newbie@example.com"]

    # An approved user gets tokens and data.
    approved = admin_api_client.patch(f"/users/{user_id}", {"status": "approved"}, format="json")
    assert approved.status_code == 200, approved.json()
    assert approved.json()["status"] == "approved"
    tokens = login(api_client, "newbie@example.com", STRONG_PASSWORD)
    assert tokens.status_code == 200, tokens.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
    assert client.get("/watchlists/").status_code == 200

    # Rejected: the same access token stops working at once, and so does the refresh token.
    assert admin_api_client.patch(f"/users/{user_id}", {"status": "rejected"}, format="json").status_code == 200
    assert assert_error(client.get("/watchlists/"), 403)["detail"].startswith("account_rejected")
    refreshed = api_client.post("/auth/refresh", {"refresh": tokens.json()["refresh"]}, format="json")
    assert refreshed.status_code in (401, 403)
    assert assert_error(login(api_client, "newbie@example.com", STRONG_PASSWORD), 403)["detail"].startswith(
        "account_rejected"
    )


def test_registration_without_approval_setting_is_approved_and_can_read(settings, api_client):
    settings.REGISTRATION_REQUIRES_APPROVAL = False
    api_client.post("/auth/register", {"email": "open@example.com", "password": STRONG_PASSWORD}, format="json")

    assert login(api_client, "open@example.com", STRONG_PASSWORD).status_code == 200


# --- data endpoints refuse non-approved users ---------------------------------------------------


@pytest.mark.parametrize("path", DATA_PATHS)
@pytest.mark.parametrize(("status", "code"), [("pending", "account_pending"), ("rejected", "account_rejected")])
def test_data_endpoints_answer_403_to_non_approved_tokens(path, status, code):
    user = UserFactory(status=status)

    body = assert_error(bearer(user).get(path), 403)

    assert body["detail"].startswith(code)


@pytest.mark.parametrize("path", DATA_PATHS)
def test_data_endpoints_refuse_a_pending_session_user(client, path):
    user = UserFactory(status=User.Status.PENDING)
    client.force_login(user)

    assert assert_error(client.get(path), 403)["detail"].startswith("account_pending")


@pytest.mark.parametrize("path", ["/watchlists/", "/marketdata/daily"])
@pytest.mark.parametrize("change", [{"status": "rejected"}, {"is_active": False}, {"status": "pending"}])
def test_token_stops_working_at_once_after_rejection_or_deactivation(settings, path, change):
    settings.HISTORY_AUTH_CACHE_S = 10
    user = UserFactory()
    client = bearer(user)
    first = client.get(path)
    assert first.status_code != 403 and first.status_code != 401, first.json()  # the history user cache is warm

    for field, value in change.items():
        setattr(user, field, value)
    user.save()

    response = client.get(path)
    assert response.status_code == (401 if "is_active" in change else 403), response.json()


def test_history_user_cache_never_keeps_a_non_approved_user(settings):
    from marketdata.api.auth import _user_cache

    settings.HISTORY_AUTH_CACHE_S = 10
    user = UserFactory(status=User.Status.PENDING)

    assert_error(bearer(user).get("/marketdata/daily"), 403)

    assert _user_cache.get(str(user.pk)) is None


def test_history_user_cache_refuses_a_stale_entry_that_is_not_approved(settings):
    """Another process rejected the user: the entry cached here is checked again on every hit."""
    from marketdata.api.auth import _user_cache

    settings.HISTORY_AUTH_CACHE_S = 10
    user = UserFactory()
    client = bearer(user)
    assert client.get("/marketdata/daily").status_code == 400  # authenticated; the query is missing
    cached = _user_cache.get(str(user.pk))
    assert cached is not None
    cached.status = User.Status.REJECTED  # what a stale copy of a row could say

    assert_error(client.get("/marketdata/daily"), 403)


# --- WebSocket -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "pending"}, "account_pending"),
        ({"status": "rejected"}, "account_rejected"),
        ({"is_active": False}, "inactive"),
    ],
)
def test_ws_token_auth_refuses_non_approved_or_inactive_users(change, reason):
    user = UserFactory()
    token = str(RefreshToken.for_user(user).access_token)
    assert user_for_token(token)[0] == user

    User.objects.filter(pk=user.pk).update(**change)

    found, problem = user_for_token(token)
    assert found is None
    assert reason in problem


@pytest.fixture
def redis_layer(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["query", "message"])
async def test_ws_refuses_a_rejected_users_token(redis_layer, how):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(UserFactory)(status=User.Status.REJECTED)
    token = str(AccessToken.for_user(user))
    path = f"/ws?token={token}" if how == "query" else "/ws"
    communicator = WebsocketCommunicator(application, path)
    try:
        connected, _ = await communicator.connect(timeout=3)
        assert connected
        if how == "message":
            await communicator.send_json_to({"message_type": "auth", "token": token})
        error = await communicator.receive_json_from(timeout=3)
        assert error["message_type"] == "error"
        assert error["code"] == "auth_required"
        assert error["message"].startswith("account_rejected")
        assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4401}
    finally:
        await communicator.disconnect()
        await close_hub()


@pytest.mark.django_db(transaction=True)
async def test_ws_refuses_a_pending_session_user(redis_layer):
    from channels.db import database_sync_to_async
    from django.test import Client

    user = await database_sync_to_async(UserFactory)(status=User.Status.PENDING)
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(application, "/ws", headers=[(b"cookie", cookie)])
    try:
        connected, _ = await communicator.connect(timeout=3)
        assert connected
        error = await communicator.receive_json_from(timeout=3)
        assert error["code"] == "auth_required"
        assert error["message"].startswith("account_pending")
    finally:
        await communicator.disconnect()
        await close_hub()


# --- the web sign-in page -------------------------------------------------------------------------


def test_web_sign_in_of_a_pending_user_shows_why_and_keeps_no_session(client):
    UserFactory(email="wait@example.com", status=User.Status.PENDING)

    response = client.post("/accounts/login/", {"login": "wait@example.com", "password": DEFAULT_PASSWORD})

    assert response.status_code == 403
    assert b"approval" in response.content
    assert "_auth_user_id" not in client.session
