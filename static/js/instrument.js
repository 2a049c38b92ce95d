// /instruments/<exchange>/<symbol>/: the latest quote (REST, then live) and the price chart (1D first).

import { api } from "./api.js";
import { MarketChart, bindIntervals } from "./chart.js";
import { formatChange, formatClock, formatPercent, formatPrice, formatVolume, DASH } from "./format.js";
import { LiveFeed, bindIndicator } from "./live.js";

const $ = (id) => document.getElementById(id);
const instrument = JSON.parse($("instrument-data").textContent);
const channel = `${instrument.exchange}:${instrument.symbol}`;
const feed = new LiveFeed();
window.marketFeed = feed;
bindIndicator(feed, $("conn"));

let last = null;

function showQuote(quote) {
  const { currency, tick_size: tick, timezone } = instrument;
  const price = (value) => formatPrice(value, currency, tick);
  const change = quote.change ?? (quote.previous_close ? quote.close - quote.previous_close : null);
  const percent = quote.change_percent ?? (quote.previous_close ? (change / quote.previous_close) * 100 : null);
  const lastCell = $("quote-last");
  lastCell.textContent = price(quote.close);
  if (last && last.close !== quote.close) {
    lastCell.classList.remove("flash-up", "flash-down");
    void lastCell.offsetWidth; // restart the animation
    lastCell.classList.add(quote.close > last.close ? "flash-up" : "flash-down");
  }
  for (const [id, text] of [
    ["quote-change", formatChange(change, tick)],
    ["quote-change-percent", formatPercent(percent)],
  ]) {
    $(id).textContent = text;
    $(id).className = change > 0 ? "up" : change < 0 ? "down" : "";
  }
  $("quote-time").textContent = `at ${formatClock(quote.timestamp, timezone)} ${timezone}`;
  $("quote-open").textContent = price(quote.open);
  $("quote-high").textContent = price(quote.high);
  $("quote-low").textContent = price(quote.low);
  $("quote-previous-close").textContent = price(quote.previous_close);
  $("quote-volume").textContent = formatVolume(quote.volume);
  $("quote-bid-ask").textContent =
    quote.bid == null && quote.ask == null ? DASH : `${price(quote.bid)} / ${price(quote.ask)}`;
  last = quote;
}

feed.addEventListener("quote", (event) => {
  const quote = event.detail;
  if (quote.symbol === instrument.symbol && quote.exchange === instrument.exchange) showQuote(quote);
});
feed.acquire([channel]);

api(`/marketdata/quote?symbols=${encodeURIComponent(channel)}`)
  .then((data) => {
    if (data.quotes.length && !last) showQuote({ ...data.quotes[0], message_type: "snapshot" });
    else if (!data.quotes.length && !last) $("quote-time").textContent = "No live quote yet.";
  })
  .catch(() => {
    if (!last) $("quote-time").textContent = "No live quote yet.";
  });

const chart = new MarketChart($("chart"), { feed, legend: $("chart-legend"), note: $("chart-note") });
const mark = bindIntervals($("chart-intervals"), chart);
mark("1D");
chart.show(instrument, "1D");
