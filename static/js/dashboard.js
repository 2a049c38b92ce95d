// /live/: the watchlist table with live quotes, the chart of the chosen row, the list controls.

import { MarketChart, bindIntervals, INTERVALS } from "./chart.js";
import { LiveFeed, bindIndicator } from "./live.js";
import { QuoteTable, channelOf } from "./quotes.js";
import { instrumentSearch } from "./search.js";
import { Watchlists } from "./watchlists.js";

const $ = (id) => document.getElementById(id);
const INTERVAL_KEY = "marketapp.interval";

const feed = new LiveFeed();
window.marketFeed = feed;
bindIndicator(feed, $("conn"));

const table = new QuoteTable($("quote-rows"), feed);
const watchlists = new Watchlists({
  lists: JSON.parse($("watchlists-data").textContent),
  select: $("watchlist-select"),
  buttons: { create: $("watchlist-new"), rename: $("watchlist-rename"), remove: $("watchlist-delete") },
  nameDialog: $("name-dialog"),
  confirmDialog: $("confirm-dialog"),
  errorBox: $("watchlist-error"),
});

let chart = null;
let markInterval = null;
const storedInterval = localStorage.getItem(INTERVAL_KEY);
let interval = INTERVALS[storedInterval] ? storedInterval : "1m";

function openChart(item) {
  const panel = $("chart-panel");
  panel.hidden = false;
  $("dashboard").classList.add("with-chart");
  if (!chart) {
    chart = new MarketChart($("chart"), { feed, legend: $("chart-legend"), note: $("chart-note") });
    markInterval = bindIntervals($("chart-intervals"), chart, {
      onChange: (value) => {
        interval = value;
        localStorage.setItem(INTERVAL_KEY, value);
      },
    });
  }
  markInterval(interval);
  $("chart-title").textContent = `${item.symbol} · ${item.exchange}`;
  $("chart-name").textContent = item.name;
  $("chart-link").href = `/instruments/${encodeURIComponent(item.exchange)}/${encodeURIComponent(item.symbol)}/`;
  table.select(channelOf(item));
  chart.show(item, interval);
  const box = panel.getBoundingClientRect();
  if (box.bottom < 0 || box.top > window.innerHeight) panel.scrollIntoView({ block: "start" });
}

table.addEventListener("open", (event) => openChart(event.detail));
table.addEventListener("remove", (event) => watchlists.removeInstrument(event.detail));
watchlists.addEventListener("change", (event) => {
  const list = event.detail;
  table.setItems(list ? list.items : [], list ? list.name : "");
  $("quotes-caption").textContent = list ? `Quotes of ${list.name}` : "Quotes";
});

instrumentSearch($("instrument-search"), $("instrument-options"), {
  onPick: (instrument) => watchlists.addInstrument(instrument.id),
});

watchlists.start();
