// An accessible instrument search box (ARIA combobox + listbox) over /instruments/?search=.

import { api } from "./api.js";

let uid = 0;

export function instrumentSearch(input, listbox, { onPick, limit = 10 } = {}) {
  const prefix = `opt${(uid += 1)}`;
  let items = [];
  let active = -1;
  let timer = null;
  let controller = null;

  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", listbox.id);
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("autocomplete", "off");
  listbox.setAttribute("role", "listbox");
  listbox.hidden = true;

  function close() {
    items = [];
    active = -1;
    listbox.hidden = true;
    listbox.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    active = index;
    [...listbox.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === index)));
    if (index >= 0) {
      input.setAttribute("aria-activedescendant", `${prefix}-${index}`);
      listbox.children[index].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function render() {
    listbox.replaceChildren(
      ...items.map((item, i) => {
        const li = document.createElement("li");
        li.id = `${prefix}-${i}`;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.channel = `${item.exchange.code}:${item.symbol}`;
        const symbol = document.createElement("strong");
        symbol.textContent = item.symbol;
        const meta = document.createElement("span");
        meta.className = "muted";
        meta.textContent = `${item.exchange.code} · ${item.name || item.instrument_type.code}`;
        li.append(symbol, meta);
        // mousedown, not click: the input keeps focus and the list is not closed by blur first.
        li.addEventListener("mousedown", (event) => {
          event.preventDefault();
          pick(i);
        });
        return li;
      }),
    );
    listbox.hidden = items.length === 0;
    input.setAttribute("aria-expanded", String(items.length > 0));
    highlight(items.length ? 0 : -1);
  }

  async function query() {
    const text = input.value.trim();
    if (!text) {
      close();
      return;
    }
    if (controller) controller.abort();
    controller = new AbortController();
    try {
      const params = new URLSearchParams({ search: text, is_active: "true", limit: String(limit) });
      const data = await api(`/instruments/?${params}`, { signal: controller.signal });
      if (input.value.trim() !== text) return;
      items = data.results;
      render();
    } catch (error) {
      if (error.name !== "AbortError") close();
    }
  }

  function pick(index) {
    const item = items[index];
    if (!item) return;
    close();
    input.value = "";
    onPick(item);
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(query, 150);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && items.length) {
      event.preventDefault();
      highlight((active + 1) % items.length);
    } else if (event.key === "ArrowUp" && items.length) {
      event.preventDefault();
      highlight((active - 1 + items.length) % items.length);
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (active >= 0) pick(active);
    } else if (event.key === "Escape") {
      close();
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 150));
  return { close };
}
