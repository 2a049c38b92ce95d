"""Benchmark ``search``: ``GET /instruments/?search=`` over 200,000 instruments, against a plain
``ILIKE '%q%'`` on the same table in the same run.

Data: 200,000 generated instruments (quick: 20,000) on the exchange ``SRCH``, shaped like a
Dhan scrip master: a few thousand equities (made-up company names, ISINs) and, for the most
part, their futures and options (``ACMEIND25JAN2500CE``, "ACMEIND 30 JAN 2500 CALL"). They are
COPYed in on every run (the previous run's rows are deleted first), then ``ANALYZE``.

For each query of ``pick_queries``, three ways:

- ``api``: ``GET /instruments/?search=<q>&limit=20`` with a JWT through uvicorn (one process on
  core 0, the committed settings), from this process on core 1 over one keep-alive connection:
  the count, the ranked page (pg_trgm GIN indexes) and the provider mappings, serialized;
- ``selector``: the same work without HTTP, Django's request cycle or serialization:
  ``instrument_list(filters={"search": q})``, its ``count()`` and first 20 rows (with the
  prefetch), in this process;
- ``baseline``: psycopg straight to PostgreSQL from this process, the naive search: ``SELECT
  count(*) ... WHERE symbol ILIKE '%q%' OR name ILIKE '%q%' OR isin ILIKE '%q%'`` and the first
  20 rows of the same ``WHERE`` by symbol. The trigram indexes are on ``UPPER(column)``, so this
  ``ILIKE`` on the plain columns cannot use them: it scans the table, as a search without the
  indexes would.

Each query is timed ``REPEATS`` times per way, interleaved (api, selector, baseline, api, ...)
after a warm-up; the match counts of the three ways must agree. The figures are p50/p99 per
query and over all requests; the ratio is the baseline's p99 over the API's p99 (above 1: the
API answers faster than the bare scan). The plans PostgreSQL chose are recorded.

``python -m bench.search [--quick]``: 200,000 instruments, 100 requests per query and way
(quick: 20,000 and 25).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import time
from urllib.parse import urlencode

from bench import common, environment, procs, report, stats

GOAL_P99_MS = 50.0
EXCHANGE = "SRCH"
PAGE = 20
SEED = 13
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SYLLABLES = (
    "AB AD AL AM AN AR AS AV BA BE BH BI BO CA CE CH CO DA DE DI DO EL EN ER FA FI GA GE GO HA HI IN IR "
    "JA JI KA KE KI KO KU LA LE LI LO MA ME MI MO MU NA NE NI NO PA PE PI PO RA RE RI RO SA SE SI SO SU "
    "TA TE TI TO TU UM UN VA VE VI WA YA ZE"
).split()
WORDS = (
    "Industries Bank Finance Motors Steel Power Pharma Chemicals Textiles Cement Energy Foods Capital "
    "Infra Telecom Software Systems Logistics Realty Mining Metals Agro Plastics Paper Glass Holdings "
    "Enterprises Ventures Electric Gas Oil Sugar Tea Tyres Auto Healthcare Labs Retail Media Hotels"
).split()
SUFFIXES = ("Ltd", "Limited", "Corporation", "Company")


def _company(rng: random.Random) -> tuple[str, str]:
    """A made-up (symbol, name) pair: ``ACMEIND``, "Acme Industries Ltd"."""
    stem = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
    words = rng.sample(WORDS, rng.randint(1, 2))
    symbol = (stem + "".join(w[:3].upper() for w in words))[:14]
    name = f"{stem.title()} {' '.join(words)} {rng.choice(SUFFIXES)}"
    return symbol, name


def _isin(rng: random.Random, n: int) -> str:
    return f"INE{n:06d}{rng.choice('ABCDEFGHJK')}0{rng.randint(1000, 9999) % 10}"[:12]


def generate(count: int) -> list[tuple[str, str, str, str]]:
    """``count`` rows ``(symbol, name, isin, kind)``, kind ``EQ``/``FUT``/``OPT``, unique symbols."""
    rng = random.Random(SEED)
    equities: dict[str, str] = {}
    want_equities = max(count // 40, 50)
    while len(equities) < want_equities:
        symbol, name = _company(rng)
        equities.setdefault(symbol, name)
    rows = [(symbol, name, _isin(rng, n), "EQ") for n, (symbol, name) in enumerate(equities.items())]
    seen = set(equities)
    underlyings = list(equities.items())[: max(want_equities // 4, 10)]
    year = 25
    while len(rows) < count:
        symbol, name = rng.choice(underlyings)
        month = rng.randrange(12)
        base = 100 * rng.randint(1, 60)
        if rng.random() < 0.1:
            derivative, label, kind = f"{symbol}{year}{MONTHS[month]}FUT", f"{symbol} {MONTHS[month]} FUT", "FUT"
        else:
            right = rng.choice(("CE", "PE"))
            strike = base + 50 * rng.randint(0, 40)
            derivative = f"{symbol}{year}{MONTHS[month]}{strike}{right}"
            label = f"{symbol} {rng.randint(24, 30)} {MONTHS[month]} {strike} {'CALL' if right == 'CE' else 'PUT'}"
            kind = "OPT"
        if derivative in seen:
            continue
        seen.add(derivative)
        rows.append((derivative, label, "", kind))
    return rows[:count]


def pick_queries(rows: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """The searched texts, drawn from the data so each kind of match is exercised."""
    rng = random.Random(SEED + 1)
    equities = [r for r in rows if r[3] == "EQ"]
    derivatives = [r for r in rows if r[3] != "EQ"]
    symbol, name, isin, _ = equities[len(equities) // 3]
    underlying = derivatives[0][1].split()[0]
    rare = rng.choice(equities)[1].split()[0][1:5]
    return {
        "exact_symbol": symbol.lower(),
        "symbol_prefix_3": symbol[:3],
        "name_prefix": name.split()[0][:5].lower(),
        "name_word_common": "bank",
        "contains_rare": rare.lower(),
        "isin_full": isin,
        "isin_part": isin[3:9],
        "derivatives_of_one": underlying + "25JAN",
        "two_letters": "ma",
        "no_match": "qqzzx",
    }


COLUMNS = (
    "created_at",
    "updated_at",
    "is_active",
    "symbol",
    "name",
    "exchange_id",
    "instrument_type_id",
    "isin",
    "currency",
    "lot_size",
    "tick_size",
    "option_type",
    "blacklisted",
    "delisted",
    "record_data",
)


def load_instruments(rows: list[tuple[str, str, str, str]]) -> dict:
    """The bench exchange's instruments replaced by ``rows`` (COPY); seconds taken, table size."""
    from django.db import connection, transaction

    from exchanges.models import Exchange
    from instruments.models import Instrument, InstrumentType

    exchange, _ = Exchange.objects.get_or_create(
        code=EXCHANGE, defaults={"name": "Search bench exchange", "timezone": "Asia/Kolkata", "currency": "INR"}
    )
    kinds = {}
    for code, label in (("EQ", "Equity"), ("FUT", "Future"), ("OPT", "Option")):
        kinds[code] = InstrumentType.objects.get_or_create(code=code, defaults={"name": label})[0].pk
    t0 = time.perf_counter()
    with transaction.atomic():
        now = dt.datetime.now(dt.UTC)
        with connection.cursor() as cursor:
            # Plain SQL: nothing refers to these rows, and the ORM's cascade collection is slow at 200,000.
            cursor.execute(f"DELETE FROM {Instrument._meta.db_table} WHERE exchange_id = %s", [exchange.pk])  # noqa: S608
            sql = f"COPY {Instrument._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
            with cursor.cursor.copy(sql) as copy:
                for symbol, name, isin, kind in rows:
                    option = symbol[-2:] if kind == "OPT" else ""
                    flags = (False, False, False)  # blacklisted, delisted, record_data
                    copy.write_row(
                        (now, now, True, symbol, name, exchange.pk, kinds[kind], isin, "", 1, "0.05", option, *flags)
                    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Instrument._meta.db_table}")
    loaded = time.perf_counter() - t0
    return {"load_s": round(loaded, 2), "table_rows": Instrument.objects.count()}


