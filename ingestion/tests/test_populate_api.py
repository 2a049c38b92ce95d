"""The /populate API: admin only, 202 with a job id, jobs that run to a reported end.

Jobs run through ``job_run`` (what the Celery task calls), in a background thread in the
embedded mode, and as a real message on the Redis broker in the stack mode.
"""

from __future__ import annotations

import json
import time
from datetime import date
from datetime import time as dtime

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from exchanges.models import Exchange
from exchanges.tests.factories import ExchangeFactory
from ingestion.jobs import job_run
from ingestion.models import PopulateJob, Provider
from ingestion.seeding import reference_data_seed
from ingestion.tests.factories import ProviderFactory, ProviderInstrumentMappingFactory
from ingestion.tests.fakes.history_stub import HistoryStub
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory
from marketdata.models import PriceHistoryDaily

DHAN_HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,SEM_TRADING_SYMBOL,"
    "SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,SEM_OPTION_TYPE,SEM_TICK_SIZE,"
    "SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,SM_SYMBOL_NAME"
)
SCRIP_MASTER = "\n".join(
    [
        DHAN_HEADER,
        "NSE,E,2885,EQUITY,0,RELIANCE,1.0,Reliance Industries,,-0.01000,,10.0000,NA,ES,EQ,RELIANCE INDUSTRIES LTD",
        "NSE,E,12AB,EQUITY,0,BADID,1.0,Bad Id,,-0.01000,,5.0000,NA,ES,EQ,BAD ID LTD",
        "NSE,E,1594,EQUITY,0,INFY,1.0,Infosys,,-0.01000,,10.0000,NA,ES,EQ,INFOSYS LIMITED",
    ]
)


@pytest.fixture
def uploads(tmp_path):
    with override_settings(VAR_DIR=tmp_path):
        yield tmp_path / "uploads"


def _upload(content: str, name: str = "scrip.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content.encode(), content_type="text/csv")


def _requests():
    return [
        ("post", "/populate/reference", {}, "json"),
        ("post", "/populate/instruments", {"url": "https://example.com/scrip.csv"}, "json"),
        ("post", "/populate/history", {"provider": "DHAN", "interval": "1d", "start": "2024-03-11"}, "json"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "body", "fmt"), _requests())
def test_populate_endpoints_are_admin_only(api_client, user_api_client, method, path, body, fmt):
    assert getattr(api_client, method)(path, body, format=fmt).status_code == 401
    assert getattr(user_api_client, method)(path, body, format=fmt).status_code == 403
    assert not PopulateJob.objects.exists()


@pytest.mark.django_db
def test_job_status_is_admin_only(api_client, user_api_client, admin_api_client):
    job = PopulateJob.objects.create(kind=PopulateJob.Kind.REFERENCE)
    assert api_client.get(f"/populate/jobs/{job.pk}").status_code == 401
    assert user_api_client.get(f"/populate/jobs/{job.pk}").status_code == 403
    assert admin_api_client.get(f"/populate/jobs/{job.pk}").status_code == 200
    missing = admin_api_client.get(f"/populate/jobs/{job.pk + 1000}")
    assert missing.status_code == 404 and missing.json()["status_code"] == 404


@pytest.mark.django_db
def test_reference_job_is_queued_then_runs_to_succeeded(admin_api_client, django_capture_on_commit_callbacks):
    response = admin_api_client.post("/populate/reference")

    assert response.status_code == 202
    body = response.json()
    assert body == {"job_id": body["job_id"], "state": "queued", "status_url": f"/populate/jobs/{body['job_id']}"}
    job = PopulateJob.objects.get(pk=body["job_id"])
    assert job.kind == "reference" and job.created_by == admin_api_client.user

    assert job_run(job_id=job.pk)["state"] == "succeeded"

    status = admin_api_client.get(body["status_url"]).json()
    assert status["state"] == "succeeded" and status["progress"] == {"done": 1, "total": 1}
    assert "exchanges:" in status["message"] and status["errors"] == []
    assert status["started_at"] and status["finished_at"]
    assert Exchange.objects.filter(code="NSE").exists()
    # A second delivery of the same message does nothing.
    assert job_run(job_id=job.pk) == {"job_id": job.pk, "state": "succeeded", "message": "Not queued; left alone."}


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_BROKER_URL="memory://")
def test_embedded_mode_runs_the_job_in_a_background_thread(admin_api_client):
    response = admin_api_client.post("/populate/reference")
    assert response.status_code == 202

    deadline = time.monotonic() + 30
    state = "queued"
    while time.monotonic() < deadline and state in {"queued", "running"}:
        time.sleep(0.1)
        state = admin_api_client.get(response.json()["status_url"]).json()["state"]
    assert state == "succeeded"
    assert Provider.objects.filter(code="DHAN").exists()


@pytest.mark.django_db
def test_stack_mode_sends_the_job_to_the_default_queue(admin_api_client, django_capture_on_commit_callbacks):
    assert not settings.CELERY_BROKER_URL.startswith("memory://")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("default")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_api_client.post("/populate/reference")
        job_id = response.json()["job_id"]
        messages = [json.loads(raw) for raw in broker.lrange("default", 0, -1)]
        assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages] == [
            ("ingestion.populate", f"[{job_id}]")
        ]
    finally:
        broker.delete("default")
        broker.close()


