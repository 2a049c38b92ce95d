// The watchlist controls: choose, create, rename and delete lists; add and remove instruments.
// Every change goes through /watchlists/ and the answer (the list as stored) is what is shown.

import { api, ApiError } from "./api.js";

const STORAGE_KEY = "marketapp.watchlist";
const FAILED = Symbol("failed"); // what _run answers when the request failed (its error is shown)

export class Watchlists extends EventTarget {
  constructor({ lists, select, buttons, nameDialog, confirmDialog, errorBox }) {
    super();
    this.lists = lists;
    this.select = select;
    this.buttons = buttons;
    this.nameDialog = nameDialog;
    this.confirmDialog = confirmDialog;
    this.errorBox = errorBox;
    const stored = Number(localStorage.getItem(STORAGE_KEY));
    this.currentId = lists.some((l) => l.id === stored) ? stored : lists[0] && lists[0].id;
    select.addEventListener("change", () => this.choose(Number(select.value)));
    buttons.create.addEventListener("click", () => this.create());
    buttons.rename.addEventListener("click", () => this.rename());
    buttons.remove.addEventListener("click", () => this.remove());
  }

  get current() {
    return this.lists.find((l) => l.id === this.currentId) || null;
  }

  start() {
    this._renderSelect();
    this._changed();
  }

  choose(id) {
    this.currentId = id;
    localStorage.setItem(STORAGE_KEY, String(id));
    this._renderSelect();
    this._changed();
  }

  _changed() {
    this.buttons.remove.disabled = this.lists.length <= 1;
    this.dispatchEvent(new CustomEvent("change", { detail: this.current }));
  }

  _renderSelect() {
    this.select.replaceChildren(
      ...this.lists.map((list) => {
        const option = document.createElement("option");
        option.value = String(list.id);
        option.textContent = `${list.name} (${list.items.length})`;
        option.selected = list.id === this.currentId;
        return option;
      }),
    );
  }

  _store(list) {
    const index = this.lists.findIndex((l) => l.id === list.id);
    if (index >= 0) this.lists[index] = list;
    else this.lists.push(list);
  }

  showError(message) {
    this.errorBox.textContent = message || "";
  }

  async _run(action, field = null) {
    this.showError("");
    try {
      return await action();
    } catch (error) {
      if (!(error instanceof ApiError)) this.showError("The server could not be reached; try again.");
      else this.showError(field ? error.fieldMessage(field) : error.message);
      return FAILED;
    }
  }

  /** Ask for a name in the dialog; resolves to the name, or null when cancelled. Server errors show in it. */
  _askName(title, initial, submit) {
    const dialog = this.nameDialog;
    const form = dialog.querySelector("form");
    const input = dialog.querySelector("input[name=name]");
    const error = dialog.querySelector(".error-text");
    dialog.querySelector("h2").textContent = title;
    input.value = initial;
    error.textContent = "";
    return new Promise((resolve) => {
      const onSubmit = async (event) => {
        event.preventDefault();
        if (event.submitter && event.submitter.value === "cancel") {
          finish(null);
          return;
        }
        try {
          finish(await submit(input.value));
        } catch (problem) {
          error.textContent = problem instanceof ApiError ? problem.fieldMessage("name") : "The server could not be reached.";
        }
      };
      const onClose = () => finish(null);
      const finish = (value) => {
        form.removeEventListener("submit", onSubmit);
        dialog.removeEventListener("close", onClose);
        if (dialog.open) dialog.close();
        resolve(value);
      };
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener("close", onClose);
      dialog.showModal();
      input.select();
    });
  }

  _confirm(message) {
    const dialog = this.confirmDialog;
    dialog.querySelector("p").textContent = message;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  async create() {
    const list = await this._askName("New watchlist", "", (name) =>
      api("/watchlists/", { method: "POST", body: { name } }),
    );
    if (!list) return;
    this._store(list);
    this.choose(list.id);
  }

  async rename() {
    const current = this.current;
    if (!current) return;
    const list = await this._askName("Rename watchlist", current.name, (name) =>
      api(`/watchlists/${current.id}`, { method: "PATCH", body: { name } }),
    );
    if (!list) return;
    this._store(list);
    this._renderSelect();
    this._changed();
  }

  async remove() {
    const current = this.current;
    if (!current || !(await this._confirm(`Delete the watchlist “${current.name}”?`))) return;
    if ((await this._run(() => api(`/watchlists/${current.id}`, { method: "DELETE" }))) === FAILED) return;
    this.lists = this.lists.filter((l) => l.id !== current.id);
    this.choose(this.lists[0].id);
  }

  async addInstrument(instrumentId) {
    const current = this.current;
    if (!current) return;
    const list = await this._run(() =>
      api(`/watchlists/${current.id}/items`, { method: "POST", body: { instrument: instrumentId } }),
      "instrument",
    );
    if (list === FAILED) return;
    this._store(list);
    this._renderSelect();
    this._changed();
  }

  async removeInstrument(item) {
    const current = this.current;
    if (!current) return;
    const path = `/watchlists/${current.id}/items/${item.instrument_id}`;
    if ((await this._run(() => api(path, { method: "DELETE" }))) === FAILED) return;
    current.items = current.items.filter((i) => i.instrument_id !== item.instrument_id);
    this._renderSelect();
    this._changed();
  }
}