# --- the three ways -------------------------------------------------------------------------------
class Api:
    """``GET /instruments/?search=`` on one keep-alive connection; returns the count."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, text: str) -> int:
        self.conn.request("GET", "/instruments/?" + urlencode({"search": text, "limit": PAGE}), headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:300])
        return json.loads(body)["count"]

    def close(self) -> None:
        self.conn.close()


def selector(text: str) -> int:
    """The API's database work, in process: count and the first ranked page with its prefetch."""
    from instruments.selectors import instrument_list

    queryset = instrument_list(filters={"search": text})
    count = queryset.count()
    list(queryset[:PAGE])
    return count


BASELINE_WHERE = "(symbol ILIKE %(q)s OR name ILIKE %(q)s OR isin ILIKE %(q)s)"


class Baseline:
    """The naive search with psycopg: count and the first page of ``ILIKE '%q%'`` by symbol."""

    def __init__(self) -> None:
        import psycopg

        self.conn = psycopg.connect(environment.psql_conninfo(), autocommit=True)

    @staticmethod
    def pattern(text: str) -> str:
        escaped = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"

    def __call__(self, text: str) -> int:
        params = {"q": self.pattern(text), "n": PAGE}
        count = self.conn.execute(
            f"SELECT count(*) FROM instruments_instrument WHERE {BASELINE_WHERE}",  # noqa: S608 - constant
            params,
        ).fetchone()[0]
        self.conn.execute(
            f"SELECT * FROM instruments_instrument WHERE {BASELINE_WHERE} ORDER BY symbol LIMIT %(n)s",  # noqa: S608
            params,
        ).fetchall()
        return count

    def plan(self, text: str) -> str:
        sql = f"EXPLAIN SELECT count(*) FROM instruments_instrument WHERE {BASELINE_WHERE}"  # noqa: S608
        return "\n".join(r[0] for r in self.conn.execute(sql, {"q": self.pattern(text)}).fetchall())

    def close(self) -> None:
        self.conn.close()


