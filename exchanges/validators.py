"""Validators for exchange fields: IANA time zones, ISO 4217 currencies, calendar codes."""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError

# ISO 4217 active codes (the list is short and stable; no extra dependency for it).
ISO_4217 = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
    GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW
    KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK
    SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS
    VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL USDT""".split()
)


def validate_timezone(value: str) -> None:
    """Accept only IANA zone names that this Python knows (``Asia/Kolkata``, ``UTC``)."""
    if not value or value not in zoneinfo.available_timezones() | {"UTC"}:
        raise ValidationError(f"'{value}' is not a valid IANA time zone (e.g. 'Asia/Kolkata').")


def validate_currency(value: str) -> None:
    """Accept ISO 4217 codes, upper case."""
    if value not in ISO_4217:
        raise ValidationError(f"'{value}' is not an ISO 4217 currency code (e.g. 'INR', 'USD').")


def validate_calendar_code(value: str) -> None:
    """Accept blank or a calendar name that exchange-calendars knows (``XNYS``, ``XBOM``)."""
    if not value:
        return
    import exchange_calendars

    if value not in exchange_calendars.get_calendar_names(include_aliases=True):
        raise ValidationError(f"'{value}' is not an exchange-calendars calendar (e.g. 'XNYS').")
