"""The importer's extension point: what other apps write beside each imported instrument.

``instruments`` imports reference data only. An app above it that keeps its own rows per
instrument (``ingestion`` keeps each provider's code for it) registers a ``RowExtension`` class
from its ``AppConfig.ready``; the writer then plans, compares and writes that app's rows in the same
per-row savepoint as the instrument, so a row is still all or nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from exchanges.models import Exchange
    from instruments.models import Instrument, InstrumentType

    from .records import ImportRecord


class RowExtension(Protocol):
    """Rows another app keeps per imported instrument."""

    def missing_reference(self, *, dhan: bool) -> set[str]:
        """Names of the reference rows this extension needs and cannot find (checked once per import)."""

    def plan(self, *, record: ImportRecord, exchange: Exchange, instrument_type: InstrumentType) -> Any:
        """What this extension will write for ``record`` (opaque to the writer)."""

    def load(self, instruments: list[Instrument]) -> Any:
        """What is stored already for a batch's existing instruments (one query, opaque)."""

    def is_stored(self, *, instrument: Instrument, planned: Any, stored: Any) -> bool:
        """Whether ``planned`` is already exactly in the database."""

    def write(self, *, instrument: Instrument, planned: Any) -> bool:
        """Write ``planned`` for ``instrument``; True when anything changed."""


_extensions: list[type[RowExtension]] = []


def register(extension: type[RowExtension]) -> None:
    """Add an extension class (idempotent); each import gets fresh instances of every one."""
    if extension not in _extensions:
        _extensions.append(extension)


def registered() -> list[RowExtension]:
    """New instances of the registered extensions, for one import."""
    return [extension() for extension in _extensions]