def our_plan(text: str) -> str:
    """PostgreSQL's plan for the count query of ours (the page query's scans are the same)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from instruments.selectors import instrument_list

    with CaptureQueriesContext(connection) as captured:
        instrument_list(filters={"search": text}).count()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + captured.captured_queries[-1]["sql"])
        return "\n".join(row[0] for row in cursor.fetchall())


def _scans(plan: str) -> str:
    """The scan nodes of a plan, in one line (``Bitmap Index Scan on instruments_name_upper_trgm``)."""
    nodes = [line.strip().split("  (")[0].lstrip("-> ") for line in plan.splitlines() if "Scan" in line]
    return "; ".join(nodes)


def measure(ways: dict, queries: dict[str, str], repeats: int) -> tuple[dict, dict]:
    """Latencies (seconds) per way and query, interleaved; the match count of each query."""
    timings = {way: {name: [] for name in queries} for way in ways}
    counts: dict[str, dict[str, int]] = {name: {} for name in queries}
    for name, text in queries.items():
        for way, call in ways.items():  # warm-up, and the counts that must agree
            counts[name][way] = call(text)
        assert len(set(counts[name].values())) == 1, (name, text, counts[name])
        for _ in range(repeats):
            for way, call in ways.items():
                t0 = time.perf_counter()
                call(text)
                timings[way][name].append(time.perf_counter() - t0)
    return timings, {name: next(iter(c.values())) for name, c in counts.items()}


def run(*, quick: bool) -> dict:
    environment.setup_django()
    procs.pin(common.LOAD_CORE)
    n = 20_000 if quick else 200_000
    repeats = 25 if quick else 100
    rows = generate(n)
    queries = pick_queries(rows)
    loaded = load_instruments(rows)
    del rows
    token = environment.access_token()
    baseline = Baseline()
    with procs.server("uvicorn", "search-uvicorn", DB_CONN_MAX_AGE="0") as server:
        api = Api(server.port, token)
        try:
            timings, counts = measure({"api": api, "selector": selector, "baseline": baseline}, queries, repeats)
        finally:
            api.close()
    plans = {
        name: {"ours": _scans(our_plan(text)), "baseline": _scans(baseline.plan(text))}
        for name, text in queries.items()
    }
    baseline.close()

    per_query = {}
    for name, text in queries.items():
        row = {"q": text, "matches": counts[name]}
        for way in ("api", "selector", "baseline"):
            summary = stats.summarize(timings[way][name], scale=1000)
            row[f"{way}_p50_ms"], row[f"{way}_p99_ms"] = summary["p50"], summary["p99"]
        row["ratio_p99"] = stats.ratio(row["api_p99_ms"], row["baseline_p99_ms"], higher_is_better=False)
        per_query[name] = row
    overall = {way: stats.summarize([t for ts in timings[way].values() for t in ts], scale=1000) for way in timings}
    ratio = stats.ratio(overall["api"]["p99"], overall["baseline"]["p99"], higher_is_better=False)
    selector_ratio = stats.ratio(overall["selector"]["p99"], overall["baseline"]["p99"], higher_is_better=False)
    worst_api_p99 = max(row["api_p99_ms"] for row in per_query.values())

    print(f"\n{'query':<20} {'q':<16} {'matches':>8} {'api p50/p99 ms':>17} {'selector':>15} {'ILIKE':>15} ratio")
    for name, row in per_query.items():
        print(
            f"{name:<20} {row['q']:<16} {row['matches']:>8,} {row['api_p50_ms']:>8.2f}/{row['api_p99_ms']:<8.2f}"
            f" {row['selector_p50_ms']:>7.2f}/{row['selector_p99_ms']:<7.2f}"
            f" {row['baseline_p50_ms']:>7.2f}/{row['baseline_p99_ms']:<7.2f} {row['ratio_p99']}"
        )
    report.write_result(
        "search",
        figures={
            "instruments": n,
            **loaded,
            "requests_per_query_and_way": repeats,
            "api": overall["api"],
            "selector": overall["selector"],
            "selector_ratio_p99": selector_ratio,
            "worst_query_api_p99_ms": worst_api_p99,
            "queries": per_query,
        },
        baseline={"ilike_scan": overall["baseline"]},
        ratio=ratio,
        goal=f"API p99 <= {GOAL_P99_MS:g} ms for every query at {n:,} instruments; ratio = ILIKE p99 / API p99",
        met=worst_api_p99 <= GOAL_P99_MS,
        quick=quick,
        notes=[
            "api: GET /instruments/?search=q&limit=20 (JWT) through uvicorn, committed settings (DB_CONN_MAX_AGE=0), "
            "one keep-alive connection, requests one at a time",
            "selector: instrument_list(filters={'search': q}).count() + first 20 rows with the prefetch, in process",
            "baseline: psycopg, count(*) and the first 20 rows by symbol WHERE symbol/name/isin ILIKE '%q%' "
            "(no usable index: a scan), same table, same run",
            "ways interleaved per request; the match counts of the three ways agree for every query",
            f"server on core {common.SERVER_CORE}; this process (client, selector, baseline) on core "
            f"{common.LOAD_CORE}; PostgreSQL unpinned",
        ],
        extra={"plans": plans},
    )
    return {"ratio": ratio, "selector_ratio": selector_ratio, "worst_query_api_p99_ms": worst_api_p99}


def main() -> None:
    args = common.arg_parser(__doc__.splitlines()[0]).parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
