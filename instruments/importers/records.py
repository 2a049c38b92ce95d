"""What the parsers hand to the writer, and what an import reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


class InstrumentImportError(Exception):
    """The import cannot run at all: unreadable source, wrong file format, reference data missing."""


class RowError(Exception):
    """One row is malformed; the message says why."""


@dataclass(frozen=True)
class ImportRecord:
    """One validated instrument, ready to write. Blank/None fields are not in the file."""

    line: int
    exchange: str
    symbol: str
    type_code: str
    name: str = ""
    sector: str = ""
    isin: str = ""
    lot_size: int | None = None
    tick_size: Decimal | None = None
    expiry: date | None = None
    strike: Decimal | None = None
    option_type: str = ""
    dhan: tuple[str, str] | None = None  # (segment, security id)


@dataclass
class ImportResult:
    """Counts of what an import did, and the rows it rejected as (line number, reason)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.skipped} skipped, {len(self.errors)} malformed"
        )
