"""Writes validated records: each row in its own savepoint, each batch in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction

from exchanges.models import Exchange
from instruments.models import Instrument, InstrumentType, Sector
from instruments.seeding import Outcome, changed_fields, record_upsert

from .extensions import registered
from .records import ImportRecord, ImportResult, InstrumentImportError, RowError


@dataclass
class _Plan:
    """What one record should look like in the database."""

    record: ImportRecord
    exchange: Exchange
    values: dict
    extra: list  # per registered extension, what it will write beside the instrument
    new_sector: str = ""  # a sector name not seen yet; resolved (or created) when writing


@dataclass
class _Stored:
    """Instruments already in the database for one batch, and what each extension stored for them."""

    instruments: dict[tuple[int, str], Instrument] = field(default_factory=dict)
    extra: list = field(default_factory=list)


class RecordWriter:
    """Writes ImportRecords as instruments, plus what each registered extension keeps per instrument
    (``ingestion`` adds the Dhan and Yahoo mappings: see ``extensions``).

    Rows already stored exactly as the file describes them are recognised from two queries per
    batch and not written again, so a daily re-import of a large scrip master stays quick.
    """

    def __init__(self, *, dhan: bool, record_data: bool) -> None:
        self.record_data = record_data
        self.exchanges = {e.code.upper(): e for e in Exchange.objects.all()}
        self.types = {t.code.upper(): t for t in InstrumentType.objects.all()}
        self.sectors = {s.name.lower(): s for s in Sector.objects.all()}
        self.extensions = registered()
        needed = set().union(*(e.missing_reference(dhan=dhan) for e in self.extensions))
        missing = sorted(
            needed
            | (({"NSE", "BSE"} - self.exchanges.keys()) if dhan else set())
            | (({"EQ", "INDEX", "FUT", "OPT"} - self.types.keys()) if dhan else set())
        )
        if missing:
            raise InstrumentImportError(
                f"Reference data missing ({', '.join(missing)}): run `manage.py seed_reference` first."
            )

    def write_batch(self, batch: list[ImportRecord], result: ImportResult) -> None:
        """Write one batch in one transaction; a failing row is rolled back alone and reported."""
        plans = []
        for record in batch:
            try:
                plans.append(self._plan(record))
            except RowError as exc:
                result.errors.append((record.line, str(exc)))
        stored = self._stored(plans)
        with transaction.atomic():
            for plan in plans:
                if self._is_stored(plan, stored):
                    result.unchanged += 1
                    continue
                created_sectors: list[Sector] = []
                try:
                    with transaction.atomic():
                        outcome = self._write(plan, created_sectors)
                except ValidationError as exc:
                    result.errors.append((plan.record.line, _validation_message(exc)))
                    continue
                except (IntegrityError, DataError) as exc:
                    result.errors.append((plan.record.line, f"database refused the row: {str(exc).strip()}"))
                    continue
                # Cache sectors only once their row's savepoint succeeded; a rolled-back sector
                # handed to a later row would fail the whole batch at commit.
                self.sectors.update({s.name.lower(): s for s in created_sectors})
                setattr(result, outcome, getattr(result, outcome) + 1)

    def _plan(self, record: ImportRecord) -> _Plan:
        exchange = self.exchanges.get(record.exchange.upper())
        if exchange is None:
            raise RowError(f"unknown exchange '{record.exchange}'")
        instrument_type = self.types.get(record.type_code.upper())
        if instrument_type is None:
            raise RowError(f"unknown instrument type '{record.type_code}'")

        plan = _Plan(record=record, exchange=exchange, values={"instrument_type": instrument_type}, extra=[])
        if record.name:
            plan.values["name"] = record.name
        if record.isin:
            plan.values["isin"] = record.isin
        if record.sector:
            sector = self.sectors.get(record.sector.lower())
            if sector is None:
                plan.new_sector = record.sector
            else:
                plan.values["sector"] = sector
        if record.dhan is not None:
            # Lot and tick size, expiry and strike come from the scrip master; the plain CSV has none.
            plan.values.update(
                lot_size=record.lot_size,
                tick_size=record.tick_size,
                expiry=record.expiry,
                strike=record.strike,
                option_type=record.option_type,
            )
        plan.extra = [
            e.plan(record=record, exchange=exchange, instrument_type=instrument_type) for e in self.extensions
        ]
        return plan

    def _stored(self, plans: list[_Plan]) -> _Stored:
        stored = _Stored()
        if not plans:
            return stored
        wanted = {(plan.exchange.pk, plan.record.symbol) for plan in plans}
        candidates = Instrument.objects.filter(
            exchange_id__in={key[0] for key in wanted}, symbol__in={key[1] for key in wanted}
        )
        stored.instruments = {
            key: instrument
            for instrument in candidates
            if (key := (instrument.exchange_id, instrument.symbol)) in wanted
        }
        stored.extra = [e.load(list(stored.instruments.values())) for e in self.extensions]
        return stored

    def _is_stored(self, plan: _Plan, stored: _Stored) -> bool:
        instrument = stored.instruments.get((plan.exchange.pk, plan.record.symbol))
        if instrument is None or plan.new_sector or changed_fields(obj=instrument, values=plan.values):
            return False
        return all(
            e.is_stored(instrument=instrument, planned=planned, stored=found)
            for e, planned, found in zip(self.extensions, plan.extra, stored.extra, strict=True)
        )

    def _write(self, plan: _Plan, created_sectors: list[Sector]) -> Outcome:
        values = plan.values
        if plan.new_sector:
            sector, sector_outcome = record_upsert(
                model=Sector,
                lookup={"name__iexact": plan.new_sector},
                values={},
                create_values={"name": plan.new_sector},
            )
            if sector_outcome == "created":
                created_sectors.append(sector)
            values = {**values, "sector": sector}
        instrument, outcome = record_upsert(
            model=Instrument,
            lookup={"exchange": plan.exchange, "symbol": plan.record.symbol},
            values=values,
            create_values={"record_data": self.record_data},
        )
        for extension, planned in zip(self.extensions, plan.extra, strict=True):
            if extension.write(instrument=instrument, planned=planned) and outcome == "unchanged":
                outcome = "updated"
        return outcome


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items())
    return " ".join(exc.messages)
