"""The live market data WebSocket, ``/ws``: subscribe to symbols, receive quotes and 1m bars.

The protocol is the seed design's (see docs/ARCHITECTURE.md, "WebSocket protocol"). Each connection is
one ``MarketDataConsumer``: it reads client frames in its own task, and an ``Outbox`` task
writes to the client. Live updates reach the outbox through the process's ``FanoutHub``
as the engine's pre-serialized JSON text, forwarded unchanged.

The limits are ``ws_protocol.WsLimits`` (settings ``WS_*``).

Two protocols, negotiated per connection by its first frame (an ``auth`` message does not
count): a JSON object with an INTEGER ``message_type`` (the seed front end's ``{"message_type": 1,
"channel": "AAPL"}``) makes the connection speak the seed protocol for its lifetime
(``ws_seed.SeedSession``: JSON snapshots and binary update frames); anything else is ours.

Authentication (see ``ws_auth``): session cookie, the ``bearer.<token>`` subprotocol, ``?token=``
or an ``auth`` message within ``WS_AUTH_TIMEOUT_S``. The user is re-checked while the socket is
open (4403 when deactivated or not approved any more, 4401 when the token expires; a fresh
token in an ``auth`` message renews it).
With ``WS_ALLOW_ANONYMOUS`` a connection without credentials may subscribe to quotes right
away, in either protocol (the seed front end cannot send a token); it may still authenticate.
A silent client is never dropped: only one that stops READING (``check_stuck``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings

from marketdata.live.hub import FanoutHub, LiveInstrument, ResolveError, get_hub
from marketdata.live.outbox import WRITE_TEXT_EXTENSION, Outbox
from marketdata.live.protocol import bar_group, quote_group, quote_texts
from marketdata.live.store import QuoteResume
from marketdata.seed_frames import error_text as seed_error_text
from marketdata.seed_frames import is_seed_message
from marketdata.ws_auth import CLOSE_AUTH, ConnectionAuth, auth_error_text
from marketdata.ws_middleware import (
    SCOPE_AUTH_ERROR,
    SCOPE_BACKLOG,
    SCOPE_RAW_SEND,
    SCOPE_SUBPROTOCOL,
    SCOPE_TOKEN_EXPIRES,
    SCOPE_TOKEN_VERSION,
)
from marketdata.ws_protocol import (
    PONG,
    ProtocolError,
    TokenBucket,
    WsLimits,
    batch_ack,
    channel_names,
    decode_frame,
    error_text,
    message,
    options_batch_ms,
    parse_channel,
    query_batch_ms,
    resume_since,
)
from marketdata.ws_seed import SeedSession

logger = logging.getLogger(__name__)

CLOSE_STUCK = 4408
CLOSE_GRACE_S = 5.0  # how long to wait for the client to acknowledge our close
SEED_AUTH_REQUIRED = (
    "Authentication required: connect with ?token=<JWT access token> "
    "(anonymous connections are allowed only with WS_ALLOW_ANONYMOUS=true)."
)


class MarketDataConsumer(ConnectionAuth):
    """One ``/ws`` connection (an ASGI application instance).

    Slotted: ten thousand idle connections are mostly their containers (README, Performance).
    """

    __slots__ = (
        "_deadline",
        "_giving_up",
        "_negotiated",
        "_rate_error_at",
        "_receive_timeout",
        "anonymous",
        "bucket",
        "closed",
        "groups",
        "hub",
        "limits",
        "names",
        "outbox",
        "scope",
        "seed",
        "send",
        "token_expires_at",
        "token_version",
        "user",
    )

    @classmethod
    def as_asgi(cls):
        async def app(scope, receive, send):
            await cls(scope, send).run(receive)

        app.consumer_class = cls
        return app

    def __init__(self, scope: dict, send) -> None:
        self.scope = scope
        self.send = send
        self.limits = WsLimits.from_settings()
        self.user = None
        self.token_expires_at: float | None = None
        self.token_version: int | None = None
        self.anonymous = False  # no credentials, let in by WS_ALLOW_ANONYMOUS
        self.closed = False
        self.hub: FanoutHub | None = None
        self.outbox: Outbox | None = None
        # group -> instrument, for every channel this connection follows
        self.groups: dict[str, LiveInstrument] = {}
        # channel string as the client wrote it -> group (unsubscribe without a lookup)
        self.names: dict[str, str] = {}
        self.bucket = TokenBucket(self.limits.messages_per_second)
        self._rate_error_at = 0.0
        self._giving_up = False
        self._receive_timeout: asyncio.Timeout | None = None
        self._deadline: float | None = None
        self.seed: SeedSession | None = None  # set when the first frame asks for the seed protocol
        self._negotiated = False

    # --- life cycle ---------------------------------------------------------------------------
    async def run(self, receive) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        accept = {"type": "websocket.accept"}
        if self.scope.get(SCOPE_SUBPROTOCOL):
            accept["subprotocol"] = self.scope[SCOPE_SUBPROTOCOL]
        await self.send(accept)
        loop = asyncio.get_running_loop()
        self.hub = get_hub()
        self.outbox = Outbox(
            # websocket.send frames skip the session middleware's send wrapper (see ws_middleware)
            self.scope.get(SCOPE_RAW_SEND) or self.send,
            max_pending=self.limits.send_queue,
            max_replies=2 * self.limits.send_queue,
            backlog=self.scope.get(SCOPE_BACKLOG),
            backlog_limit=self.limits.transport_buffer_bytes,
            write_now=(self.scope.get("extensions") or {}).get(WRITE_TEXT_EXTENSION),
        )
        batch_ms, problem = query_batch_ms(self.scope.get("query_string") or b"")
        if batch_ms:
            self.outbox.set_batch(batch_ms)
        elif problem is not None:
            self.error(problem.code, problem.message)
        self.outbox.start()
        self.hub.register(self)
        try:
            user = self.scope.get("user")
            if self.scope.get(SCOPE_AUTH_ERROR):
                await self.close(CLOSE_AUTH, text=auth_error_text(self.scope[SCOPE_AUTH_ERROR]))
            elif user is not None and user.is_authenticated:
                self._set_user(user, self.scope.get(SCOPE_TOKEN_EXPIRES), self.scope.get(SCOPE_TOKEN_VERSION))
            elif getattr(settings, "WS_ALLOW_ANONYMOUS", False):
                self.anonymous = True
            else:
                self._deadline = loop.time() + self.limits.auth_timeout_s
            while True:
                try:
                    async with asyncio.timeout_at(self._deadline) as self._receive_timeout:
                        try:
                            event = await receive()
                        finally:
                            self._receive_timeout = None
                except TimeoutError:
                    if self.closed:
                        return  # the client never acknowledged our close
                    await self.close(
                        CLOSE_AUTH,
                        error=("auth_required", f"No auth message within {self.limits.auth_timeout_s:g} s."),
                    )
                    continue
                kind = event["type"]
                if kind == "websocket.receive":
                    if not self.closed:
                        await self.on_frame(event)
                elif kind == "websocket.disconnect":
                    return
        finally:
            await self._release()

    async def _release(self) -> None:
        """Leave every group and stop sending (idempotent)."""
        self._forget_user()
        if self.hub is not None:
            self.hub.unregister(self)
            if self.seed is not None:
                self.seed.release()
            for group in self.groups:
                self.hub.leave(group, self.outbox)
        self.groups.clear()
        self.names.clear()
        if self.outbox is not None:
            await self.outbox.stop()

    async def close(
        self, code: int, *, error: tuple[str, str] | None = None, text: str | None = None, reason: str | None = None
    ) -> None:
        """Send an optional error (``error``: ours; ``text``: as is), then close; wait for the client's close frame."""
        if self.closed:
            return
        self.closed = True
        await self._release()
        try:
            # A stuck client may not take even these; uvicorn's send would wait forever.
            async with asyncio.timeout(1.0):
                if error is not None:
                    text = error_text(*error)
                if text is not None:
                    await self.send({"type": "websocket.send", "text": text})
                close = {"type": "websocket.close", "code": code}
                if reason is not None:
                    close["reason"] = reason
                await self.send(close)
        except Exception as exc:
            logger.debug("closing a websocket failed: %r", exc)
        self._deadline = asyncio.get_running_loop().time() + CLOSE_GRACE_S
        if self._receive_timeout is not None:
            self._receive_timeout.reschedule(self._deadline)

    def check_stuck(self, now: float) -> None:
        """Called by the hub's watchdog: disconnect a client that made no progress for too long."""
        outbox = self.outbox
        if self.closed or self._giving_up or outbox is None:
            return
        self.check_expiry()
        if self._giving_up:
            return
        since = [t for t in (outbox.busy_since, outbox.full_since) if t is not None]
        if since and now - min(since) > self.limits.stuck_timeout_s:
            logger.warning(
                "closing stuck websocket client %s (user %s): no progress for %.1f s, "
                "%d channels pending, %d updates conflated, %d dropped",
                self.scope.get("client"),
                getattr(self.user, "pk", None),
                now - min(since),
                len(outbox.pending),
                outbox.conflated,
                outbox.dropped,
            )
            self._give_up()

    # --- client frames ------------------------------------------------------------------------
    def reply(self, text: str) -> None:
        if not self.outbox.reply(text) and not self._giving_up:
            logger.warning("closing websocket client %s: it does not read its replies", self.scope.get("client"))
            self._give_up()

    def _give_up(self) -> None:
        """Close a client that does not keep up, from outside its own task (once)."""
        self._giving_up = True
        self.hub.stats.stuck_disconnects += 1
        self.hub.spawn(self.close(CLOSE_STUCK))

    def error(self, code: str, text: str, channel: str | None = None) -> None:
        self.reply(error_text(code, text, channel))

    async def on_frame(self, event: dict) -> None:
        if not self.bucket.take():
            if self.seed is None:
                now = time.monotonic()
                if now - self._rate_error_at >= 1.0:  # one error a second, not one per dropped frame
                    self._rate_error_at = now
                    self.error(
                        "rate_limited",
                        f"More than {self.limits.messages_per_second:g} messages per second; this one was ignored.",
                    )
                return
            # The seed front end subscribes row by row and would never learn of a dropped
            # SUBSCRIBE: its frames wait instead (the server stops reading the socket meanwhile).
            while not self.bucket.take():  # noqa: ASYNC110 - a token is a matter of time
                await asyncio.sleep(self.bucket.wait_s())
            if self.closed:
                return
        data: dict | None = None
        problem: ProtocolError | None = None
        try:
            data = decode_frame(event, self.limits.max_frame_bytes)
        except ProtocolError as exc:
            problem = exc
        if not self._negotiated and (data is None or data.get("message_type") != "auth"):
            self._negotiated = True
            if is_seed_message(data):
                if self.user is None and not self.anonymous:
                    await self.close(CLOSE_AUTH, text=seed_error_text(SEED_AUTH_REQUIRED))
                    return
                self.seed = SeedSession(self)
        if self.seed is not None:
            await self.seed.on_message(data, problem)
            return
        if self.user is None and not self.anonymous:
            await self._authenticate(data or {})
            return
        try:
            if problem is not None:
                raise problem
            await self.handle(data)
        except ProtocolError as exc:
            self.error(exc.code, exc.message)

    async def handle(self, data: dict) -> None:
        kind = data.get("message_type")
        if kind == "subscribe":
            names = channel_names(data, self.limits.max_names_per_frame)
            await self.subscribe(names, resume_since(data, names, self.limits.max_names_per_frame))
        elif kind == "unsubscribe":
            await self.unsubscribe(channel_names(data, self.limits.max_names_per_frame))
        elif kind == "ping":
            self.reply(PONG)
        elif kind == "options":
            batch_ms = options_batch_ms(data)
            self.outbox.set_batch(batch_ms)
            self.reply(batch_ack(batch_ms))
        elif kind == "auth":
            if self.user is None:  # anonymous so far (WS_ALLOW_ANONYMOUS)
                await self._authenticate(data)
            else:
                await self._renew(data)
        else:
            raise ProtocolError(
                "unknown_message_type", "Unknown message_type; use subscribe, unsubscribe, ping, options or auth."
            )

    # --- subscriptions ------------------------------------------------------------------------
    async def _resolve(self, names: list[str]) -> list[tuple[str, str | None, LiveInstrument | None]]:
        """``(name, group, instrument)`` per name; errors are reported and give ``group=None``."""
        if len(names) > self.limits.max_subscriptions:
            raise ProtocolError(
                "too_many_subscriptions", f"At most {self.limits.max_subscriptions} channels per connection."
            )
        parsed = []
        for name in names:
            try:
                parsed.append((name, *parse_channel(name)))
            except ProtocolError as exc:
                self.error(exc.code, exc.message, name)
        try:
            found = await self.hub.resolver.resolve_many(base for _, base, _ in parsed)
        except Exception:
            logger.exception("resolving websocket channels failed")
            raise ProtocolError("unavailable", "Symbols cannot be looked up right now; try again.") from None
        # Names that lead nowhere cost the client like frames, so guessing is slow.
        self.bucket.charge(len(names) - len(parsed) + sum(isinstance(found[b], ResolveError) for _, b, _ in parsed))
        out = []
        for name, base, bars in parsed:
            result = found[base]
            if isinstance(result, ResolveError):
                self.error(result.code, result.message, name)
                out.append((name, None, None))
                continue
            group = bar_group(result.instrument_id) if bars else quote_group(result.instrument_id)
            out.append((name, group, result))
        return out

    async def subscribe(self, names: list[str], since: dict[str, int] | None = None) -> None:
        """Join each channel: ``info``, then a snapshot, or with ``since`` what the client missed (``_resume``)."""
        hub, outbox = self.hub, self.outbox
        snapshots: dict[str, LiveInstrument] = {}
        resumes: dict[str, tuple[str, LiveInstrument, int]] = {}  # group -> (name, instrument, since)
        for name, group, instrument in await self._resolve(names):
            if group is None or self.closed:
                continue
            new = group not in self.groups
            if new and len(self.groups) >= self.limits.max_subscriptions:
                self.error(
                    "too_many_subscriptions",
                    f"At most {self.limits.max_subscriptions} channels per connection; unsubscribe from some first.",
                    name,
                )
                continue
            if since and name in since and group.startswith("quote."):
                outbox.begin_resume(group)
                resumes[group] = (name, instrument, since[name])
                snapshots.pop(group, None)
            elif group.startswith("quote."):
                outbox.expect_snapshot(group)
                snapshots[group] = instrument
                resumes.pop(group, None)
            if new:
                try:
                    await hub.join(group, outbox)
                except Exception:
                    logger.exception("joining channel-layer group %s failed", group)
                    snapshots.pop(group, None)
                    if resumes.pop(group, None) is not None:
                        outbox.discard(group)
                    self.error("unavailable", f"Live data for {name} is unavailable right now; try again.", name)
                    continue
                if self.closed:  # released while we were joining
                    hub.leave(group, outbox)
                    return
                self.groups[group] = instrument
            # No await since the join returned: this goes out before any update of the channel.
            self.reply(message("info", message=f"Subscribed to {name}"))
            if len(self.names) < 4 * self.limits.max_subscriptions:
                self.names[name] = group
        if snapshots:
            await self._send_snapshots(snapshots)
        if resumes:
            await self._resume(resumes)

    async def _resume(self, resumes: dict[str, tuple[str, LiveInstrument, int]]) -> None:
        """Per resumed channel: a ``resumed`` reply, then the missed updates in order, or a snapshot.

        The live updates that came in since the join were held by the outbox; it sends those
        newer than the replay after it, so there is neither a gap nor a duplicate.
        """
        by_id = {
            instrument.instrument_id: (group, name, instrument, seq)
            for group, (name, instrument, seq) in resumes.items()
        }
        try:
            found: dict[int, QuoteResume] = await self.hub.quotes_since({i: seq for i, (*_, seq) in by_id.items()})
        except Exception:
            logger.warning("reading quote histories from the tick store failed", exc_info=True)
            found = {}
        room = self.outbox.replay_room()
        for instrument_id, (group, name, instrument, seq) in by_id.items():
            if self.closed:
                return
            if group not in self.groups:
                continue  # left while the history was read
            resume = found.get(instrument_id)
            latest = resume.latest if resume is not None else None
            symbol, exchange = instrument.symbol, instrument.exchange
            if resume is not None and resume.recovered and len(resume.missed) <= room:
                room -= len(resume.missed)
                texts = [quote_texts.get(quote, symbol, exchange) for quote in resume.missed]
                last_seq, recovered = seq, True
                if resume.missed:
                    last_seq = resume.missed[-1].seq
            else:
                texts = []
                if latest is not None:
                    texts.append(quote_texts.get(latest, symbol, exchange, "snapshot", recovered=False))
                last_seq, recovered = (latest.seq if latest is not None else -1), False
            gapless = self.outbox.end_resume(group, texts, last_seq)
            self.reply(
                message(
                    "resumed",
                    channel=name,
                    recovered=recovered and gapless,
                    replayed=len(texts) if recovered else 0,
                    seq=latest.seq if latest is not None else None,
                )
            )
            await asyncio.sleep(0)  # encoding a long replay: let the other connections run between channels

    async def _send_snapshots(self, snapshots: dict[str, LiveInstrument]) -> None:
        by_id = {instrument.instrument_id: (group, instrument) for group, instrument in snapshots.items()}
        try:
            quotes = await self.hub.latest_quotes(list(by_id))
        except Exception:
            logger.warning("reading snapshots from the tick store failed", exc_info=True)
            return
        for instrument_id, quote in quotes.items():
            group, instrument = by_id[instrument_id]
            self.outbox.snapshot(
                group,
                quote_texts.get(quote, instrument.symbol, instrument.exchange, "snapshot"),
                seq=quote.seq,
            )

    async def unsubscribe(self, names: list[str]) -> None:
        unknown = [name for name in names if name not in self.names]
        resolved = {name: group for name, group, _ in await self._resolve(unknown)} if unknown else {}
        for name in names:
            group = self.names.get(name) or resolved.get(name)
            if group is None:
                continue  # already answered with unknown_symbol / ambiguous_symbol
            if group not in self.groups:
                self.error("not_subscribed", f"Not subscribed to {name}.", name)
                continue
            del self.groups[group]
            self.hub.leave(group, self.outbox)
            self.outbox.discard(group)
            self.names = {n: g for n, g in self.names.items() if g != group}
            self.reply(message("info", message=f"Unsubscribed from {name}"))
