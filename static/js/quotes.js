// The live quote table of a watchlist: one row per instrument, cells that flash on change.

import { DASH, formatChange, formatClock, formatPercent, formatPrice, formatVolume } from "./format.js";

export function channelOf(item) {
  return `${item.exchange}:${item.symbol}`;
}

const FIELDS = ["last", "change", "change_percent", "high", "low", "volume", "updated"];

export class QuoteTable extends EventTarget {
  constructor(tbody, feed) {
    super();
    this.tbody = tbody;
    this.feed = feed;
    this.rows = new Map(); // channel -> {row, cells, item}
    this.quotes = new Map(); // channel -> last quote message (kept across list switches)
    this.channels = [];
    this.selected = null;
    feed.addEventListener("quote", (event) => this.onQuote(event.detail));
    feed.addEventListener("feed-error", (event) => this.onError(event.detail));
  }

  /** Show a watchlist's items and follow their quotes (the previous list's channels are released). */
  setItems(items, listName) {
    const channels = items.map(channelOf);
    this.feed.acquire(channels);
    this.feed.release(this.channels);
    this.channels = channels;
    this.rows.clear();
    if (!items.length) {
      const row = document.createElement("tr");
      const cell = document.createElement("td");
      cell.colSpan = 10;
      cell.className = "empty";
      cell.textContent = "This list is empty. Add instruments with the search box above.";
      row.append(cell);
      this.tbody.replaceChildren(row);
      return;
    }
    this.tbody.replaceChildren(...items.map((item) => this._row(item, listName)));
    for (const channel of channels) {
      const quote = this.quotes.get(channel);
      if (quote) this._fill(channel, quote, null);
    }
    this._markSelected();
  }

  select(channel) {
    this.selected = channel;
    this._markSelected();
  }

  _markSelected() {
    for (const [channel, { row }] of this.rows) {
      if (channel === this.selected) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }

  _row(item, listName) {
    const channel = channelOf(item);
    const row = document.createElement("tr");
    row.dataset.channel = channel;
    row.dataset.instrumentId = item.instrument_id;
    const cells = {};
    const symbolCell = document.createElement("td");
    symbolCell.className = "sym";
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = item.symbol;
    open.setAttribute("aria-label", `Chart ${item.symbol} on ${item.exchange}`);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.name ? `${item.exchange} · ${item.name}` : item.exchange;
    symbolCell.append(open, name);
    const exchangeCell = document.createElement("td");
    exchangeCell.className = "opt opt-wide";
    exchangeCell.textContent = item.exchange;
    row.append(symbolCell, exchangeCell);
    const optional = { change: " opt-phone", high: " opt", low: " opt", volume: " opt", updated: " opt opt-wide" };
    for (const field of FIELDS) {
      const td = document.createElement("td");
      td.className = `num${optional[field] || ""}`;
      td.dataset.field = field;
      td.textContent = DASH;
      cells[field] = td;
      row.append(td);
    }
    const actions = document.createElement("td");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", `Remove ${item.symbol} (${item.exchange}) from ${listName}`);
    remove.addEventListener("click", (event) => {
      event.stopPropagation();
      this.dispatchEvent(new CustomEvent("remove", { detail: item }));
    });
    actions.append(remove);
    row.append(actions);
    row.addEventListener("click", () => this.dispatchEvent(new CustomEvent("open", { detail: item })));
    this.rows.set(channel, { row, cells, item });
    return row;
  }

  onQuote(quote) {
    const channel = `${quote.exchange}:${quote.symbol}`;
    const previous = this.quotes.get(channel) || null;
    this.quotes.set(channel, quote);
    this._fill(channel, quote, previous);
  }

  onError(error) {
    const entry = error.channel && this.rows.get(error.channel);
    if (entry) {
      entry.cells.last.textContent = "n/a";
      entry.cells.last.title = error.message;
    }
  }

  _fill(channel, quote, previous) {
    const entry = this.rows.get(channel);
    if (!entry) return;
    const { cells, item } = entry;
    const { currency, tick_size: tick } = item;
    const change = quote.change ?? (quote.previous_close ? quote.close - quote.previous_close : null);
    const percent =
      quote.change_percent ?? (quote.previous_close ? ((quote.close - quote.previous_close) / quote.previous_close) * 100 : null);
    cells.last.textContent = formatPrice(quote.close, currency, tick);
    cells.last.title = "";
    cells.change.textContent = formatChange(change, tick);
    cells.change_percent.textContent = formatPercent(percent);
    for (const cell of [cells.change, cells.change_percent]) {
      cell.classList.toggle("up", change > 0);
      cell.classList.toggle("down", change < 0);
    }
    cells.high.textContent = formatPrice(quote.high, currency, tick);
    cells.low.textContent = formatPrice(quote.low, currency, tick);
    cells.volume.textContent = formatVolume(quote.volume);
    cells.updated.textContent = formatClock(quote.timestamp, item.timezone);
    cells.updated.title = `${quote.timestamp} (UTC)`;
    if (previous && previous.close !== quote.close) {
      const cell = cells.last;
      cell.classList.remove("flash-up", "flash-down");
      void cell.offsetWidth; // restart the animation
      cell.classList.add(quote.close > previous.close ? "flash-up" : "flash-down");
    }
  }
}
