// A candlestick + volume chart of one instrument (TradingView lightweight-charts, served locally).
//
// History comes from /marketdata/intraday (1m, 5m, 15m, 1h) or /marketdata/daily (1D); live
// updates from the feed: 1-minute bars of "EXCHANGE:SYMBOL@1m" for intraday intervals, the
// session's open/high/low/last/volume of quotes for 1D. The time axis shows the exchange's
// wall clock: lightweight-charts draws times as UTC, so each bar is shifted by the zone offset.
//
// For tests and the curious, window.marketChart is the chart on the page: ``series`` (candles),
// ``volume``, ``bars`` (as loaded and updated, with UTC ``utc`` seconds or the trading date).

import { allResults } from "./api.js";
import { DASH, decimalsOf, formatPrice, formatVolume, localDate, zoneOffsetSeconds } from "./format.js";

const LWC = window.LightweightCharts;

export const INTERVALS = {
  "1m": { seconds: 60, days: 1 },
  "5m": { seconds: 300, days: 5 },
  "15m": { seconds: 900, days: 10 },
  "1h": { seconds: 3600, days: 30 },
  "1D": { daily: true, days: 365 },
};

const VISIBLE_BARS = 150;
const MIN_VISIBLE_BARS = 40;
const UP = "#3fb950";
const DOWN = "#f85149";

function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

