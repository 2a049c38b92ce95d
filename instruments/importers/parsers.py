"""Row parsers: turn one CSV row (a dict by column name) into an ImportRecord, None, or a RowError."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from instruments.models import Instrument

from .records import ImportRecord, RowError

# --- Dhan scrip master -----------------------------------------------------------------------

DHAN_COLUMNS = tuple(
    "SEM_EXM_EXCH_ID SEM_SEGMENT SEM_SMST_SECURITY_ID SEM_INSTRUMENT_NAME SEM_EXPIRY_CODE SEM_TRADING_SYMBOL "
    "SEM_LOT_UNITS SEM_CUSTOM_SYMBOL SEM_EXPIRY_DATE SEM_STRIKE_PRICE SEM_OPTION_TYPE SEM_TICK_SIZE "
    "SEM_EXPIRY_FLAG SEM_EXCH_INSTRUMENT_TYPE SEM_SERIES SM_SYMBOL_NAME".split()
)
# Exchanges that appear in the scrip master; only NSE and BSE are imported, the others skipped.
DHAN_EXCHANGES = frozenset({"NSE", "BSE", "MCX"})
# SEM_SEGMENT letters: Equity, Index, Derivatives, Currency, Commodity.
DHAN_SEGMENT_LETTERS = frozenset("EIDCM")
# (exchange, segment letter) -> the exchange segment Dhan's feed and REST API expect.
DHAN_FEED_SEGMENTS = {
    ("NSE", "E"): "NSE_EQ",
    ("BSE", "E"): "BSE_EQ",
    ("NSE", "I"): "IDX_I",
    ("BSE", "I"): "IDX_I",
    ("NSE", "D"): "NSE_FNO",
    ("BSE", "D"): "BSE_FNO",
}
# Cash-market series that are shares (NSE: EQ, BE trade-for-trade, BZ, SME; BSE: the scrip
# groups). Other series in the same segment are bonds, government securities and the like.
DHAN_EQUITY_SERIES = {
    "NSE": frozenset({"EQ", "BE", "BZ", "SM", "ST", "SZ"}),
    "BSE": frozenset({"A", "B", "T", "X", "XT", "Z", "ZP", "M", "MT", "MS", "P", "R"}),
}
DHAN_DERIVATIVES = {"FUTIDX": "FUT", "FUTSTK": "FUT", "OPTIDX": "OPT", "OPTSTK": "OPT"}
STRIKE_QUANTUM = Decimal("0.0001")

_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def dhan_row(row: dict[str, str], line: int, *, include_derivatives: bool = False) -> ImportRecord | None:
    """Validate one scrip master row; None for a well-formed row outside the import's scope.

    In scope: NSE/BSE equities (instrument EQUITY in a share series) and indices, and with
    ``include_derivatives`` index and stock futures and options. Currency and commodity rows
    are skipped. Exchange and segment are checked on every row, the rest only in scope.
    """
    exchange = row["SEM_EXM_EXCH_ID"].upper()
    letter = row["SEM_SEGMENT"].upper()
    if exchange not in DHAN_EXCHANGES:
        raise RowError(f"unknown exchange '{row['SEM_EXM_EXCH_ID']}'")
    if letter not in DHAN_SEGMENT_LETTERS:
        raise RowError(f"unknown segment '{row['SEM_SEGMENT']}'")
    kind = row["SEM_INSTRUMENT_NAME"].upper()
    indian = exchange in {"NSE", "BSE"}
    if letter == "E" and kind == "EQUITY" and row["SEM_SERIES"].upper() in DHAN_EQUITY_SERIES.get(exchange, ()):
        type_code = "EQ"
    elif letter == "I" and indian:
        type_code = "INDEX"
    elif letter == "D" and include_derivatives and kind in DHAN_DERIVATIVES and indian:
        type_code = DHAN_DERIVATIVES[kind]
    else:
        return None

    security_id = row["SEM_SMST_SECURITY_ID"]
    if not _DIGITS.fullmatch(security_id):
        raise RowError(f"bad security id '{security_id}'")
    symbol = row["SEM_TRADING_SYMBOL"]
    if not symbol:
        raise RowError("missing trading symbol")

    derivative = type_code in {"FUT", "OPT"}
    # A derivative's SM_SYMBOL_NAME is its underlying (NIFTY); its custom symbol names the contract.
    names = [row["SEM_CUSTOM_SYMBOL"], row["SM_SYMBOL_NAME"]]
    if not derivative:
        names.reverse()
    record = {
        "line": line,
        "exchange": exchange,
        "symbol": symbol,
        "type_code": type_code,
        "name": next((n for n in names if n), symbol),
        "lot_size": _lot_size(row["SEM_LOT_UNITS"]),
        "tick_size": _tick_size(row["SEM_TICK_SIZE"], index=type_code == "INDEX"),
        "dhan": (DHAN_FEED_SEGMENTS[(exchange, letter)], security_id),
    }
    if derivative:
        record["expiry"] = _expiry(row["SEM_EXPIRY_DATE"])
    if type_code == "OPT":
        strike = _decimal(row["SEM_STRIKE_PRICE"], "strike price")
        # The file writes five decimals (24500.00000); the model keeps four, exact for real strikes.
        record["strike"] = strike.quantize(STRIKE_QUANTUM)
        if strike <= 0 or record["strike"] != strike:
            raise RowError(f"bad strike price '{row['SEM_STRIKE_PRICE']}'")
        record["option_type"] = row["SEM_OPTION_TYPE"].upper()
        if record["option_type"] not in Instrument.OptionType.values:
            raise RowError(f"bad option type '{row['SEM_OPTION_TYPE']}' (expected CE or PE)")
    return ImportRecord(**record)


def _decimal(raw: str, what: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RowError(f"bad {what} '{raw}'") from None
    if not value.is_finite():
        raise RowError(f"bad {what} '{raw}'")
    return value


def _lot_size(raw: str) -> int:
    if not raw:
        return 1
    value = _decimal(raw, "lot size")
    if value <= 0 or value != value.to_integral_value():
        raise RowError(f"bad lot size '{raw}'")
    return int(value)


def _tick_size(raw: str, *, index: bool) -> Decimal:
    """Dhan lists tick sizes in paise (5.0000 is 0.05 rupees, 10.0000 is 0.10); convert to rupees.

    A missing or zero tick (index rows) falls back to 0.05 rupees, or 0.01 points for an index.
    """
    value = _decimal(raw, "tick size") if raw else Decimal(0)
    if value < 0:
        raise RowError(f"bad tick size '{raw}'")
    if value == 0:
        return Decimal("0.01") if index else Decimal("0.05")
    return value / 100


def _expiry(raw: str) -> date:
    # The scrip master writes "2024-12-26 14:30:00"; the date is what identifies the contract.
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise RowError(f"bad expiry date '{raw}'") from None


# --- plain CSV -------------------------------------------------------------------------------

CSV_REQUIRED_COLUMNS = ("exchange", "symbol", "type")  # name, sector and isin are optional

_ISIN = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]", re.ASCII)


def plain_csv_row(row: dict[str, str], line: int) -> ImportRecord:
    """Validate one ``exchange,symbol,name,type,sector,isin`` row; blank optional cells keep the stored value."""
    for column in CSV_REQUIRED_COLUMNS:
        if not row[column]:
            raise RowError(f"missing {column}")
    isin = row.get("isin", "").upper()
    if isin and not isin_is_valid(isin):
        raise RowError(f"bad ISIN '{row['isin']}'")
    return ImportRecord(
        line=line,
        exchange=row["exchange"],
        symbol=row["symbol"],
        type_code=row["type"],
        name=row.get("name", ""),
        sector=row.get("sector", ""),
        isin=isin,
    )


def isin_is_valid(isin: str) -> bool:
    """ISO 6166: two letters, nine alphanumerics, and a Luhn check digit over the letters as numbers."""
    if not _ISIN.fullmatch(isin):
        return False
    digits = "".join(str(int(char, 36)) for char in isin[:-1])
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(isin[-1])
