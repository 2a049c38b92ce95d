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
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO
from urllib.parse import urlparse

import requests

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
]

BATCH_SIZE = 500
DOWNLOAD_TIMEOUT_S = (10, 60)  # connect, read (between bytes)


@contextmanager
def open_source(location: str) -> Iterator[TextIO]:
    """Open a local path or an http(s) URL as text; a download is streamed, never held in memory."""
    scheme = urlparse(location).scheme.lower()
    if scheme in {"http", "https"}:
        try:
            response = requests.get(location, stream=True, timeout=DOWNLOAD_TIMEOUT_S)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise InstrumentImportError(f"Could not download {location}: {exc}") from exc
        response.raw.decode_content = True  # let urllib3 undo gzip/deflate transfer encoding
        # urllib3 closes an exhausted body by default, which TextIOWrapper reports as an error at EOF.
        response.raw.auto_close = False
        try:
            yield io.TextIOWrapper(response.raw, encoding="utf-8-sig", newline="")
        finally:
            response.close()
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
        raise InstrumentImportError(f"Missing columns: {', '.join(missing)} (header: {','.join(header)}).")

    batch: list[ImportRecord] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        line = reader.line_num
        try:
            if len(row) != len(header):
                raise RowError(f"expected {len(header)} columns, got {len(row)}")
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
