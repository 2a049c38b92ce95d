"""Google sign-in end to end: the real allauth flow against a local HTTP stand-in for Google.

Only the provider's endpoint URLs are redirected to the stub; allauth's request building,
token exchange, id_token decoding and userinfo parsing all run as in production.
"""

import base64
import hashlib
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from allauth.socialaccount.providers.google.views import GoogleOAuth2Adapter
from django.contrib.sites.models import Site
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.google_stub import GoogleIdentity, GoogleStub, GoogleStubServer

pytestmark = pytest.mark.django_db

CLIENT_ID = "1234-stub.apps.googleusercontent.com"
CALLBACK = "http://testserver/accounts/google/login/callback/"


@pytest.fixture
def google_settings(settings):
    google = {k: v for k, v in settings.SOCIALACCOUNT_PROVIDERS["google"].items() if k != "APPS"}
    settings.SOCIALACCOUNT_PROVIDERS = {
        "google": {**google, "APPS": [{"client_id": CLIENT_ID, "secret": "stub-secret", "key": ""}]}
    }
    settings.GOOGLE_LOGIN_REDIRECT_URL = ""
    return settings


@pytest.fixture
def google(google_settings, monkeypatch):
    """Google's token and userinfo endpoints, served by a local stub over HTTP."""
    with GoogleStubServer(GoogleStub(client_id=CLIENT_ID)) as stub:
        monkeypatch.setattr(GoogleOAuth2Adapter, "access_token_url", f"{stub.base_url}/token")
        monkeypatch.setattr(GoogleOAuth2Adapter, "identity_url", f"{stub.base_url}/userinfo")
        yield stub


def start(client: Client) -> dict[str, str]:
    """GET /auth/google/login; returns the query of the Google authorization URL."""
    response = client.get("/auth/google/login")
    assert response.status_code == 302, response.content
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://accounts.google.com/o/oauth2/v2/auth"
    return {k: v[0] for k, v in parse_qs(url.query).items()}


def sign_in(client: Client, stub: GoogleStub):
    """The whole browser round trip; returns the response of the hand-off view and the authorize params."""
    params = start(client)
    # Google sends the browser back to the callback with the code and the state.
    callback = client.get("/accounts/google/login/callback/", {"code": stub.code, "state": params["state"]})
    assert callback.status_code == 302, callback.content
    assert callback["Location"] == "/auth/google/complete"
    return client.get(callback["Location"]), params


def assert_error(response, status_code: int) -> dict:
    body = response.json()
    assert response.status_code == status_code, body
    assert body["status_code"] == status_code
    assert body["detail"]
    return body


