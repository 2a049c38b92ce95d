"""Database population jobs (the seed design's ``/populate`` feature): queue, run, report.

A job is a ``PopulateJob`` row: reference data, an instrument list (Dhan scrip master or the
plain CSV, uploaded or fetched from a URL) or price history. The API validates the request,
creates the row (state ``queued``) and hands its id over once the row is committed:

* stack mode (a real broker): ``celery_app.send_task("ingestion.populate", args=[job_id],
  queue="default")``; the task calls ``job_run(job_id=...)``;
* embedded mode (no broker: ``CELERY_BROKER_URL`` is ``memory://``): a daemon thread of the
  web process runs ``job_run`` itself.

``job_run`` moves the job to ``running`` (only from ``queued``, so a message delivered twice
runs it once), keeps ``progress_done``/``progress_total`` current, and ends in ``succeeded``
or ``failed`` with a one-line ``message`` and the problems met in ``errors``.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from ingestion.backfill import BackfillError, backfill_plan, backfill_run
from ingestion.seeding import reference_data_seed
from instruments.importers import InstrumentImportError, instruments_import, open_source, open_url
from instruments.importers.parsers import CSV_REQUIRED_COLUMNS, DHAN_COLUMNS

from .models import PopulateJob

logger = logging.getLogger(__name__)

POPULATE_TASK = "ingestion.populate"
MAX_ERRORS = 1000  # a 200,000-row file full of bad rows should not make a 200,000-entry job row
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
PROGRESS_EVERY_LINES = 1000
FILE_FORMATS = ("dhan", "csv")


def upload_dir() -> Path:
    """Where uploaded instrument files wait for their job: ``VAR_DIR/uploads``."""
    return Path(settings.VAR_DIR) / "uploads"


# --- creating and queueing -----------------------------------------------------------------------


def _broker_configured() -> bool:
    return not str(settings.CELERY_BROKER_URL).startswith("memory://")


def _run_in_thread(job_id: int) -> None:
    try:
        job_run(job_id=job_id)
    finally:
        connection.close()  # this thread's own connection


def populate_job_enqueue(*, job: PopulateJob) -> None:
    """Hand ``job`` to a Celery worker (stack mode) or a background thread (embedded mode),
    once the transaction that created it has committed."""
    if _broker_configured():
        from celery import current_app as celery_app

        transaction.on_commit(lambda: celery_app.send_task(POPULATE_TASK, args=[job.pk], queue="default"))
    else:
        thread = threading.Thread(target=_run_in_thread, args=(job.pk,), name=f"populate-job-{job.pk}", daemon=True)
        transaction.on_commit(thread.start)


@transaction.atomic
def populate_job_create(*, kind: str, params: dict, created_by=None) -> PopulateJob:
    """Create a queued job and enqueue it; ``params`` must already be validated."""
    job = PopulateJob.objects.create(kind=kind, params=params, created_by=created_by)
    populate_job_enqueue(job=job)
    return job


def populate_reference_job_create(*, created_by=None) -> PopulateJob:
    """Queue writing the reference data (instrument types, sectors, exchanges, providers, mappings)."""
    return populate_job_create(kind=PopulateJob.Kind.REFERENCE, params={}, created_by=created_by)


def _header_problem(first_line: str, file_format: str) -> str:
    header = [cell.strip() for cell in first_line.split(",")]
    if file_format == "csv":
        header = [cell.lower() for cell in header]
    required = DHAN_COLUMNS if file_format == "dhan" else CSV_REQUIRED_COLUMNS
    missing = [column for column in required if column not in header]
    return f"Missing columns: {', '.join(missing)}." if missing else ""


def instruments_upload_store(*, chunks: Iterable[bytes], filename: str, file_format: str) -> Path:
    """Save an uploaded instrument file under ``upload_dir()``; ``ValueError`` if it cannot be imported.

    The header is checked here, so a wrong file is refused before a job is queued.
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"Unknown format '{file_format}': use dhan or csv.")
    directory = upload_dir()
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "upload.csv").name)[-80:]
    path = directory / f"{uuid.uuid4().hex}-{safe}"
    size = 0
    head = b""
    try:
        with path.open("wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise ValueError(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
                if len(head) < 64 * 1024:
                    head += chunk[: 64 * 1024]
                out.write(chunk)
        if size == 0:
            raise ValueError("The file is empty.")
        try:
            first_line = head.decode("utf-8-sig").splitlines()[0]
        except (UnicodeDecodeError, IndexError):
            raise ValueError("The file is not UTF-8 CSV text.") from None
        if problem := _header_problem(first_line, file_format):
            raise ValueError(problem)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def populate_instruments_job_create(
    *,
    created_by=None,
    path: Path | None = None,
    url: str | None = None,
    filename: str = "",
    file_format: str = "dhan",
    include_derivatives: bool = False,
    record_data: bool = False,
) -> PopulateJob:
    """Queue an instrument import from a stored upload (``path``) or an http(s) ``url``."""
    if (path is None) == (url is None):
        raise ValueError("Give either an uploaded file or a URL.")
    params = {
        "format": file_format,
        "include_derivatives": include_derivatives,
        "record_data": record_data,
    }
    if path is not None:
        params |= {"source": "upload", "path": str(path), "filename": filename}
    else:
        params |= {"source": "url", "url": url}
    return populate_job_create(kind=PopulateJob.Kind.INSTRUMENTS, params=params, created_by=created_by)


def populate_history_job_create(
    *,
    created_by=None,
    provider: str,
    interval: str,
    start: date | str | None = None,
    end: date | str | None = None,
    symbols: list[str] | None = None,
) -> PopulateJob:
    """Queue a history backfill; the request is validated now (``BackfillError`` lists the problems)."""
    plan = backfill_plan(provider_code=provider, interval=interval, start=start, end=end, symbols=symbols)
    params = {
        "provider": plan.provider.code,
        "interval": plan.interval,
        "start": plan.start.isoformat(),
        "end": plan.end.isoformat(),
        "symbols": [target.label for target in plan.targets] if symbols else None,
    }
    return populate_job_create(kind=PopulateJob.Kind.HISTORY, params=params, created_by=created_by)


# --- running ----------------------------------------------------------------------------------------


def _progress(job_id: int, done: int, total: int) -> None:
    PopulateJob.objects.filter(pk=job_id).update(progress_done=done, progress_total=total, updated_at=datetime.now(UTC))


def _finish(job_id: int, *, state: str, message: str, errors: list | None = None) -> None:
    errors = errors or []
    if len(errors) > MAX_ERRORS:
        errors = [*errors[:MAX_ERRORS], {"error": f"... and {len(errors) - MAX_ERRORS} more"}]
    now = datetime.now(UTC)
    PopulateJob.objects.filter(pk=job_id).update(
        state=state, message=message[:2000], errors=errors, finished_at=now, updated_at=now
    )


def _run_reference(job: PopulateJob) -> tuple[str, list]:
    _progress(job.pk, 0, 1)
    report = reference_data_seed()
    _progress(job.pk, 1, 1)
    return "; ".join(report.lines()), []


def _counted(lines: Iterable[str], job_id: int, total: int) -> Iterator[str]:
    done = 0
    for done, line in enumerate(lines, start=1):
        if done % PROGRESS_EVERY_LINES == 0:
            _progress(job_id, max(done - 1, 0), total)
        yield line
    _progress(job_id, max(done - 1, 0), max(total, done - 1))


def _run_instruments(job: PopulateJob) -> tuple[str, list]:
    params = job.params
    location = params["path"] if params.get("source") == "upload" else params["url"]
    total = 0
    if params.get("source") == "upload":
        with open(location, "rb") as stream:
            total = max(sum(1 for _ in stream) - 1, 0)  # rows, without the header
    _progress(job.pk, 0, total)
    try:
        # A URL job only ever fetches its URL (never a local path), through the SSRF-safe opener.
        opener = open_source if params.get("source") == "upload" else open_url
        with opener(location) as stream:
            result = instruments_import(
                lines=_counted(stream, job.pk, total),
                file_format=params["format"],
                include_derivatives=params.get("include_derivatives", False),
                record_data=params.get("record_data", False),
            )
    finally:
        if params.get("source") == "upload":
            Path(location).unlink(missing_ok=True)  # the upload has served its purpose
    errors = [{"line": line, "error": reason} for line, reason in result.errors]
    return result.summary(), errors


def _run_history(job: PopulateJob) -> tuple[str, list]:
    params = job.params
    plan = backfill_plan(
        provider_code=params["provider"],
        interval=params["interval"],
        start=params["start"],
        end=params["end"],
        symbols=params.get("symbols"),
    )
    result = backfill_run(plan=plan, progress=lambda done, total: _progress(job.pk, done, total))
    errors = [{"error": message} for message in result["errors"]]
    message = f"{result['rows']} rows for {result['instruments']} instruments ({result['start']}..{result['end']})"
    if result["warnings"]:
        message += "; " + "; ".join(result["warnings"])
    if result["instruments"] and len(result["errors"]) == result["instruments"]:
        raise _JobFailed(message, errors)
    return message, errors


class _JobFailed(Exception):
    def __init__(self, message: str, errors: list) -> None:
        super().__init__(message)
        self.errors = errors


_RUNNERS = {
    PopulateJob.Kind.REFERENCE: _run_reference,
    PopulateJob.Kind.INSTRUMENTS: _run_instruments,
    PopulateJob.Kind.HISTORY: _run_history,
}


def job_run(*, job_id: int) -> dict:
    """Run a queued job to its end; returns ``{"job_id", "state", "message"}``.

    A job not in ``queued`` (already taken by another delivery, or finished) is left alone.
    Failures end the job in ``failed`` with the reason; they are not raised.
    """
    now = datetime.now(UTC)
    taken = PopulateJob.objects.filter(pk=job_id, state=PopulateJob.State.QUEUED).update(
        state=PopulateJob.State.RUNNING, started_at=now, updated_at=now
    )
    job = PopulateJob.objects.filter(pk=job_id).first()
    if job is None:
        return {"job_id": job_id, "state": None, "message": "No such job."}
    if not taken:
        return {"job_id": job_id, "state": job.state, "message": "Not queued; left alone."}
    try:
        message, errors = _RUNNERS[job.kind](job)
    except _JobFailed as exc:
        _finish(job_id, state=PopulateJob.State.FAILED, message=str(exc), errors=exc.errors)
    except (BackfillError, InstrumentImportError, OSError, KeyError) as exc:
        _finish(job_id, state=PopulateJob.State.FAILED, message=str(exc) or type(exc).__name__)
    except UnicodeDecodeError:
        _finish(job_id, state=PopulateJob.State.FAILED, message="The file is not UTF-8 text.")
    except Exception as exc:
        # The exception's text may quote what was read (a fetched page, a CSV cell): the log has it.
        logger.exception("populate job %s failed", job_id)
        _finish(job_id, state=PopulateJob.State.FAILED, message=f"Unexpected error ({type(exc).__name__}).")
    else:
        _finish(job_id, state=PopulateJob.State.SUCCEEDED, message=message, errors=errors)
    job.refresh_from_db()
    return {"job_id": job_id, "state": job.state, "message": job.message}
