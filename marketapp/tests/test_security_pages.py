"""Pages and settings an anonymous visitor can reach: no 500s, no scripts from elsewhere.

The requests run as in production (DEBUG false, errors answered rather than raised) with no
Google app configured and, where mail matters, an SMTP server that does not answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from allauth.socialaccount.providers.google.views import GoogleOAuth2Adapter
from django.contrib.staticfiles import finders
from django.test import Client

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.google_stub import GoogleIdentity, GoogleStub, GoogleStubServer

pytestmark = pytest.mark.django_db

CLIENT_ID = "1234-stub.apps.googleusercontent.com"


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    return settings


@pytest.fixture
def anonymous() -> Client:
    return Client(raise_request_exception=False)


@pytest.fixture
def smtp_down(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens
    return settings


# --- Google routes without a Google app -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/accounts/google/login/"),
        ("post", "/accounts/google/login/"),
        ("get", "/accounts/google/login/callback/"),
        ("get", "/accounts/google/login/callback/?code=x&state=y"),
        ("get", "/accounts/google/login/token/"),
        ("post", "/accounts/google/login/token/"),
    ],
)
def test_google_routes_without_a_google_app_are_a_clear_404(production, anonymous, method, path):
    assert "APPS" not in production.SOCIALACCOUNT_PROVIDERS["google"]

    response = getattr(anonymous, method)(path)

    assert response.status_code == 404, response.content[:300]
    assert b"not configured" in response.content


def test_the_api_google_login_without_a_google_app_is_a_503(production, anonymous):
    response = anonymous.get("/auth/google/login")

    assert response.status_code == 503
    assert "not configured" in response.json()["detail"]


# --- mail ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["user@example.com", "nobody@example.com"])
def test_password_reset_page_when_mail_fails_is_a_503_not_a_500(production, smtp_down, anonymous, user, email):
    response = anonymous.post("/accounts/password/reset/", {"email": email})

    assert response.status_code == 503, response.content[:300]
    assert b"could not be sent" in response.content


def test_adding_an_email_when_mail_fails_is_not_a_500(production, smtp_down, anonymous, user):
    anonymous.force_login(user)

    response = anonymous.post("/accounts/email/", {"email": "second@example.com", "action_add": ""})

    # allauth may or may not mail the new address (rate limits); either way never a 500.
    assert response.status_code != 500
    if response.status_code == 503:
        assert b"could not be sent" in response.content


def test_password_reset_page_sends_mail_with_a_working_backend(production, anonymous, user, mailoutbox):
    response = anonymous.post("/accounts/password/reset/", {"email": user.email})

    assert response.status_code == 302
    assert [m.to for m in mailoutbox] == [[user.email]]


# --- Google sign-in never links through an unverified address --------------------------------------


@pytest.fixture
def google(settings, monkeypatch):
    google = {k: v for k, v in settings.SOCIALACCOUNT_PROVIDERS["google"].items() if k != "APPS"}
    settings.SOCIALACCOUNT_PROVIDERS = {
        "google": {**google, "APPS": [{"client_id": CLIENT_ID, "secret": "stub-secret", "key": ""}]}
    }
    settings.GOOGLE_LOGIN_REDIRECT_URL = ""
    with GoogleStubServer(GoogleStub(client_id=CLIENT_ID)) as stub:
        monkeypatch.setattr(GoogleOAuth2Adapter, "access_token_url", f"{stub.base_url}/token")
        monkeypatch.setattr(GoogleOAuth2Adapter, "identity_url", f"{stub.base_url}/userinfo")
        yield stub


def _google_callback(client: Client, stub: GoogleStub):
    response = client.get("/auth/google/login")
    assert response.status_code == 302, response.content
    state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
    return client.get("/accounts/google/login/callback/", {"code": stub.code, "state": state})


@pytest.mark.parametrize("verified", [False, "false", "False", "0", ""])
def test_an_unverified_google_address_never_links_an_existing_account(production, google, verified):
    existing = UserFactory(email="ada.lovelace@example.com")
    google.identity = GoogleIdentity(email="ada.lovelace@example.com", email_verified=verified)

    response = _google_callback(Client(raise_request_exception=False), google)

    assert response.status_code < 500, response.content[:300]
    assert not SocialAccount.objects.filter(user=existing).exists()
    assert User.objects.filter(email="ada.lovelace@example.com").count() == 1
    existing.refresh_from_db()
    assert existing.check_password(DEFAULT_PASSWORD)  # nobody took the account over or locked it


def test_a_verified_google_address_still_links_the_existing_account(production, google):
    existing = UserFactory(email="ada.lovelace@example.com")

    response = _google_callback(Client(), google)

    assert response.status_code == 302, response.content[:300]
    assert SocialAccount.objects.get(provider="google").user_id == existing.id


# --- helpers shared by the page checks below --------------------------------------------------------

SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.IGNORECASE)
STYLESHEET_HREF = re.compile(r"<link\b[^>]*\bhref=\"([^\"]+)\"", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


def _same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


# --- Swagger UI and ReDoc are served from this app ---------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/redoc"])
def test_api_docs_reference_only_same_origin_scripts_and_styles(production, anonymous, path):
    response = anonymous.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    scripts = SCRIPT_SRC.findall(html)
    assert scripts, html
    assert [s for s in scripts if not _same_origin(s)] == []
    assert [href for href in STYLESHEET_HREF.findall(html) if not _same_origin(href)] == []
    assert "googleapis" not in html
    assert INLINE_SCRIPT.findall(html) == []  # a strict CSP can run them


@pytest.mark.parametrize("path", ["/", "/redoc"])
def test_api_docs_scripts_are_this_apps_static_files_or_views(production, anonymous, settings, path):
    html = anonymous.get(path).content.decode()

    for src in SCRIPT_SRC.findall(html):
        if src.startswith(settings.STATIC_URL):
            found = finders.find(src.removeprefix(settings.STATIC_URL))
            assert found and Path(found).stat().st_size > 1000, src
        else:  # Swagger UI's start-up script, from the page's own view
            response = anonymous.get(src)
            assert response.status_code == 200, src
            assert response["Content-Type"].startswith("application/javascript")
            assert b"SwaggerUIBundle" in response.content


# --- Content-Security-Policy -------------------------------------------------------------------------


def _policy(response) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy: {dict(response.headers)}"
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/accounts/login/", "/", "/redoc", "/admin/login/", "/health/"])
def test_pages_have_a_policy_that_runs_only_this_apps_scripts(production, anonymous, path):
    policy = _policy(anonymous.get(path))

    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["style-src"] or path == "/redoc"


# --- settings read from the environment (a fresh process each) ----------------------------------------

PRINT_SETTINGS = (
    "from django.conf import settings as s; "
    "print(repr(getattr(s, 'SECURE_PROXY_SSL_HEADER', None))); print(s.EMAIL_BACKEND); print(s.SECURE_SSL_REDIRECT)"
)


def _production_settings(tmp_path, **extra: str) -> list[str]:
    import os
    import subprocess
    import sys

    strip = {
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "VAR_DIR",
        "EMAIL_URL",
        "TRUSTED_PROXIES",
        "SECURE_PROXY_SSL_HEADER",
    }
    env = {k: v for k, v in os.environ.items() if k not in strip}
    env.update(DEBUG="false", SECRET_KEY="x" * 60, ALLOWED_HOSTS="markets.example.com", VAR_DIR=str(tmp_path), **extra)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PRINT_SETTINGS],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-3:]


def test_production_does_not_trust_x_forwarded_proto_without_a_configured_proxy(tmp_path):
    proxy_header, _, ssl_redirect = _production_settings(tmp_path)

    assert proxy_header == "None"
    assert ssl_redirect == "True"


@pytest.mark.parametrize(
    "extra",
    [{"TRUSTED_PROXIES": "10.0.0.2"}, {"TRUSTED_PROXIES": "10.0.0.2,10.0.0.3"}, {"SECURE_PROXY_SSL_HEADER": "true"}],
)
def test_production_trusts_x_forwarded_proto_behind_a_configured_proxy(tmp_path, extra):
    proxy_header, _, _ = _production_settings(tmp_path, **extra)

    assert proxy_header == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_an_explicit_opt_out_wins_over_trusted_proxies(tmp_path):
    proxy_header, _, _ = _production_settings(tmp_path, TRUSTED_PROXIES="10.0.0.2", SECURE_PROXY_SSL_HEADER="false")

    assert proxy_header == "None"


def test_mail_goes_to_the_console_unless_email_url_is_set(tmp_path):
    assert _production_settings(tmp_path)[1] == "django.core.mail.backends.console.EmailBackend"
    smtp = _production_settings(tmp_path, EMAIL_URL="smtp+tls://u:p@mail.example.com:587")
    assert smtp[1] == "django.core.mail.backends.smtp.EmailBackend"
