// /live/providers/: each provider's stream (GET /providers/{id}/status every few seconds) with start/stop.

import { api, ApiError } from "./api.js";
import { DASH } from "./format.js";

const POLL_MS = 3000;
const rows = [...document.querySelectorAll("#providers tr[data-provider-id]")];
const errorBox = document.getElementById("providers-error");
const updated = document.getElementById("providers-updated");
const BADGES = { running: "ok", starting: "warn", stopping: "warn", stopped: "", unknown: "bad", unavailable: "bad" };

function ago(iso) {
  if (!iso) return DASH;
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

function cell(row, field) {
  return row.querySelector(`[data-field="${field}"]`);
}

function show(row, status) {
  const state = status.state || "unknown";
  const badge = document.createElement("span");
  badge.className = `badge ${BADGES[state] ?? ""}`.trim();
  badge.textContent = state;
  if (status.error) badge.title = status.error;
  cell(row, "state").replaceChildren(badge);
  cell(row, "worker").textContent = status.worker || DASH;
  const lastTick = cell(row, "last_tick");
  lastTick.textContent = ago(status.last_tick_at);
  lastTick.title = status.last_tick_at || "";
  cell(row, "ticks_per_second").textContent =
    status.ticks_per_second == null ? DASH : status.ticks_per_second.toFixed(status.ticks_per_second < 10 ? 2 : 0);
  cell(row, "ticks").textContent = status.ticks == null ? DASH : status.ticks.toLocaleString();
  const problems = [status.last_error, status.stop_reason && `stopped: ${status.stop_reason}`, status.error].filter(Boolean);
  const errors = cell(row, "errors");
  errors.textContent = problems.length ? problems.join(" · ") : DASH;
  errors.classList.toggle("down", Boolean(status.last_error || status.error));
  errors.title = status.last_error_at ? `last error at ${status.last_error_at}` : "";
  row.querySelector('[data-action="start"]').disabled = state === "running" || state === "starting";
  row.querySelector('[data-action="stop"]').disabled = state === "stopped" || state === "stopping";
}

function unavailable(row, error) {
  show(row, { state: "unavailable", error: error.message });
  row.querySelector('[data-action="start"]').disabled = false;
  row.querySelector('[data-action="stop"]').disabled = false;
}

async function refresh(row) {
  try {
    show(row, await api(`/providers/${row.dataset.providerId}/status`));
  } catch (error) {
    unavailable(row, error);
  }
}

async function poll() {
  await Promise.all(rows.map(refresh));
  updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

for (const row of rows) {
  for (const button of row.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", async () => {
      errorBox.textContent = "";
      button.disabled = true;
      try {
        show(row, await api(`/providers/${row.dataset.providerId}/${button.dataset.action}`, { method: "POST" }));
      } catch (error) {
        errorBox.textContent = `${row.dataset.code}: ${error instanceof ApiError ? error.message : "the server could not be reached."}`;
        button.disabled = false;
      }
    });
  }
}

poll();
setInterval(poll, POLL_MS);
