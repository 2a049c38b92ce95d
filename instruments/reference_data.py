"""Reference data as plain Python: instrument types, sectors, exchanges, providers and demo instruments.

``instruments.seeding`` writes these into the database; the simulator reads ``DEMO_PRICES``.
Session times are exchange-local wall-clock times. Lunch breaks (Tokyo, Hong Kong, Shanghai,
Shenzhen) are not modelled here: the exchange-calendars calendar carries them where it matters.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from ingestion.models import DEFAULT_SETTINGS

INSTRUMENT_TYPES: list[dict] = [
    {"code": "EQ", "name": "Equity"},
    {"code": "INDEX", "name": "Index"},
    {"code": "ETF", "name": "Exchange-traded fund"},
    {"code": "FUT", "name": "Future"},
    {"code": "OPT", "name": "Option"},
    {"code": "CURR", "name": "Currency"},
    {"code": "CRYPTO", "name": "Cryptocurrency"},
    {"code": "COMM", "name": "Commodity"},
    {"code": "BOND", "name": "Bond"},
    {"code": "MF", "name": "Mutual fund"},
    {"code": "REIT", "name": "Real estate investment trust"},
    {"code": "WARRANT", "name": "Warrant"},
]

# The eleven GICS sectors.
SECTORS: list[str] = [
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
]

# ``yahoo_suffix`` turns an exchange symbol into a Yahoo Finance symbol (RELIANCE -> RELIANCE.NS).
# exchange-calendars has no XNSE, XNAS or XSHE calendar: NSE uses XBOM (same holidays), NASDAQ
# uses XNYS and Shenzhen uses XSHG.
EXCHANGES: list[dict] = [
    {
        "code": "NSE",
        "name": "National Stock Exchange of India",
        "mic": "XNSE",
        "timezone": "Asia/Kolkata",
        "country": "India",
        "currency": "INR",
        "pre_market_open": time(9, 0),
        "market_open": time(9, 15),
        "market_close": time(15, 30),
        "post_market_close": time(16, 0),
        "calendar_code": "XBOM",
        "yahoo_suffix": ".NS",
    },
    {
        "code": "BSE",
        "name": "BSE (Bombay Stock Exchange)",
        "mic": "XBOM",
        "timezone": "Asia/Kolkata",
        "country": "India",
        "currency": "INR",
        "pre_market_open": time(9, 0),
        "market_open": time(9, 15),
        "market_close": time(15, 30),
        "post_market_close": time(16, 0),
        "calendar_code": "XBOM",
        "yahoo_suffix": ".BO",
    },
    {
        "code": "NYSE",
        "name": "New York Stock Exchange",
        "mic": "XNYS",
        "timezone": "America/New_York",
        "country": "United States",
        "currency": "USD",
        "pre_market_open": time(4, 0),
        "market_open": time(9, 30),
        "market_close": time(16, 0),
        "post_market_close": time(20, 0),
        "calendar_code": "XNYS",
        "yahoo_suffix": "",
    },
    {
        "code": "NASDAQ",
        "name": "Nasdaq Stock Market",
        "mic": "XNAS",
        "timezone": "America/New_York",
        "country": "United States",
        "currency": "USD",
        "pre_market_open": time(4, 0),
        "market_open": time(9, 30),
        "market_close": time(16, 0),
        "post_market_close": time(20, 0),
        "calendar_code": "XNYS",
        "yahoo_suffix": "",
    },
    {
        "code": "LSE",
        "name": "London Stock Exchange",
        "mic": "XLON",
        "timezone": "Europe/London",
        "country": "United Kingdom",
        "currency": "GBP",
        "pre_market_open": time(7, 50),
        "market_open": time(8, 0),
        "market_close": time(16, 30),
        "post_market_close": time(16, 35),
        "calendar_code": "XLON",
        "yahoo_suffix": ".L",
    },
    {
        "code": "TSE",
        "name": "Tokyo Stock Exchange",
        "mic": "XTKS",
        "timezone": "Asia/Tokyo",
        "country": "Japan",
        "currency": "JPY",
        "pre_market_open": time(8, 0),
        "market_open": time(9, 0),
        "market_close": time(15, 30),
        "post_market_close": None,
        "calendar_code": "XTKS",
        "yahoo_suffix": ".T",
    },
    {
        "code": "HKEX",
        "name": "Hong Kong Exchanges and Clearing",
        "mic": "XHKG",
        "timezone": "Asia/Hong_Kong",
        "country": "Hong Kong",
        "currency": "HKD",
        "pre_market_open": time(9, 0),
        "market_open": time(9, 30),
        "market_close": time(16, 0),
        "post_market_close": time(16, 10),
        "calendar_code": "XHKG",
        "yahoo_suffix": ".HK",
    },
    {
        "code": "SSE",
        "name": "Shanghai Stock Exchange",
        "mic": "XSHG",
        "timezone": "Asia/Shanghai",
        "country": "China",
        "currency": "CNY",
        "pre_market_open": time(9, 15),
        "market_open": time(9, 30),
        "market_close": time(15, 0),
        "post_market_close": None,
        "calendar_code": "XSHG",
        "yahoo_suffix": ".SS",
    },
    {
        "code": "SZSE",
        "name": "Shenzhen Stock Exchange",
        "mic": "XSHE",
        "timezone": "Asia/Shanghai",
        "country": "China",
        "currency": "CNY",
        "pre_market_open": time(9, 15),
        "market_open": time(9, 30),
        "market_close": time(15, 0),
        "post_market_close": None,
        "calendar_code": "XSHG",
        "yahoo_suffix": ".SZ",
    },
    {
        "code": "EPA",
        "name": "Euronext Paris",
        "mic": "XPAR",
        "timezone": "Europe/Paris",
        "country": "France",
        "currency": "EUR",
        "pre_market_open": time(7, 15),
        "market_open": time(9, 0),
        "market_close": time(17, 30),
        "post_market_close": time(17, 40),
        "calendar_code": "XPAR",
        "yahoo_suffix": ".PA",
    },
    {
        "code": "TSX",
        "name": "Toronto Stock Exchange",
        "mic": "XTSE",
        "timezone": "America/Toronto",
        "country": "Canada",
        "currency": "CAD",
        "pre_market_open": time(7, 0),
        "market_open": time(9, 30),
        "market_close": time(16, 0),
        "post_market_close": time(17, 0),
        "calendar_code": "XTSE",
        "yahoo_suffix": ".TO",
    },
    {
        "code": "ASX",
        "name": "Australian Securities Exchange",
        "mic": "XASX",
        "timezone": "Australia/Sydney",
        "country": "Australia",
        "currency": "AUD",
        "pre_market_open": time(7, 0),
        "market_open": time(10, 0),
        "market_close": time(16, 0),
        "post_market_close": time(16, 12),
        "calendar_code": "XASX",
        "yahoo_suffix": ".AX",
    },
    {
        "code": "XETRA",
        "name": "Deutsche Börse Xetra",
        "mic": "XETR",
        "timezone": "Europe/Berlin",
        "country": "Germany",
        "currency": "EUR",
        "pre_market_open": time(8, 0),
        "market_open": time(9, 0),
        "market_close": time(17, 30),
        "post_market_close": time(17, 35),
        "calendar_code": "XETR",
        "yahoo_suffix": ".DE",
    },
    {
        "code": "SIX",
        "name": "SIX Swiss Exchange",
        "mic": "XSWX",
        "timezone": "Europe/Zurich",
        "country": "Switzerland",
        "currency": "CHF",
        "pre_market_open": time(6, 0),
        "market_open": time(9, 0),
        "market_close": time(17, 30),
        "post_market_close": time(17, 40),
        "calendar_code": "XSWX",
        "yahoo_suffix": ".SW",
    },
    {
        "code": "KRX",
        "name": "Korea Exchange",
        "mic": "XKRX",
        "timezone": "Asia/Seoul",
        "country": "South Korea",
        "currency": "KRW",
        "pre_market_open": time(8, 30),
        "market_open": time(9, 0),
        "market_close": time(15, 30),
        "post_market_close": time(18, 0),
        "calendar_code": "XKRX",
        "yahoo_suffix": ".KS",
    },
    {
        # Crypto trades around the clock; the venue is notional (prices quoted in USD, UTC clock).
        # Yahoo crypto symbols already carry the quote currency (BTC-USD), hence no suffix.
        "code": "CRYPTO",
        "name": "Crypto (24/7)",
        "mic": "",
        "timezone": "UTC",
        "country": "",
        "currency": "USD",
        "pre_market_open": None,
        "market_open": None,
        "market_close": None,
        "post_market_close": None,
        "is_open_24_hours": True,
        "calendar_code": "24/7",
        "yahoo_suffix": "",
    },
]

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
    for exchange in EXCHANGES:
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

# Demo instruments. ``dhan`` is (segment, security id) from Dhan's scrip master; ``price`` is a
# plausible reference level for the simulator to start from, not a quote.
DEMO_INSTRUMENTS: list[dict] = [
    # NSE
    {"exchange": "NSE", "symbol": "RELIANCE", "name": "Reliance Industries Ltd", "type": "EQ",
     "sector": "Energy", "isin": "INE002A01018", "dhan": ("NSE_EQ", "2885"), "price": Decimal("1420.00")},
    {"exchange": "NSE", "symbol": "HDFCBANK", "name": "HDFC Bank Ltd", "type": "EQ",
     "sector": "Financials", "isin": "INE040A01034", "dhan": ("NSE_EQ", "1333"), "price": Decimal("1950.00")},
    {"exchange": "NSE", "symbol": "INFY", "name": "Infosys Ltd", "type": "EQ",
     "sector": "Information Technology", "isin": "INE009A01021", "dhan": ("NSE_EQ", "1594"),
     "price": Decimal("1560.00")},
    {"exchange": "NSE", "symbol": "TCS", "name": "Tata Consultancy Services Ltd", "type": "EQ",
     "sector": "Information Technology", "isin": "INE467B01029", "dhan": ("NSE_EQ", "11536"),
     "price": Decimal("3450.00")},
    {"exchange": "NSE", "symbol": "ICICIBANK", "name": "ICICI Bank Ltd", "type": "EQ",
     "sector": "Financials", "isin": "INE090A01021", "dhan": ("NSE_EQ", "4963"), "price": Decimal("1420.00")},
    {"exchange": "NSE", "symbol": "SBIN", "name": "State Bank of India", "type": "EQ",
     "sector": "Financials", "isin": "INE062A01020", "dhan": ("NSE_EQ", "3045"), "price": Decimal("810.00")},
    {"exchange": "NSE", "symbol": "ITC", "name": "ITC Ltd", "type": "EQ",
     "sector": "Consumer Staples", "isin": "INE154A01025", "dhan": ("NSE_EQ", "1660"), "price": Decimal("420.00")},
    {"exchange": "NSE", "symbol": "NIFTY", "name": "NIFTY 50", "type": "INDEX",
     "sector": None, "isin": "", "dhan": ("IDX_I", "13"), "price": Decimal("24800.00")},
    # BSE
    {"exchange": "BSE", "symbol": "RELIANCE", "name": "Reliance Industries Ltd", "type": "EQ",
     "sector": "Energy", "isin": "INE002A01018", "dhan": ("BSE_EQ", "500325"), "price": Decimal("1420.00")},
    {"exchange": "BSE", "symbol": "TCS", "name": "Tata Consultancy Services Ltd", "type": "EQ",
     "sector": "Information Technology", "isin": "INE467B01029", "dhan": ("BSE_EQ", "532540"),
     "price": Decimal("3450.00")},
    {"exchange": "BSE", "symbol": "INFY", "name": "Infosys Ltd", "type": "EQ",
     "sector": "Information Technology", "isin": "INE009A01021", "dhan": ("BSE_EQ", "500209"),
     "price": Decimal("1560.00")},
    {"exchange": "BSE", "symbol": "SENSEX", "name": "S&P BSE SENSEX", "type": "INDEX",
     "sector": None, "isin": "", "dhan": ("IDX_I", "51"), "price": Decimal("81500.00")},
    # NASDAQ
    {"exchange": "NASDAQ", "symbol": "AAPL", "name": "Apple Inc.", "type": "EQ",
     "sector": "Information Technology", "isin": "US0378331005", "dhan": None, "price": Decimal("210.00")},
    {"exchange": "NASDAQ", "symbol": "MSFT", "name": "Microsoft Corporation", "type": "EQ",
     "sector": "Information Technology", "isin": "US5949181045", "dhan": None, "price": Decimal("450.00")},
    {"exchange": "NASDAQ", "symbol": "GOOGL", "name": "Alphabet Inc. Class A", "type": "EQ",
     "sector": "Communication Services", "isin": "US02079K3059", "dhan": None, "price": Decimal("175.00")},
    {"exchange": "NASDAQ", "symbol": "AMZN", "name": "Amazon.com, Inc.", "type": "EQ",
     "sector": "Consumer Discretionary", "isin": "US0231351067", "dhan": None, "price": Decimal("200.00")},
    {"exchange": "NASDAQ", "symbol": "NVDA", "name": "NVIDIA Corporation", "type": "EQ",
     "sector": "Information Technology", "isin": "US67066G1040", "dhan": None, "price": Decimal("140.00")},
    {"exchange": "NASDAQ", "symbol": "META", "name": "Meta Platforms, Inc.", "type": "EQ",
     "sector": "Communication Services", "isin": "US30303M1027", "dhan": None, "price": Decimal("600.00")},
    {"exchange": "NASDAQ", "symbol": "TSLA", "name": "Tesla, Inc.", "type": "EQ",
     "sector": "Consumer Discretionary", "isin": "US88160R1014", "dhan": None, "price": Decimal("300.00")},
    {"exchange": "NASDAQ", "symbol": "NFLX", "name": "Netflix, Inc.", "type": "EQ",
     "sector": "Communication Services", "isin": "US64110L1061", "dhan": None, "price": Decimal("120.00")},
    {"exchange": "NASDAQ", "symbol": "AMD", "name": "Advanced Micro Devices, Inc.", "type": "EQ",
     "sector": "Information Technology", "isin": "US0079031078", "dhan": None, "price": Decimal("150.00")},
]  # fmt: skip

# Where the simulator starts each demo instrument: {(exchange code, symbol): price}.
DEMO_PRICES: dict[tuple[str, str], Decimal] = {(i["exchange"], i["symbol"]): i["price"] for i in DEMO_INSTRUMENTS}

# Tick sizes used for the demo instruments (Indian cash market 0.05 rupees, US 1 cent).
DEMO_TICK_SIZES: dict[str, Decimal] = {"NSE": Decimal("0.05"), "BSE": Decimal("0.05"), "NASDAQ": Decimal("0.01")}

DEFAULT_ADMIN_EMAIL = "admin@example.com"
