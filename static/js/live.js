// The /ws feed: one WebSocket per page, reference-counted subscriptions, automatic reconnect.
//
// States (the "status" event): connecting, live, reconnecting, stale (open but the server has
// been silent past staleMs; past deadMs the socket is dropped and a new one is opened) and
// signed-out (the server closed with 4401). After every reconnect the current channels are
// subscribed again with the last seq seen of each quote channel ("since"): the server replays
// the updates missed meanwhile, in order, or answers with a snapshot when it cannot.

const CLOSE_AUTH = 4401;

export class LiveFeed extends EventTarget {
  constructor({ path = "/ws", pingMs = 10000, staleMs = 25000, deadMs = 40000 } = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = `${scheme}://${location.host}${path}`;
    this.pingMs = pingMs;
    this.staleMs = staleMs;
    this.deadMs = deadMs;
    this.counts = new Map(); // channel -> how many users of this page want it
    this.confirmed = new Set(); // channels the server confirmed on the current connection
    this.lastSeq = new Map(); // "EXCHANGE:SYMBOL" and "SYMBOL" -> seq of the last quote seen
    this.state = "connecting";
    this.ws = null;
    this.attempt = 0;
    this.lastMessageAt = 0;
    this.lastPingAt = 0;
    this.reconnects = 0;
    this.retryTimer = null;
    this.watchTimer = setInterval(() => this._watch(), 1000);
    this._connect();
  }

  get channels() {
    return [...this.counts.keys()];
  }

  /** Start following channels (symbols, "NSE:RELIANCE", "AAPL@1m"); each call is matched by a release. */
  acquire(channels) {
    const fresh = [];
    for (const channel of channels) {
      const count = this.counts.get(channel) || 0;
      this.counts.set(channel, count + 1);
      if (count === 0) fresh.push(channel);
    }
    if (fresh.length) this._send({ message_type: "subscribe", channels: fresh });
  }

  release(channels) {
    const gone = [];
    for (const channel of channels) {
      const count = this.counts.get(channel) || 0;
      if (count <= 1) {
        if (this.counts.delete(channel)) gone.push(channel);
        this.lastSeq.delete(channel);
      } else {
        this.counts.set(channel, count - 1);
      }
    }
    if (gone.length) this._send({ message_type: "unsubscribe", channels: gone });
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: state }));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _connect() {
    this.retryTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      if (this.attempt > 0) this.reconnects += 1;
      this.attempt = 0;
      this.lastMessageAt = Date.now();
      this.lastPingAt = Date.now();
      this._setState("live");
      this.confirmed.clear();
      if (this.counts.size) this._send({ message_type: "subscribe", channels: this.channels, since: this._since() });
      this._emit("open", {});
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.lastMessageAt = Date.now();
      if (this.state === "stale") this._setState("live");
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this._dispatch(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === CLOSE_AUTH) {
        this._setState("signed-out");
        return;
      }
      this._setState("reconnecting");
      this._retry();
    };
  }

  _retry() {
    if (this.retryTimer !== null) return;
    // 0.5 s, 1 s, 2 s, 4 s, then every 5 s; jittered so a restarted server is not hit all at once.
    const delay = Math.min(5000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _watch() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    const idle = now - this.lastMessageAt;
    if (idle > this.deadMs) {
      // A half-open connection may never report its close: drop it and dial again.
      this.ws = null;
      try {
        ws.close();
      } catch {
        /* already closing */
      }
      this._setState("reconnecting");
      this._retry();
      return;
    }
    if (idle > this.staleMs) this._setState("stale");
    if (now - this.lastPingAt >= this.pingMs) {
      this.lastPingAt = now;
      this._send({ message_type: "ping" });
    }
  }

  /** Last seq seen per quote channel followed (bar channels carry none), for a resuming subscribe. */
  _since() {
    const since = {};
    for (const channel of this.channels) {
      if (channel.includes("@")) continue;
      const seq = this.lastSeq.get(channel) ?? this.lastSeq.get(channel.toUpperCase());
      if (Number.isInteger(seq) && seq >= 0) since[channel] = seq;
    }
    return since;
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  _dispatch(message) {
    switch (message.message_type) {
      case "data":
      case "snapshot":
        if (Number.isInteger(message.seq)) {
          this.lastSeq.set(`${message.exchange}:${message.symbol}`, message.seq);
          this.lastSeq.set(message.symbol, message.seq);
        }
        this._emit("quote", message);
        break;
      case "resumed":
        this._emit("resumed", message);
        break;
      case "bar":
        this._emit("bar", message);
        break;
      case "error":
        this._emit("feed-error", message);
        break;
      case "info":
        // "Subscribed to X" / "Unsubscribed from X": what the server follows for this page.
        if (typeof message.message === "string") {
          const [, verb, channel] = message.message.match(/^(Subscribed to|Unsubscribed from) (.+)$/) || [];
          if (verb === "Subscribed to") this.confirmed.add(channel);
          else if (verb) this.confirmed.delete(channel);
        }
        break;
      default:
        break; // pong
    }
  }
}

export const STATE_LABELS = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  stale: "Stale",
  "signed-out": "Signed out",
};

/** Keep a status element (role=status) in step with the feed. */
export function bindIndicator(feed, element) {
  const show = (state) => {
    element.dataset.state = state;
    element.textContent = STATE_LABELS[state] || state;
    element.title =
      state === "stale"
        ? "No word from the server for a while; reconnecting if it stays silent."
        : state === "signed-out"
          ? "Your session ended; sign in again."
          : "";
  };
  show(feed.state);
  feed.addEventListener("status", (event) => show(event.detail));
}
