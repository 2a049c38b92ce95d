"""The server-rendered pages through Django's test client (the browser tests drive them for real)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from accounts.models import Watchlist
from instruments.reference_data import DEFAULT_ADMIN_EMAIL

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0, stdout=io.StringIO())


@pytest.mark.parametrize("path", ["/live/", "/live/providers/", "/instruments/NASDAQ/AAPL/"])
def test_pages_send_strangers_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_sign_in_page_renders_the_form(client):
    response = client.get("/accounts/login/?next=/live/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="login"' in html and 'name="password"' in html and 'value="/live/"' in html
    assert "Sign in with" not in html  # no Google app configured here


def test_dashboard_embeds_the_users_lists_and_makes_the_default_one(demo, client, user):
    client.force_login(user)
    response = client.get("/live/")
    assert response.status_code == 200
    [default] = Watchlist.objects.filter(user=user)
    html = response.content.decode()
    start = html.index('<script id="watchlists-data" type="application/json">') + len(
        '<script id="watchlists-data" type="application/json">'
    )
    lists = json.loads(html[start : html.index("</script>", start)])
    assert [(w["id"], w["name"], len(w["items"])) for w in lists] == [(default.pk, "Default", 21)]
    assert "vendor/lightweight-charts/lightweight-charts.standalone.production.js" in html
    assert 'href="/live/providers/"' not in html  # admins only


def test_instrument_page(demo, client, user):
    client.force_login(user)
    response = client.get("/instruments/nse/RELIANCE/")
    assert response.status_code == 200
    assert response.context["instrument"].exchange.code == "NSE"
    assert [m.provider.code for m in response.context["mappings"]] == ["DHAN", "SIM", "YF"]
    missing = client.get("/instruments/NSE/NOPE/")
    assert missing.status_code == 404
    assert "Unknown symbol &#x27;NOPE&#x27; on NSE." in missing.content.decode()


def test_provider_panel_is_for_admins(demo, client, user, django_user_model):
    client.force_login(user)
    assert client.get("/live/providers/").status_code == 403
    client.force_login(django_user_model.objects.get(email=DEFAULT_ADMIN_EMAIL))  # made by seed_demo
    response = client.get("/live/providers/")
    assert response.status_code == 200
    assert [p["code"] for p in response.context["providers"]] == ["DHAN", "REPLAY", "SIM", "YF"]


def test_sign_in_page_links_to_google_when_it_is_configured(client):
    from allauth.socialaccount.models import SocialApp
    from django.contrib.sites.models import Site

    app = SocialApp.objects.create(provider="google", name="Google", client_id="id-123", secret="secret-456")
    app.sites.add(Site.objects.get_current())
    html = client.get("/accounts/login/?next=/live/").content.decode()
    assert 'id="sign-in-google"' in html
    # allauth's tag carries the page to return to.
    assert 'href="/accounts/google/login/?process=login&amp;next=%2Flive%2F"' in html