function isoInstant(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export class MarketChart extends EventTarget {
  constructor(container, { feed, legend = null, note = null } = {}) {
    super();
    this.container = container;
    this.feed = feed;
    this.legend = legend;
    this.note = note;
    this.instrument = null;
    this.interval = "1m";
    this.bars = [];
    this.loads = 0; // completed loads, for tests
    this.loading = false;
    this.source = null;
    this.liveChannels = [];
    this.pending = null; // the newest live message that came while history was loading
    this._seq = 0;
    this._abort = null;
    this.chart = LWC.createChart(container, {
      autoSize: true,
      layout: {
        background: { type: "solid", color: "#151b23" },
        textColor: "#c9d1d9",
        fontSize: 12,
        attributionLogo: true,
      },
      grid: { vertLines: { color: "#1f2833" }, horzLines: { color: "#1f2833" } },
      rightPriceScale: { borderColor: "#2a3441" },
      timeScale: { borderColor: "#2a3441", timeVisible: true, secondsVisible: false, rightOffset: 4 },
      crosshair: { mode: LWC.CrosshairMode.Normal },
    });
    this.series = this.chart.addSeries(LWC.CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      wickUpColor: UP,
      wickDownColor: DOWN,
      borderVisible: false,
    });
    this.series.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.26 } });
    this.volume = this.chart.addSeries(LWC.HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.chart.subscribeCrosshairMove((param) => this._legendAt(param));
    this._onBar = (event) => this._liveBar(event.detail);
    this._onQuote = (event) => this._liveQuote(event.detail);
    feed.addEventListener("bar", this._onBar);
    feed.addEventListener("quote", this._onQuote);
    window.marketChart = this;
  }

  get channel() {
    return this.instrument ? `${this.instrument.exchange}:${this.instrument.symbol}` : null;
  }

  /** Show an instrument ({symbol, exchange, timezone, currency, tick_size}) at an interval. */
  async show(instrument, interval = this.interval) {
    const same = this.instrument && this.channel === `${instrument.exchange}:${instrument.symbol}`;
    if (same && interval === this.interval && this.loads > 0 && !this.loading) return;
    this.instrument = instrument;
    this.interval = INTERVALS[interval] ? interval : "1m";
    const decimals = decimalsOf(instrument.tick_size);
    this.series.applyOptions({
      priceFormat: { type: "price", precision: decimals, minMove: Number(instrument.tick_size) || 10 ** -decimals },
    });
    this.chart.applyOptions({ timeScale: { timeVisible: !INTERVALS[this.interval].daily } });
    this._follow();
    await this.reload();
  }

  /** Subscribe to what keeps the current interval live, and drop what the previous one used. */
  _follow() {
    const wanted = INTERVALS[this.interval].daily ? [this.channel] : [`${this.channel}@1m`];
    this.feed.acquire(wanted);
    this.feed.release(this.liveChannels);
    this.liveChannels = wanted;
  }

  _historyUrl() {
    const spec = INTERVALS[this.interval];
    const { symbol, exchange } = this.instrument;
    const params = new URLSearchParams({ symbol, exchange, limit: "10000" });
    // Both ends given: with only a start the API reads one default span forward from it. The end
    // reaches past now, so a browser clock a little behind the server's still gets the open bar.
    const start = new Date(Date.now() - spec.days * 86400 * 1000);
    const end = new Date(Date.now() + (spec.daily ? 86400 : 3600) * 1000);
    if (spec.daily) {
      params.set("start_date", isoDate(start));
      params.set("end_date", isoDate(end));
      return `/marketdata/daily?${params}`;
    }
    params.set("interval", this.interval);
    params.set("start_date", isoInstant(start));
    params.set("end_date", isoInstant(end));
    return `/marketdata/intraday?${params}`;
  }

  async reload() {
    const seq = ++this._seq;
    if (this._abort) this._abort.abort();
    this._abort = new AbortController();
    this.loading = true;
    this.pending = null;
    this._setNote("Loading…");
    const url = this._historyUrl();
    let rows;
    try {
      rows = (await allResults(url, { signal: this._abort.signal })).rows;
    } catch (error) {
      if (seq !== this._seq) return;
      this.loading = false;
      this._setNote(error.name === "AbortError" ? "" : `History unavailable: ${error.message}`);
      return;
    }
    if (seq !== this._seq) return;
    this.source = url;
    this.bars = rows.map((row) => this._fromApi(row));
    this._render();
    this.loading = false;
    this.loads += 1;
    this._setNote(this.bars.length ? "" : "No bars in this range yet; live bars appear here as they form.");
    const pending = this.pending;
    this.pending = null;
    if (pending) (pending.message_type === "bar" ? this._liveBar(pending) : this._liveQuote(pending));
    this.dispatchEvent(new CustomEvent("loaded", { detail: { interval: this.interval, count: this.bars.length } }));
  }

  _chartTime(utc) {
    if (typeof utc === "string") return utc; // a trading date: lightweight-charts takes "YYYY-MM-DD"
    return utc + zoneOffsetSeconds(this.instrument.timezone, utc);
  }

  _fromApi(row) {
    const utc = INTERVALS[this.interval].daily ? row.timestamp : Math.floor(Date.parse(row.timestamp) / 1000);
    return { utc, open: row.open, high: row.high, low: row.low, close: row.close, volume: row.volume || 0 };
  }

  _candle(bar) {
    return { time: this._chartTime(bar.utc), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
  }

  _volumeBar(bar) {
    return {
      time: this._chartTime(bar.utc),
      value: bar.volume,
      color: bar.close >= bar.open ? "rgba(63,185,80,0.45)" : "rgba(248,81,73,0.45)",
    };
  }

  _render() {
    this.series.setData(this.bars.map((bar) => this._candle(bar)));
    this.volume.setData(this.bars.map((bar) => this._volumeBar(bar)));
    // Readable candles: the latest bars when there are many (scroll back for more), everything when
    // it fits, and room for what is coming when there are only a few (never one giant candle).
    const count = this.bars.length;
    const timeScale = this.chart.timeScale();
    if (count > VISIBLE_BARS) timeScale.setVisibleLogicalRange({ from: count - VISIBLE_BARS, to: count + 3 });
    else if (count >= MIN_VISIBLE_BARS) timeScale.fitContent();
    else timeScale.setVisibleLogicalRange({ from: count - MIN_VISIBLE_BARS, to: count + 3 });
    this._legendAt(null);
  }

  /** Put a bar at the end (same time: replace; newer: append; older: ignored). */
  _upsertLast(bar) {
    const last = this.bars[this.bars.length - 1];
    if (last && bar.utc < last.utc) return false;
    if (last && bar.utc === last.utc) this.bars[this.bars.length - 1] = bar;
    else this.bars.push(bar);
    this.series.update(this._candle(bar));
    this.volume.update(this._volumeBar(bar));
    this._setNote("");
    this._legendAt(null);
    this.dispatchEvent(new CustomEvent("bar", { detail: bar }));
    return true;
  }

  _matches(message) {
    return this.instrument && message.symbol === this.instrument.symbol && message.exchange === this.instrument.exchange;
  }

  _liveBar(message) {
    if (!this._matches(message) || INTERVALS[this.interval].daily) return;
    if (this.loading) {
      this.pending = message;
      return;
    }
    const minute = Math.floor(Date.parse(message.timestamp) / 1000);
    const spec = INTERVALS[this.interval];
    const live = { utc: minute, open: message.open, high: message.high, low: message.low, close: message.close, volume: message.volume || 0 };
    if (spec.seconds === 60) {
      this._upsertLast(live);
      return;
    }
    // Coarser bars: fold the minute into its bucket (aligned like the loaded ones: to the session open).
    const last = this.bars[this.bars.length - 1];
    const origin = last ? last.utc : 0;
    const bucket = origin + Math.floor((minute - origin) / spec.seconds) * spec.seconds;
    if (last && bucket === last.utc) {
      this._upsertLast({ ...last, high: Math.max(last.high, live.high), low: Math.min(last.low, live.low), close: live.close });
    } else {
      this._upsertLast({ ...live, utc: bucket });
    }
    // A closed minute settles the bucket's volume: read the bucket back from the API, which sums it exactly.
    if (message.closed) this._refreshLastBucket(bucket);
  }

  async _refreshLastBucket(bucket) {
    const seq = this._seq;
    const params = new URLSearchParams({
      symbol: this.instrument.symbol,
      exchange: this.instrument.exchange,
      interval: this.interval,
      start_date: isoInstant(new Date(bucket * 1000)),
      end_date: isoInstant(new Date((bucket + INTERVALS[this.interval].seconds) * 1000)),
    });
    try {
      const { rows } = await allResults(`/marketdata/intraday?${params}`, { maxPages: 1 });
      if (seq !== this._seq) return;
      for (const row of rows) this._upsertLast(this._fromApi(row));
    } catch {
      /* the next closed minute tries again */
    }
  }

  _liveQuote(message) {
    if (!this._matches(message) || !INTERVALS[this.interval].daily) return;
    if (this.loading) {
      this.pending = message;
      return;
    }
    // The session's open/high/low/last/volume are today's daily bar.
    this._upsertLast({
      utc: localDate(message.timestamp, this.instrument.timezone),
      open: message.open,
      high: message.high,
      low: message.low,
      close: message.close,
      volume: message.volume || 0,
    });
  }

  _setNote(text) {
    if (!this.note) return;
    this.note.textContent = text;
    this.note.hidden = !text;
  }

  _legendAt(param) {
    if (!this.legend || !this.instrument) return;
    let bar = null;
    if (param && param.time !== undefined) {
      const candle = param.seriesData.get(this.series);
      if (candle) bar = this.bars.find((b) => this._chartTime(b.utc) === param.time) || { ...candle, volume: null };
    }
    bar = bar || this.bars[this.bars.length - 1];
    if (!bar) {
      this.legend.textContent = "";
      return;
    }
    const { currency, tick_size: tick } = this.instrument;
    const price = (value) => formatPrice(value, currency, tick);
    this.legend.textContent =
      `O ${price(bar.open)}  H ${price(bar.high)}  L ${price(bar.low)}  C ${price(bar.close)}  ` +
      `V ${bar.volume === null ? DASH : formatVolume(bar.volume)}`;
  }
}

/** Wire a group of interval buttons (data-interval, aria-pressed) to a chart. */
export function bindIntervals(group, chart, { onChange } = {}) {
  const buttons = [...group.querySelectorAll("button[data-interval]")];
  const mark = (interval) => {
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.interval === interval));
  };
  for (const button of buttons) {
    button.addEventListener("click", () => {
      mark(button.dataset.interval);
      if (chart.instrument) chart.show(chart.instrument, button.dataset.interval);
      if (onChange) onChange(button.dataset.interval);
    });
  }
  return mark;
}