# --- instruments -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dhan_upload_job_reports_the_malformed_row(admin_api_client, uploads):
    reference_data_seed()

    response = admin_api_client.post(
        "/populate/instruments", {"file": _upload(SCRIP_MASTER), "format": "dhan"}, format="multipart"
    )

    assert response.status_code == 202, response.json()
    job = PopulateJob.objects.get(pk=response.json()["job_id"])
    assert job.params["source"] == "upload" and job.params["filename"] == "scrip.csv"
    assert len(list(uploads.iterdir())) == 1
    job_run(job_id=job.pk)
    status = admin_api_client.get(response.json()["status_url"]).json()
    assert status["state"] == "succeeded", status
    assert status["errors"] == [{"line": 3, "error": "bad security id '12AB'"}]
    assert status["progress"] == {"done": 3, "total": 3}
    assert "2 created" in status["message"] and "1 malformed" in status["message"]
    assert "path" not in status["params"]
    assert set(Instrument.objects.filter(exchange__code="NSE").values_list("symbol", flat=True)) >= {
        "RELIANCE",
        "INFY",
    }
    assert list(uploads.iterdir()) == []  # the upload is removed once imported


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "fmt", "field", "message"),
    [
        ({"file": "missing-columns"}, "multipart", "file", "Missing columns: SEM_EXM_EXCH_ID"),
        ({"file": "empty"}, "multipart", "file", "empty"),
        ({"format": "xml", "file": "ok"}, "multipart", "format", "not a valid choice"),
        ({"url": "ftp://example.com/x.csv"}, "json", "url", "http"),
        ({"url": "not a url"}, "json", "url", "valid URL"),
        ({}, "json", "file", "No file"),
        ({"file": "ok", "url": "https://example.com/x.csv"}, "multipart", "non_field_errors", "not both"),
    ],
)
def test_bad_instrument_requests_are_400_and_queue_nothing(admin_api_client, uploads, data, fmt, field, message):
    files = {"missing-columns": "exchange,symbol,name\nNSE,X,Y\n", "empty": "", "ok": SCRIP_MASTER}
    if "file" in data:
        data = {**data, "file": _upload(files[data["file"]])}

    response = admin_api_client.post("/populate/instruments", data, format=fmt)

    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"][field])
    assert not PopulateJob.objects.exists()
    assert not uploads.exists() or list(uploads.iterdir()) == []


@pytest.mark.django_db
def test_instruments_by_url_is_queued(admin_api_client):
    response = admin_api_client.post(
        "/populate/instruments", {"url": "https://example.com/scrip.csv", "format": "csv"}, format="json"
    )

    assert response.status_code == 202
    job = PopulateJob.objects.get(pk=response.json()["job_id"])
    assert job.params == {
        "format": "csv",
        "include_derivatives": False,
        "record_data": False,
        "source": "url",
        "url": "https://example.com/scrip.csv",
    }


# --- history -------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "NOPE", "interval": "1d"}, "provider"),
        ({"provider": "DHAN", "interval": "5m"}, "interval"),
        ({"provider": "DHAN", "interval": "1d", "start": "2024-03-12", "end": "2024-03-11"}, "start"),
        ({"provider": "DHAN", "interval": "1d", "start": "2024-02-30"}, "start"),
        ({"provider": "DHAN", "interval": "1d", "symbols": ["NOSUCH"]}, "symbols"),
        ({"provider": "DHAN", "interval": "1d", "symbols": "RELIANCE"}, "symbols"),
    ],
)
def test_bad_history_requests_are_400_and_queue_nothing(admin_api_client, body, field):
    ProviderFactory(code="DHAN", kind=Provider.Kind.DHAN, credentials={"access_token": "t", "client_id": "c"})

    response = admin_api_client.post("/populate/history", body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not PopulateJob.objects.exists()


@pytest.mark.django_db
def test_history_job_backfills_through_the_provider(admin_api_client, settings):
    with HistoryStub(dhan_token="tok", dhan_client_id="cid") as stub:
        settings.PROVIDER_URL_ALLOWED_HOSTS = [stub.host]  # the local fake stands in for Dhan
        dhan = ProviderFactory(
            code="DHAN",
            kind=Provider.Kind.DHAN,
            settings={"rest_url": stub.url + "/v2"},
            credentials={"access_token": "tok", "client_id": "cid"},
            rate_limit=50,
        )
        nse = ExchangeFactory(code="NSE", timezone="Asia/Kolkata", market_open=dtime(9, 15), market_close=dtime(15, 30))
        instrument = InstrumentFactory(symbol="INFY", exchange=nse, instrument_type=InstrumentTypeFactory(code="EQ"))
        ProviderInstrumentMappingFactory(provider=dhan, instrument=instrument, search_code="1594", segment="NSE_EQ")
        stub.dhan_days("NSE_EQ", "1594", {date(2024, 3, 11): (1600.0, 1620.0, 1590.0, 1610.0, 50000)})

        response = admin_api_client.post(
            "/populate/history",
            {"provider": "dhan", "interval": "1d", "start": "2024-03-11", "end": "2024-03-11", "symbols": ["INFY"]},
            format="json",
        )
        assert response.status_code == 202
        assert job_run(job_id=response.json()["job_id"])["state"] == "succeeded"

    status = admin_api_client.get(response.json()["status_url"]).json()
    assert status["params"]["symbols"] == ["NSE:INFY"] and status["params"]["provider"] == "DHAN"
    assert status["progress"] == {"done": 1, "total": 1} and status["errors"] == []
    assert PriceHistoryDaily.objects.get(instrument=instrument).close == 1610.0
