"""The Django admin, driven as a superuser through the test client against the real database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time

import pytest
from django import forms
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from accounts.models import User, Watchlist, WatchlistItem
from exchanges.models import Exchange, ExchangeHoliday
from ingestion.admin import LimitedInlineFormSet, ProviderAdmin
from ingestion.models import ExchangeProviderMapping, PopulateJob, Provider, ProviderInstrumentMapping
from instruments.models import Instrument, InstrumentType, Sector
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"accounts", "exchanges", "instruments", "ingestion", "marketdata"}
REGISTERED = sorted(admin.site._registry, key=lambda m: m._meta.label)
PROJECT_MODELS = [m for m in REGISTERED if m._meta.app_label in PROJECT_APPS]
SECRET = "sekrit-token-123"


def _ids(model) -> str:
    return model._meta.label


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def world(db) -> dict:
    """One row of every project model, linked together as in real use."""
    nse = Exchange.objects.create(
        code="NSE",
        name="National Stock Exchange",
        country="India",
        currency="INR",
        timezone="Asia/Kolkata",
        market_open=time(9, 15),
        market_close=time(15, 30),
    )
    nasdaq = Exchange.objects.create(code="NASDAQ", name="Nasdaq", country="USA", currency="USD", timezone="UTC")
    holiday = ExchangeHoliday.objects.create(exchange=nse, date=date(2024, 1, 26), name="Republic Day")
    sector = Sector.objects.create(name="Energy")
    equity = InstrumentType.objects.create(code="EQ", name="Equity")
    reliance = Instrument.objects.create(
        symbol="RELIANCE", name="Reliance Industries", exchange=nse, instrument_type=equity, sector=sector
    )
    infy = Instrument.objects.create(symbol="INFY", name="Infosys", exchange=nse, instrument_type=equity)
    aapl = Instrument.objects.create(symbol="AAPL", name="Apple", exchange=nasdaq, instrument_type=equity)
    dhan = Provider.objects.create(
        code="DHAN", name="Dhan", kind="dhan", credentials={"client_id": "1000", "access_token": SECRET}
    )
    sim = Provider.objects.create(code="SIM", name="Simulator", kind="simulated")
    exchange_mapping = ExchangeProviderMapping.objects.create(exchange=nse, provider=dhan, is_primary=True)
    instrument_mapping = ProviderInstrumentMapping.objects.create(
        provider=dhan, instrument=reliance, segment="NSE_EQ", search_code="2885"
    )
    intraday = PriceHistoryIntraday.objects.create(
        instrument=reliance,
        timestamp=datetime(2024, 1, 15, 4, 0, tzinfo=UTC),
        open=2500,
        high=2510,
        low=2490,
        close=2505,
        volume=1000,
        source_id=dhan.pk,
    )
    PriceHistoryIntraday.objects.create(
        instrument=aapl,
        timestamp=datetime(2023, 6, 1, 14, 30, tzinfo=UTC),
        interval="5m",
        open=180,
        high=181,
        low=179,
        close=180.5,
        source_id=sim.pk,
    )
    daily = PriceHistoryDaily.objects.create(
        instrument=reliance, date=date(2024, 1, 15), open=2500, high=2550, low=2480, close=2530, source_id=dhan.pk
    )
    member = User.objects.create_user(email="member@example.com", password="pw-member-12345")
    watchlist = Watchlist.objects.create(user=member, name="Main")
    WatchlistItem.objects.create(watchlist=watchlist, instrument=reliance)
    job = PopulateJob.objects.create(kind="reference", state="succeeded", message="Seeded.", created_by=member)
    return {
        PopulateJob: job,
        Watchlist: watchlist,
        User: member,
        Exchange: nse,
        ExchangeHoliday: holiday,
        Sector: sector,
        InstrumentType: equity,
        Instrument: reliance,
        Provider: dhan,
        ExchangeProviderMapping: exchange_mapping,
        ProviderInstrumentMapping: instrument_mapping,
        PriceHistoryIntraday: intraday,
        PriceHistoryDaily: daily,
        "infy": infy,
        "aapl": aapl,
        "sim": sim,
        "nasdaq": nasdaq,
    }


def _post_data(response) -> dict:
    """The change form as a browser would submit it unchanged: main form and every inline."""
    data: dict = {}

    def add(form: forms.BaseForm) -> None:
        for name, field in form.fields.items():
            bound = form[name]
            value = bound.value()
            if isinstance(field.widget, forms.CheckboxInput):
                if value:
                    data[bound.html_name] = "on"
            elif isinstance(value, list | tuple):
                data[bound.html_name] = [str(v) for v in value]
            else:
                data[bound.html_name] = "" if value is None else str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def _result_pks(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


# --- Every registered model --------------------------------------------------------------------------


@pytest.mark.parametrize("model", REGISTERED, ids=_ids)
def test_changelist_renders(staff_client, world, model):
    assert staff_client.get(_url(model, "changelist")).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=_ids)
def test_add_page_renders(staff_client, superuser, rf, model):
    model_admin = admin.site._registry[model]
    request = rf.get("/")
    request.user = superuser
    response = staff_client.get(_url(model, "add"))
    # Some admins forbid adding by design (issued JWTs; populate jobs, queued through the API);
    # every other project model allows it.
    expected = 200 if model_admin.has_add_permission(request) else 403
    if model in PROJECT_MODELS and model is not PopulateJob:
        assert expected == 200
    assert response.status_code == expected


@pytest.mark.parametrize("model", PROJECT_MODELS, ids=_ids)
def test_change_page_renders(staff_client, world, model):
    assert model in world, f"add a {model.__name__} to the world fixture"
    obj = world[model]
    response = staff_client.get(_url(model, "change", obj.pk))
    assert response.status_code == 200
    assert response.context["original"] == obj


@pytest.mark.parametrize("model", PROJECT_MODELS, ids=_ids)
def test_audit_fields_are_read_only(staff_client, world, model):
    response = staff_client.get(_url(model, "change", world[model].pk))
    adminform = response.context["adminform"]
    assert not {"created_at", "updated_at"} & set(adminform.form.fields)
    shown = {f.field["name"] for fieldset in adminform for line in fieldset for f in line if f.is_readonly}
    assert {"created_at", "updated_at"} <= shown


@pytest.mark.parametrize("model", PROJECT_MODELS, ids=_ids)
def test_activate_and_deactivate_actions(staff_client, world, model):
    obj = world[model]
    url = _url(model, "changelist")
    choices = dict(staff_client.get(url).context["action_form"].fields["action"].choices)
    assert {"activate_selected", "deactivate_selected"} <= set(choices)

    response = staff_client.post(url, {"action": "deactivate_selected", "_selected_action": [obj.pk]})
    assert response.status_code == 302
    obj.refresh_from_db()
    assert obj.is_active is False
    before = obj.updated_at

    staff_client.post(url, {"action": "activate_selected", "_selected_action": [obj.pk]})
    obj.refresh_from_db()
    assert obj.is_active is True
    assert obj.updated_at > before
    assert model.objects.filter(is_active=False).count() == 0


# --- Changelists: search, filters, date hierarchy, no N+1 ------------------------------------------------


def test_instrument_search_and_filters(staff_client, world):
    url = _url(Instrument, "changelist")
    assert _result_pks(staff_client.get(url, {"q": "relian"})) == {world[Instrument].pk}
    assert _result_pks(staff_client.get(url, {"q": "Infosys"})) == {world["infy"].pk}
    by_exchange = staff_client.get(url, {"exchange__id__exact": world["nasdaq"].pk})
    assert _result_pks(by_exchange) == {world["aapl"].pk}
    by_sector = staff_client.get(url, {"sector__id__exact": world[Sector].pk})
    assert _result_pks(by_sector) == {world[Instrument].pk}


def test_instrument_changelist_has_no_n_plus_one(staff_client, world):
    url = _url(Instrument, "changelist")
    with CaptureQueriesContext(connection) as few:
        staff_client.get(url)
    exchange, kind = world[Exchange], world[InstrumentType]
    Instrument.objects.bulk_create(
        Instrument(symbol=f"SYM{i}", exchange=exchange, instrument_type=kind, sector=world[Sector]) for i in range(20)
    )
    with CaptureQueriesContext(connection) as many:
        staff_client.get(url)
    assert len(many) == len(few)


@pytest.mark.parametrize("model", [PriceHistoryIntraday, PriceHistoryDaily, ProviderInstrumentMapping], ids=_ids)
def test_big_table_changelists_have_no_n_plus_one(staff_client, world, model):
    url = _url(model, "changelist")
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(url).status_code == 200
    dhan, exchange, kind = world[Provider], world[Exchange], world[InstrumentType]
    extra = Instrument.objects.bulk_create(
        Instrument(symbol=f"X{i}", exchange=exchange, instrument_type=kind) for i in range(10)
    )
    ohlc = {"open": 1, "high": 1, "low": 1, "close": 1}
    for i, instrument in enumerate(extra):
        if model is PriceHistoryIntraday:
            model.objects.create(instrument=instrument, timestamp=world[model].timestamp, **ohlc)
        elif model is PriceHistoryDaily:
            model.objects.create(instrument=instrument, date=date(2024, 1, 15), **ohlc)
        else:
            model.objects.create(provider=dhan, instrument=instrument, segment="NSE_EQ", search_code=str(i))
    with CaptureQueriesContext(connection) as many:
        staff_client.get(url)
    assert len(many) == len(few)


def test_intraday_search_filters_and_date_hierarchy(staff_client, world):
    url = _url(PriceHistoryIntraday, "changelist")
    reliance_bar = world[PriceHistoryIntraday].pk
    aapl_bar = PriceHistoryIntraday.objects.get(instrument=world["aapl"]).pk
    assert _result_pks(staff_client.get(url, {"q": "REL"})) == {reliance_bar}
    assert _result_pks(staff_client.get(url, {"interval": "5m"})) == {aapl_bar}
    assert _result_pks(staff_client.get(url, {"source__id__exact": world[Provider].pk})) == {reliance_bar}
    assert _result_pks(staff_client.get(url, {"timestamp__year": 2023})) == {aapl_bar}
    assert _result_pks(staff_client.get(url, {"timestamp__year": 2024, "timestamp__month": 1})) == {reliance_bar}
    response = staff_client.get(url)
    assert response.context["cl"].show_full_result_count is False
    assert SECRET not in response.content.decode()


def test_daily_date_hierarchy_and_filters(staff_client, world):
    url = _url(PriceHistoryDaily, "changelist")
    daily = world[PriceHistoryDaily].pk
    assert _result_pks(staff_client.get(url, {"date__year": 2024})) == {daily}
    assert _result_pks(staff_client.get(url, {"date__year": 2022})) == set()
    assert _result_pks(staff_client.get(url, {"source__id__exact": world["sim"].pk})) == set()
    assert _result_pks(staff_client.get(url, {"q": "RELIANCE"})) == {daily}


def test_bad_filter_value_is_not_a_server_error(staff_client, world):
    response = staff_client.get(_url(Instrument, "changelist"), {"exchange__id__exact": "not-a-number"})
    assert response.status_code in {200, 302}


# --- Inlines ----------------------------------------------------------------------------------------------


def test_exchange_shows_holidays_and_provider_mappings_inline(staff_client, world):
    response = staff_client.get(_url(Exchange, "change", world[Exchange].pk))
    inlines = {inline.formset.model: inline.formset for inline in response.context["inline_admin_formsets"]}
    assert [f.instance for f in inlines[ExchangeHoliday].initial_forms] == [world[ExchangeHoliday]]
    assert [f.instance for f in inlines[ExchangeProviderMapping].initial_forms] == [world[ExchangeProviderMapping]]


def test_instrument_shows_provider_mappings_inline(staff_client, world):
    response = staff_client.get(_url(Instrument, "change", world[Instrument].pk))
    (inline,) = response.context["inline_admin_formsets"]
    assert [f.instance for f in inline.formset.initial_forms] == [world[ProviderInstrumentMapping]]


def test_instrument_mapping_added_inline(staff_client, world):
    url = _url(Instrument, "change", world["infy"].pk)
    data = _post_data(staff_client.get(url))
    prefix = "provider_mappings"
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-0-provider": str(world[Provider].pk),
            f"{prefix}-0-segment": "NSE_EQ",
            f"{prefix}-0-search_code": "1594",
            f"{prefix}-0-is_active": "on",
        }
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    mapping = ProviderInstrumentMapping.objects.get(instrument=world["infy"])
    assert (mapping.provider, mapping.search_code) == (world[Provider], "1594")


def test_provider_instrument_mapping_inline_is_limited(staff_client, world):
    dhan, exchange, kind = world[Provider], world[Exchange], world[InstrumentType]
    limit = LimitedInlineFormSet.limit
    instruments = Instrument.objects.bulk_create(
        Instrument(symbol=f"S{i:03}", exchange=exchange, instrument_type=kind) for i in range(limit)
    )
    ProviderInstrumentMapping.objects.bulk_create(
        ProviderInstrumentMapping(provider=dhan, instrument=inst, segment="NSE_EQ", search_code=f"9{i}")
        for i, inst in enumerate(instruments)
    )
    url = _url(Provider, "change", dhan.pk)
    response = staff_client.get(url)
    inlines = {inline.formset.model: inline.formset for inline in response.context["inline_admin_formsets"]}
    assert len(inlines[ProviderInstrumentMapping].initial_forms) == LimitedInlineFormSet.limit
    html = response.content.decode()
    assert f"{LimitedInlineFormSet.limit + 1} mapping(s)" in html
    assert f"?provider__id__exact={dhan.pk}" in html

    # Saving the page edits the shown rows and leaves the others alone.
    data = _post_data(response)
    data["instrument_mappings-0-search_code"] = "edited"
    assert staff_client.post(url, data).status_code == 302
    first = inlines[ProviderInstrumentMapping].initial_forms[0].instance
    first.refresh_from_db()
    assert first.search_code == "edited"
    assert ProviderInstrumentMapping.objects.filter(provider=dhan).count() == LimitedInlineFormSet.limit + 1


# --- Provider credentials: write-only ------------------------------------------------------------------


def test_provider_change_page_never_shows_the_secret(staff_client, world):
    response = staff_client.get(_url(Provider, "change", world[Provider].pk))
    html = response.content.decode()
    assert SECRET not in html
    assert "Currently set (keys: access_token, client_id)" in html
    assert response.context["adminform"].form["credentials_input"].value() in (None, "")

    unset = staff_client.get(_url(Provider, "change", world["sim"].pk)).content.decode()
    assert "Currently not set" in unset

    for view in ("history", "delete"):
        page = staff_client.get(_url(Provider, view, world[Provider].pk))
        assert page.status_code == 200
        assert SECRET not in page.content.decode()


def test_provider_credential_key_names_are_escaped(staff_client, world):
    sim = world["sim"]
    sim.credentials = {"<i>key</i>": "v"}
    sim.save()
    html = staff_client.get(_url(Provider, "change", sim.pk)).content.decode()
    assert "&lt;i&gt;key&lt;/i&gt;" in html
    assert "<i>key</i>" not in html


def test_provider_changelist_shows_credentials_set_not_values(staff_client, world):
    response = staff_client.get(_url(Provider, "changelist"))
    assert SECRET not in response.content.decode()
    model_admin = response.context["cl"].model_admin
    by_code = {p.code: model_admin.credentials_set(p) for p in response.context["cl"].result_list}
    assert by_code == {"DHAN": True, "SIM": False}


def test_provider_blank_credentials_keep_the_stored_ones(staff_client, world):
    dhan = world[Provider]
    url = _url(Provider, "change", dhan.pk)
    data = _post_data(staff_client.get(url))
    assert data["credentials_input"] == ""
    data["name"] = "Dhan HQ"
    assert staff_client.post(url, data).status_code == 302
    dhan = Provider.objects.get(pk=dhan.pk)
    assert dhan.name == "Dhan HQ"
    assert dhan.credentials == {"client_id": "1000", "access_token": SECRET}


def test_provider_new_json_replaces_credentials(staff_client, world):
    dhan = world[Provider]
    url = _url(Provider, "change", dhan.pk)
    data = _post_data(staff_client.get(url))
    data["credentials_input"] = json.dumps({"client_id": "2000", "access_token": "fresh-token-456"})
    assert staff_client.post(url, data).status_code == 302
    assert Provider.objects.get(pk=dhan.pk).credentials == {"client_id": "2000", "access_token": "fresh-token-456"}
    assert "fresh-token-456" not in staff_client.get(url).content.decode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"access_token": "typo-secret-789"', "Credentials must be valid JSON"),
        ('["typo-secret-789"]', "must be a non-empty JSON object"),
        ("{}", "must be a non-empty JSON object"),
    ],
)
def test_provider_invalid_credentials_give_a_form_error(staff_client, world, raw, message):
    dhan = world[Provider]
    url = _url(Provider, "change", dhan.pk)
    data = _post_data(staff_client.get(url))
    data["credentials_input"] = raw
    response = staff_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["credentials_input"]
    assert any(message in e for e in errors)
    # The rejected input is not echoed back into the page either.
    assert "typo-secret-789" not in response.content.decode()
    assert Provider.objects.get(pk=dhan.pk).credentials["access_token"] == SECRET


def test_provider_clear_credentials(staff_client, world):
    dhan = world[Provider]
    url = _url(Provider, "change", dhan.pk)
    data = _post_data(staff_client.get(url))
    data["clear_credentials"] = "on"
    assert staff_client.post(url, data).status_code == 302
    dhan = Provider.objects.get(pk=dhan.pk)
    assert dhan.credentials == {}
    assert dhan.credentials_set is False


def test_provider_clear_and_new_credentials_together_is_an_error(staff_client, world):
    dhan = world[Provider]
    url = _url(Provider, "change", dhan.pk)
    data = _post_data(staff_client.get(url))
    data.update(clear_credentials="on", credentials_input='{"access_token": "x"}')
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "not both" in str(response.context["adminform"].form.non_field_errors())
    assert Provider.objects.get(pk=dhan.pk).credentials["access_token"] == SECRET


def test_provider_add_with_credentials_and_settings(staff_client, world, settings):
    settings.PROVIDER_URL_ALLOWED_HOSTS = ["127.0.0.1:9000"]  # a local feed, allowed by the deployment
    url = _url(Provider, "add")
    data = _post_data(staff_client.get(url))
    data.update(
        code="YF",
        name="Yahoo",
        kind="yahoo",
        rate_limit="2",
        settings='{"feed_url": "ws://127.0.0.1:9000/"}',
        credentials_input='{"api_key": "yahoo-key-1"}',
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302
    provider = Provider.objects.get(code="YF")
    assert provider.credentials == {"api_key": "yahoo-key-1"}
    assert provider.effective_settings()["feed_url"] == "ws://127.0.0.1:9000/"


def test_provider_url_setting_on_a_foreign_host_is_a_form_error(staff_client, world):
    url = _url(Provider, "change", world[Provider].pk)
    data = _post_data(staff_client.get(url))
    data.update(settings='{"rest_url": "https://collector.example/v2"}')
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "rest_url" in str(response.context["adminform"].form.errors["settings"])
    assert "rest_url" not in Provider.objects.get(pk=world[Provider].pk).settings


def test_provider_invalid_settings_json_is_a_form_error(staff_client, world):
    url = _url(Provider, "change", world[Provider].pk)
    data = _post_data(staff_client.get(url))
    data["settings"] = "{not json"
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "settings" in response.context["adminform"].form.errors


def test_provider_admin_survives_a_changed_credentials_key(staff_client, world):
    dhan = world[Provider]
    with override_settings(CREDENTIALS_KEY="a-different-key"):
        changelist = staff_client.get(_url(Provider, "changelist"))
        assert changelist.status_code == 200
        assert (
            changelist.context["cl"].model_admin.credentials_set(
                next(p for p in changelist.context["cl"].result_list if p.pk == dhan.pk)
            )
            is None
        )

        url = _url(Provider, "change", dhan.pk)
        response = staff_client.get(url)
        assert response.status_code == 200
        assert "unreadable with the current CREDENTIALS_KEY" in response.content.decode()

        # A save that does not touch credentials leaves the stored token exactly as it was.
        with connection.cursor() as cursor:
            cursor.execute("SELECT credentials FROM ingestion_provider WHERE id=%s", [dhan.pk])
            (token_before,) = cursor.fetchone()
        data = _post_data(response)
        data["rate_limit"] = "3"
        assert staff_client.post(url, data).status_code == 302
        with connection.cursor() as cursor:
            cursor.execute("SELECT credentials, rate_limit FROM ingestion_provider WHERE id=%s", [dhan.pk])
            assert cursor.fetchone() == (token_before, 3.0)

        # New credentials are written with the current key and read back.
        data["credentials_input"] = '{"access_token": "rekeyed"}'
        assert staff_client.post(url, data).status_code == 302
        assert Provider.objects.get(pk=dhan.pk).credentials == {"access_token": "rekeyed"}


def test_provider_is_an_autocomplete_target_without_secrets(staff_client, world):
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "ingestion", "model_name": "exchangeprovidermapping", "field_name": "provider", "term": "dh"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["DHAN"]
    assert SECRET not in response.content.decode()
    assert ProviderAdmin.search_fields


# --- Users ------------------------------------------------------------------------------------------------


def test_user_add_with_email_and_two_passwords(staff_client):
    response = staff_client.get(_url(User, "add"))
    assert set(response.context["adminform"].form.fields) == {"email", "password1", "password2"}
    response = staff_client.post(
        _url(User, "add"),
        {"email": "New.Person@Example.com", "password1": "a-long-pass-9876", "password2": "a-long-pass-9876"},
    )
    assert response.status_code == 302
    user = User.objects.get(email="new.person@example.com")
    assert user.check_password("a-long-pass-9876")
    assert user.role == User.Role.USER


def test_user_add_rejects_mismatch_and_duplicate_email(staff_client, world):
    url = _url(User, "add")
    mismatch = staff_client.post(url, {"email": "x@example.com", "password1": "a-long-pass-1", "password2": "other-2"})
    assert mismatch.status_code == 200
    assert "password2" in mismatch.context["adminform"].form.errors
    duplicate = staff_client.post(
        url, {"email": "MEMBER@example.com", "password1": "a-long-pass-9876", "password2": "a-long-pass-9876"}
    )
    assert duplicate.status_code == 200
    assert duplicate.context["adminform"].form.errors
    assert User.objects.filter(email__iexact="member@example.com").count() == 1


def test_user_change_page_links_to_the_password_form(staff_client, world):
    member = world[User]
    html = staff_client.get(_url(User, "change", member.pk)).content.decode()
    assert 'href="../password/"' in html
    assert "pw-member-12345" not in html
    password_page = staff_client.get(reverse("admin:auth_user_password_change", args=[member.pk]))
    assert password_page.status_code == 200


def test_user_role_filter_and_search(staff_client, world, superuser):
    url = _url(User, "changelist")
    assert _result_pks(staff_client.get(url, {"role__exact": "admin"})) == {superuser.pk}
    assert _result_pks(staff_client.get(url, {"role__exact": "user"})) == {world[User].pk}
    assert _result_pks(staff_client.get(url, {"q": "member"})) == {world[User].pk}
