"""An independent computation of coarser bars with pandas, to check the SQL and Python paths."""

from __future__ import annotations

import datetime as dt

import pandas as pd

RULES = {"5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h"}


def pandas_resample(bars: list[dict], *, interval: str, origin: dt.datetime) -> list[dict]:
    """Resample 1-minute bars into left-closed, left-labelled buckets counted from ``origin``."""
    frame = pd.DataFrame(bars).set_index("timestamp").sort_index()
    frame.index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
    resampled = frame.resample(RULES[interval], origin=pd.Timestamp(origin), closed="left", label="left").agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "previous_close": "first",
            "adj_close": "last",
            "delivery_percentage": "last",
        }
    )
    counts = frame["open"].resample(RULES[interval], origin=pd.Timestamp(origin), closed="left", label="left").count()
    resampled = resampled[counts > 0]
    out = []
    for ts, row in resampled.iterrows():
        out.append(
            {
                "timestamp": ts.to_pydatetime(),
                "open": float(row["open"]),
                "high": float(row["high"]),
                "low": float(row["low"]),
                "close": float(row["close"]),
                "volume": int(row["volume"]),
                "previous_close": None if pd.isna(row["previous_close"]) else float(row["previous_close"]),
                "adj_close": None if pd.isna(row["adj_close"]) else float(row["adj_close"]),
                "delivery_percentage": None
                if pd.isna(row["delivery_percentage"])
                else float(row["delivery_percentage"]),
            }
        )
    return out
