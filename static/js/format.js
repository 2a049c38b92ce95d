// Number and time formatting in the instrument's currency and the exchange's time zone.

const cache = new Map();

function cached(key, make) {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    cache.set(key, value);
  }
  return value;
}

/** Decimal places implied by a tick size such as "0.050000" (2) or "1" (0). */
export function decimalsOf(tickSize) {
  const text = String(tickSize ?? "0.01");
  if (!text.includes(".")) return 0;
  const fraction = text.split(".")[1].replace(/0+$/, "");
  return Math.min(8, fraction.length);
}

function priceFormat(currency, decimals) {
  return cached(`p|${currency}|${decimals}`, () => {
    const digits = { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency, ...digits });
    } catch {
      return new Intl.NumberFormat(undefined, digits); // unknown or empty currency code
    }
  });
}

export const DASH = "—";

/** A price in the instrument's currency, with the precision of its tick size. */
export function formatPrice(value, currency, tickSize) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return priceFormat(currency, decimalsOf(tickSize)).format(value);
}

/** A signed change with the instrument's precision (no currency symbol, the column says it). */
export function formatChange(value, tickSize) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  const decimals = decimalsOf(tickSize);
  return cached(`c|${decimals}`, () =>
    new Intl.NumberFormat(undefined, {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
      signDisplay: "exceptZero",
    }),
  ).format(value);
}

/** A signed percentage; the value is in percent (1.25 means 1.25 %). */
export function formatPercent(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return cached("pct", () =>
    new Intl.NumberFormat(undefined, {
      style: "percent",
      minimumFractionDigits: 2,
      maximumFractionDigits: 2,
      signDisplay: "exceptZero",
    }),
  ).format(value / 100);
}

/** Volume: grouped digits, compact (1.2M) once it gets long. */
export function formatVolume(value) {
  if (value === null || value === undefined) return DASH;
  const compact = Math.abs(value) >= 1e6;
  return cached(`v|${compact}`, () =>
    new Intl.NumberFormat(undefined, compact ? { notation: "compact", maximumFractionDigits: 2 } : {}),
  ).format(value);
}

/** Wall-clock time (HH:MM:SS) of an instant in a time zone. */
export function formatClock(isoOrMs, timeZone) {
  if (isoOrMs === null || isoOrMs === undefined) return DASH;
  const date = new Date(isoOrMs);
  if (Number.isNaN(date.getTime())) return DASH;
  return cached(`t|${timeZone}`, () => {
    try {
      return new Intl.DateTimeFormat(undefined, {
        timeZone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      });
    } catch {
      return new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    }
  }).format(date);
}

function partsFormat(timeZone) {
  return cached(`parts|${timeZone}`, () => {
    try {
      return new Intl.DateTimeFormat("en-US", {
        timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
    } catch {
      return partsFormat("UTC");
    }
  });
}

const offsets = new Map();

/** Seconds to add to a UTC instant to get the wall-clock time in the zone (e.g. +19800 for IST). */
export function zoneOffsetSeconds(timeZone, utcSeconds) {
  // Zone changes happen on the quarter hour at the finest; cache per quarter hour.
  const key = `${timeZone}|${Math.floor(utcSeconds / 900)}`;
  let offset = offsets.get(key);
  if (offset === undefined) {
    const parts = {};
    for (const part of partsFormat(timeZone).formatToParts(new Date(utcSeconds * 1000))) parts[part.type] = part.value;
    const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second) / 1000;
    offset = wall - Math.floor(utcSeconds);
    if (offsets.size > 5000) offsets.clear();
    offsets.set(key, offset);
  }
  return offset;
}

/** The exchange-local calendar date ("2024-01-15") of an instant. */
export function localDate(isoOrMs, timeZone) {
  const parts = {};
  for (const part of partsFormat(timeZone).formatToParts(new Date(isoOrMs))) parts[part.type] = part.value;
  return `${parts.year}-${parts.month}-${parts.day}`;
}
