"""Instrument importers: Dhan's scrip master CSV and a plain ``exchange,symbol,name,type,sector,isin`` CSV.

Rows are parsed and validated one by one; a malformed row is reported with its line number
and skipped while the rest imports. Each row's instrument and provider mappings are written
in one savepoint, so a row that fails half-way leaves nothing behind; rows are committed in
batches (one transaction each) to keep a 200,000-row scrip master reasonably fast.
Re-importing a file changes nothing.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from django.conf import settings

from core.net import FetchError, lines, safe_download, url_problem

from .parsers import CSV_REQUIRED_COLUMNS, DHAN_COLUMNS, dhan_row, isin_is_valid, plain_csv_row
from .records import ImportRecord, ImportResult, InstrumentImportError, RowError
from .writer import RecordWriter

__all__ = [
    "ImportRecord",
    "ImportResult",
    "InstrumentImportError",
    "RowError",
    "instruments_import",
    "isin_is_valid",
    "open_source",
    "open_url",
    "url_refusal",
]

BATCH_SIZE = 500
DOWNLOAD_TIMEOUT_S = (10, 60)  # connect, read (between bytes)
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # either side of decompression; uploads have the same cap
MAX_LINE_BYTES = 64 * 1024  # a scrip master row is ~200 bytes


def _url_settings() -> dict:
    return {
        "allowed_hosts": tuple(getattr(settings, "IMPORT_URL_ALLOWED_HOSTS", ()) or ()),
        "max_bytes": int(getattr(settings, "IMPORT_URL_MAX_BYTES", MAX_DOWNLOAD_BYTES)),
        "max_line": int(getattr(settings, "IMPORT_URL_MAX_LINE_BYTES", MAX_LINE_BYTES)),
    }


def url_refusal(url: str) -> str:
    """Why an import URL would be refused, told before queueing (no DNS lookup); '' if it may be tried."""
    return url_problem(url, _url_settings()["allowed_hosts"])


def _text_lines(raw_lines: Iterator[bytes]) -> Iterator[str]:
    """UTF-8 lines (a leading BOM dropped); download failures become ``InstrumentImportError``."""
    try:
        for number, raw in enumerate(raw_lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InstrumentImportError(f"The file is not UTF-8 text (line {number}).") from None
            yield text.removeprefix("\ufeff") if number == 1 else text
    except FetchError as exc:
        raise InstrumentImportError(str(exc)) from None


@contextmanager
def open_url(url: str) -> Iterator[Iterator[str]]:
    """Stream an http(s) URL as text lines, refusing internal addresses, oversized bodies and lines
    (see ``core.net``; ``IMPORT_URL_ALLOWED_HOSTS`` lets an operator allow an internal host)."""
    conf = _url_settings()
    try:
        with safe_download(
            url, allowed_hosts=conf["allowed_hosts"], max_bytes=conf["max_bytes"], timeout=DOWNLOAD_TIMEOUT_S
        ) as chunks:
            yield _text_lines(lines(chunks, max_line=conf["max_line"]))
    except FetchError as exc:
        raise InstrumentImportError(str(exc)) from None


@contextmanager
def open_source(location: str) -> Iterator[Iterable[str]]:
    """Open a local path or an http(s) URL as text lines; a download is streamed, never held in memory."""
    scheme = urlparse(location).scheme.lower()
    if scheme in {"http", "https"}:
        with open_url(location) as stream:
            yield stream
    elif len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise InstrumentImportError(f"Unsupported URL scheme '{scheme}': use http(s) or a local path.")
    else:
        try:
            stream = open(location, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InstrumentImportError(f"Could not open {location}: {exc.strerror or exc}") from exc
        with stream:
            yield stream


def instruments_import(
    *,
    lines: Iterable[str],
    file_format: str,
    include_derivatives: bool = False,
    record_data: bool = False,
) -> ImportResult:
    """Import instruments and their provider mappings from CSV text lines (header first).

    ``file_format`` is ``dhan`` (Dhan's scrip master: NSE/BSE equities and indices, plus
    futures and options with ``include_derivatives``) or ``csv``. New instruments get
    ``record_data`` (default off: a whole exchange should not start streaming because its
    list was imported); existing ones keep theirs. Requires ``seed_reference`` to have run.
    """
    if file_format == "dhan":
        parse_row, required = functools.partial(dhan_row, include_derivatives=include_derivatives), DHAN_COLUMNS
    elif file_format == "csv":
        parse_row, required = plain_csv_row, CSV_REQUIRED_COLUMNS
    else:
        raise InstrumentImportError(f"Unknown format '{file_format}': use 'dhan' or 'csv'.")
    writer = RecordWriter(dhan=file_format == "dhan", record_data=record_data)
    result = ImportResult()

    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise InstrumentImportError("The file is empty.")
    # Dhan's column names are upper case; the plain format's are matched case-insensitively.
    header = [column.strip() if file_format == "dhan" else column.strip().lower() for column in header]
    missing = [column for column in required if column not in header]
    if missing:
        # The header is not repeated: a fetched page must not be shown back through the error.
        raise InstrumentImportError(f"Missing columns: {', '.join(missing)}.")

    batch: list[ImportRecord] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        line = reader.line_num
        try:
            if len(row) != len(header):
                raise RowError(f"expected {len(header)} columns, got {len(row)}")
            if any("\x00" in cell for cell in row):
                # PostgreSQL text cannot hold U+0000: refused here, it would fail the batch's queries.
                raise RowError("contains a NUL character")
            record = parse_row(dict(zip(header, (cell.strip() for cell in row), strict=True)), line)
        except RowError as exc:
            result.errors.append((line, str(exc)))
            continue
        if record is None:
            result.skipped += 1
            continue
        batch.append(record)
        if len(batch) >= BATCH_SIZE:
            writer.write_batch(batch, result)
            batch = []
    writer.write_batch(batch, result)
    # Parse errors are found before write errors of earlier rows in the same batch; report in file order.
    result.errors.sort()
    return result
