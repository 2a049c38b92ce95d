"""The feed side's reference data: providers, which provider serves which exchange, Yahoo index symbols.

``ingestion.seeding`` writes these; the exchanges and instruments they refer to are
``instruments.reference_data``'s.
"""

from __future__ import annotations

from instruments import reference_data as instruments_reference

from .models import DEFAULT_SETTINGS

PROVIDERS: list[dict] = [
    {"code": "YF", "name": "Yahoo Finance", "kind": "yahoo", "rate_limit": 2.0},
    {"code": "DHAN", "name": "Dhan", "kind": "dhan", "rate_limit": 5.0},
    {"code": "SIM", "name": "Simulator", "kind": "simulated", "rate_limit": 100.0},
    {"code": "REPLAY", "name": "CSV replay", "kind": "replay", "rate_limit": 100.0},
]
for _provider in PROVIDERS:
    # A copy, so editing one provider's settings never edits the shared defaults.
    _provider["settings"] = dict(DEFAULT_SETTINGS[_provider["kind"]])

INDIAN_EXCHANGES = frozenset({"NSE", "BSE"})
SIM_PRIORITY = 1000


def exchange_provider_mappings() -> list[dict]:
    """Which providers serve which exchange.

    Dhan is primary on NSE and BSE with Yahoo as fallback; Yahoo is primary everywhere else.
    The simulator is mapped on every exchange too, never primary and with the lowest priority
    (the largest number), so the demo setup can stream any exchange's instruments without
    credentials while a real feed, once configured, always wins.
    """
    rows = []
    for exchange in instruments_reference.EXCHANGES:
        code = exchange["code"]
        if code in INDIAN_EXCHANGES:
            rows.append({"exchange": code, "provider": "DHAN", "is_primary": True, "priority": 10})
            rows.append({"exchange": code, "provider": "YF", "is_primary": False, "priority": 20})
        else:
            rows.append({"exchange": code, "provider": "YF", "is_primary": True, "priority": 10})
        rows.append({"exchange": code, "provider": "SIM", "is_primary": False, "priority": SIM_PRIORITY})
    return rows


EXCHANGE_PROVIDER_MAPPINGS: list[dict] = exchange_provider_mappings()

# Yahoo symbols of the Indian indices Dhan lists under the IDX_I segment; other indices get no
# Yahoo mapping because Yahoo's index tickers cannot be derived from the exchange symbol.
YAHOO_INDEX_SYMBOLS: dict[tuple[str, str], str] = {
    ("NSE", "NIFTY"): "^NSEI",
    ("NSE", "BANKNIFTY"): "^NSEBANK",
    ("BSE", "SENSEX"): "^BSESN",
}