def me(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/auth/me")


def test_google_sign_in_creates_user_and_returns_tokens(google):
    client = Client()

    response, params = sign_in(client, google)

    # The authorization request allauth built for Google.
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == CALLBACK
    assert params["response_type"] == "code"
    assert set(params["scope"].split()) == {"profile", "email"}
    assert params["state"]
    assert params["code_challenge_method"] == "S256"
    # What allauth sent to the token endpoint, over real HTTP.
    [form] = google.token_requests
    assert form["code"] == google.code
    assert form["client_id"] == CLIENT_ID
    assert form["client_secret"] == "stub-secret"
    assert form["redirect_uri"] == CALLBACK
    verifier_hash = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=")
    assert verifier_hash.decode() == params["code_challenge"]
    # The id_token had no picture, so allauth asked the userinfo endpoint with the access token.
    [info_headers] = google.userinfo_requests
    assert info_headers["authorization"] == f"Bearer {google.access_token}"

    assert response.status_code == 200, response.content
    body = response.json()
    user = User.objects.get()
    assert (user.email, user.first_name, user.last_name) == ("ada.lovelace@example.com", "Ada", "Lovelace")
    assert user.role == User.Role.USER
    assert user.profile_picture_url == google.identity.picture
    assert not user.has_usable_password()
    assert SocialAccount.objects.get(user=user, provider="google").uid == google.identity.sub
    assert body["token_type"] == "bearer"
    assert body["user"]["id"] == user.id
    assert body["user"]["profile_picture_url"] == google.identity.picture
    assert AccessToken(body["access"])["user_id"] == str(user.id)
    assert me(body["access"]).json()["email"] == "ada.lovelace@example.com"
    refreshed = APIClient().post("/auth/refresh", {"refresh": body["refresh"]}, format="json")
    assert refreshed.status_code == 200


def test_hand_off_happens_once_and_leaves_no_session(google):
    client = Client()
    first, _ = sign_in(client, google)
    assert first.status_code == 200

    assert_error(client.get("/auth/google/complete"), 401)
    assert "_auth_user_id" not in client.session


def test_google_sign_in_redirects_with_tokens_in_fragment(google, settings):
    settings.GOOGLE_LOGIN_REDIRECT_URL = "https://app.example.com/after-login"

    response, _ = sign_in(Client(), google)

    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://app.example.com/after-login"
    assert url.query == ""
    fragment = {k: v[0] for k, v in parse_qs(url.fragment).items()}
    assert fragment["token_type"] == "bearer"
    assert me(fragment["access"]).json()["email"] == "ada.lovelace@example.com"
    assert AccessToken(fragment["access"])["user_id"] == str(User.objects.get().id)
    assert fragment["refresh"]


def test_existing_user_with_same_email_is_linked_not_duplicated(google):
    existing = UserFactory(email="ada.lovelace@example.com", first_name="Augusta")
    google.identity = GoogleIdentity(email="Ada.Lovelace@Example.com")

    response, _ = sign_in(Client(), google)

    assert response.status_code == 200, response.content
    assert User.objects.count() == 1
    account = SocialAccount.objects.get(provider="google")
    assert account.user_id == existing.id
    assert response.json()["user"]["id"] == existing.id
    existing.refresh_from_db()
    assert existing.profile_picture_url == google.identity.picture
    assert existing.first_name == "Augusta"
    # allauth's guard against account pre-hijacking: the local address was never verified, so
    # the password someone chose for it stops working once Google proves who owns the address.
    assert not existing.check_password(DEFAULT_PASSWORD)


def test_returning_google_user_signs_in_to_the_same_account(google):
    first, _ = sign_in(Client(), google)
    google.identity.picture = "https://lh3.googleusercontent.com/a/new-portrait"

    second, _ = sign_in(Client(), google)

    assert second.status_code == 200
    assert second.json()["user"]["id"] == first.json()["user"]["id"]
    assert User.objects.count() == 1
    assert SocialAccount.objects.count() == 1
    assert User.objects.get().profile_picture_url == "https://lh3.googleusercontent.com/a/new-portrait"


def test_registration_closed_refuses_new_google_users_but_not_existing_ones(google, settings):
    settings.REGISTRATION_OPEN = False
    client = Client()
    params = start(client)

    refused = client.get("/accounts/google/login/callback/", {"code": google.code, "state": params["state"]})

    body = assert_error(refused, 403)
    assert "Registration is closed" in body["detail"]
    assert not User.objects.exists()

    UserFactory(email="ada.lovelace@example.com")
    response, _ = sign_in(Client(), google)
    assert response.status_code == 200


def test_google_not_configured_is_a_clear_503(settings):
    google = {k: v for k, v in settings.SOCIALACCOUNT_PROVIDERS["google"].items() if k != "APPS"}
    settings.SOCIALACCOUNT_PROVIDERS = {"google": google}

    body = assert_error(Client().get("/auth/google/login"), 503)

    assert "GOOGLE_CLIENT_ID" in body["detail"]


def test_google_app_from_the_admin_is_used(settings):
    google = {k: v for k, v in settings.SOCIALACCOUNT_PROVIDERS["google"].items() if k != "APPS"}
    settings.SOCIALACCOUNT_PROVIDERS = {"google": google}
    app = SocialApp.objects.create(provider="google", name="Google", client_id="admin-client-id", secret="s3cret")
    app.sites.add(Site.objects.get_current())

    params = start(Client())

    assert params["client_id"] == "admin-client-id"


def test_complete_without_google_sign_in_is_401(google, user):
    client = Client()
    assert_error(client.get("/auth/google/complete"), 401)

    # A session login (e.g. the dashboard) is not a Google sign-in: no tokens for it.
    client.force_login(user)
    assert_error(client.get("/auth/google/complete"), 401)


def test_wrong_code_is_an_api_error_and_creates_nobody(google):
    client = Client()
    params = start(client)

    response = client.get("/accounts/google/login/callback/", {"code": "forged", "state": params["state"]})

    body = assert_error(response, 401)
    assert body["detail"].startswith("Google sign-in failed")
    assert google.token_requests[0]["code"] == "forged"
    assert not User.objects.exists()


def test_unknown_state_is_an_api_error(google):
    client = Client()
    start(client)

    response = client.get("/accounts/google/login/callback/", {"code": google.code, "state": "made-up"})

    body = assert_error(response, 401)
    assert "state" in body["detail"]
    assert google.token_requests == []


def test_cancelled_sign_in_is_an_api_error(google):
    client = Client()
    params = start(client)

    response = client.get("/accounts/google/login/callback/", {"error": "access_denied", "state": params["state"]})

    body = assert_error(response, 401)
    assert body["detail"] == "Google sign-in was cancelled."


def test_google_unreachable_is_502(google_settings, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setattr(GoogleOAuth2Adapter, "access_token_url", f"http://127.0.0.1:{closed_port}/token")
    client = Client()
    params = start(client)

    response = client.get("/accounts/google/login/callback/", {"code": "anything", "state": params["state"]})

    assert_error(response, 502)
    assert not User.objects.exists()
