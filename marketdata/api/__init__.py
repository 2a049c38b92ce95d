"""The REST API of market data.

``history`` serves ``/marketdata/intraday`` and ``/marketdata/daily`` (their query parsing and
fast path in ``history_query``, their cached JWT authentication in ``auth``); ``live`` serves
``/marketdata/quote`` from the tick store.
"""
