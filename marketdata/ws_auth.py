"""Who is on a ``/ws`` connection, and whether they still may be: token checks, renewal, re-checks.

A token is checked with simplejwt's own validation plus the accounts app's approval check
(``accounts.authentication``, read-only here), so the socket accepts what the REST API does.
Failures carry a stable ``reason`` (``AUTH_REASONS``); the text next to it is ours, not a repr.

An open connection does not keep its user forever: ``AccountWatch`` re-reads the status of
every connected user, in one query, every ``WS_AUTH_RECHECK_S`` seconds (default 2) and
closes a deactivated, deleted, pending or rejected user's sockets with 4403; a token's expiry
closes its socket with 4401 (checked every second). A client renews before expiry by sending
``{"message_type": "auth", "token": "<fresh access token>"}`` (the same user).

Token checks run off the shared sync thread (``core.db.db_sync_to_async``), so another user's
database work cannot hold a login up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from core.db import db_sync_to_async

logger = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 4096
CLOSE_AUTH = 4401
CLOSE_FORBIDDEN = 4403

# reason -> (close code, the text sent with it)
AUTH_REASONS = {
    "token_invalid": (CLOSE_AUTH, "Token is invalid."),
    "token_expired": (CLOSE_AUTH, "Token is expired; renew it with an auth message before it expires."),
    "token_wrong_type": (CLOSE_AUTH, "Token has wrong type: send an access token."),
    "token_revoked": (CLOSE_AUTH, "Token was revoked (password change, logout everywhere): sign in again."),
    "user_not_found": (CLOSE_FORBIDDEN, "The token's user does not exist."),
    "account_inactive": (CLOSE_FORBIDDEN, "User is inactive: this account is deactivated."),
    "account_pending": (
        CLOSE_FORBIDDEN,
        "account_pending: this account is waiting for an administrator's approval; no data until then.",
    ),
    "account_rejected": (CLOSE_FORBIDDEN, "account_rejected: an administrator rejected this account."),
}


@dataclass(frozen=True)
class TokenCheck:
    user: object | None = None
    expires_at: float | None = None  # epoch seconds
    reason: str | None = None
    version: int | None = None  # the user's token_version the token was issued under

    @property
    def message(self) -> str:
        return AUTH_REASONS[self.reason][1] if self.reason else ""


def _reason_of_token_error(exc) -> str:
    text = str(getattr(exc, "detail", exc)).lower()
    if "expired" in text:
        return "token_expired"
    if "wrong type" in text:
        return "token_wrong_type"
    return "token_invalid"


def check_token(raw: str) -> TokenCheck:
    """The user and expiry of a valid access token of an active, approved user, else the reason (sync)."""
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

    from accounts.authentication import AccountNotApproved, ApprovedJWTAuthentication

    if not isinstance(raw, str) or not raw or len(raw) > MAX_TOKEN_CHARS:
        return TokenCheck(reason="token_invalid")
    auth = ApprovedJWTAuthentication()
    try:
        token = auth.get_validated_token(raw.encode())
        user = auth.get_user(token)
    except AccountNotApproved as exc:
        return TokenCheck(reason=exc.account_code)
    except AuthenticationFailed as exc:
        # simplejwt's detail is a dict ({"detail": ..., "code": "user_inactive"}): its str() is a repr.
        detail = exc.detail
        code = str(detail.get("code", "")) if isinstance(detail, dict) else getattr(detail, "code", None)
        if code == "user_inactive":
            return TokenCheck(reason="account_inactive")
        if code == "user_not_found":
            return TokenCheck(reason="user_not_found")
        return TokenCheck(reason=_reason_of_token_error(exc))
    except (InvalidToken, TokenError) as exc:
        return TokenCheck(reason=_reason_of_token_error(exc))
    exp = token.get("exp")
    return TokenCheck(user=user, expires_at=float(exp) if exp is not None else None, version=_version_of(token))


def _version_of(token) -> int:
    try:
        return int(token.get("tv", 0))
    except (TypeError, ValueError):
        return -1


async def acheck_token(raw: str) -> TokenCheck:
    return await db_sync_to_async(check_token)(raw)


def user_standing(user) -> str | None:
    """Why ``user`` may not use ``/ws`` any more (a reason), or ``None``."""
    from accounts.authentication import AccountNotApproved, user_access_check

    if not getattr(user, "is_active", True):
        return "account_inactive"
    try:
        user_access_check(user)
    except AccountNotApproved as exc:
        return exc.account_code
    return None


def standings(user_ids: list[int]) -> dict[int, tuple[str | None, int]]:
    """``user id -> (reason or None, current token_version)`` for every id, in one query (sync)."""
    from django.contrib.auth import get_user_model

    users = {
        u.pk: u
        for u in get_user_model().objects.filter(pk__in=user_ids).only("pk", "is_active", "status", "token_version")
    }
    return {
        pk: (user_standing(users[pk]), users[pk].token_version) if pk in users else ("user_not_found", 0)
        for pk in user_ids
    }


class AccountWatch:
    """Re-checks the users of open connections every ``WS_AUTH_RECHECK_S``; one per event loop.

    A watched connection has ``user``, ``closed`` and ``revoke(reason)``. The task ends when
    nothing is watched, so no loop keeps a stray task.
    """

    _by_loop: dict[int, AccountWatch] = {}

    def __init__(self) -> None:
        self.connections: set = set()
        self.task: asyncio.Task | None = None

    @classmethod
    def get(cls) -> AccountWatch:
        loop = asyncio.get_running_loop()
        watch = cls._by_loop.get(id(loop))
        if watch is None or (watch.task is not None and watch.task.get_loop() is not loop):
            watch = cls._by_loop[id(loop)] = cls()
        return watch

    def add(self, connection) -> None:
        self.connections.add(connection)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="ws-account-watch")

    def discard(self, connection) -> None:
        self.connections.discard(connection)

    async def _run(self) -> None:
        interval = float(getattr(settings, "WS_AUTH_RECHECK_S", 2.0))
        while self.connections:
            await asyncio.sleep(interval)
            live = [c for c in self.connections if not c.closed and getattr(c.user, "pk", None) is not None]
            if not live:
                continue
            try:
                found = await db_sync_to_async(standings)(sorted({c.user.pk for c in live}))
            except Exception:
                logger.warning("re-checking websocket users failed", exc_info=True)
                continue
            for connection in live:
                reason, version = found.get(connection.user.pk, (None, 0))
                issued = getattr(connection, "token_version", None)
                if reason is None and issued is not None and issued != version:
                    reason = "token_revoked"  # a password change or logout-all since the token was issued
                if reason is not None and not connection.closed:
                    connection.revoke(reason)


def token_expired(expires_at: float | None, now: float | None = None) -> bool:
    return expires_at is not None and (now if now is not None else time.time()) >= expires_at


def auth_error_text(reason: str) -> str:
    """The ``error`` frame of a failed authentication: ``code`` auth_required, a stable ``reason``."""
    from marketdata.ws_protocol import message

    return message("error", code="auth_required", reason=reason, message=AUTH_REASONS[reason][1])


class ConnectionAuth:
    """The consumer's authentication steps (a mixin of ``MarketDataConsumer``, which holds
    ``user``, ``token_expires_at`` and ``token_version``: None for a session user, whose session
    ends with a password change)."""

    __slots__ = ()

    def _set_user(self, user, expires_at: float | None, version: int | None = None) -> None:
        self.user = user
        self.token_expires_at = expires_at
        self.token_version = version
        AccountWatch.get().add(self)

    def _forget_user(self) -> None:
        AccountWatch.get().discard(self)

    def revoke(self, reason: str) -> None:
        """End the connection because its user may no longer use it (from outside its task)."""
        if self.closed or self._giving_up:
            return
        self._giving_up = True
        code, text = AUTH_REASONS[reason]
        if self.seed is not None:
            from marketdata.seed_frames import error_text as seed_error_text

            frame = seed_error_text(text)
        else:
            frame = self._error_frame(reason, text)
        self.hub.spawn(self.close(code, text=frame, reason=reason))

    @staticmethod
    def _error_frame(code: str, text: str) -> str:
        from marketdata.ws_protocol import error_text

        return error_text(code, text)

    def check_expiry(self, now_epoch: float | None = None) -> None:
        if token_expired(self.token_expires_at, now_epoch) and not self.closed:
            self.revoke("token_expired")

    async def _authenticate(self, data: dict) -> None:
        """The first ``auth`` message of a connection without credentials (or anonymous so far)."""
        from marketdata.ws_protocol import message

        token = data.get("token")
        if data.get("message_type") != "auth" or not isinstance(token, str):
            await self.close(
                CLOSE_AUTH,
                error=("auth_required", 'Authenticate first: {"message_type": "auth", "token": "<JWT access token>"}.'),
            )
            return
        found = await acheck_token(token)
        if found.user is None:
            await self.close(CLOSE_AUTH, text=auth_error_text(found.reason))
            return
        self._set_user(found.user, found.expires_at, found.version)
        self._deadline = None
        if self._receive_timeout is not None:
            self._receive_timeout.reschedule(None)
        self.reply(message("info", message="Authenticated"))

    async def _renew(self, data: dict) -> None:
        """An ``auth`` message on an authenticated connection: a fresh token of the same user."""
        from marketdata.ws_protocol import message

        token = data.get("token")
        if not isinstance(token, str):
            self.reply(self._error_frame("token_invalid", AUTH_REASONS["token_invalid"][1]))
            return
        found = await acheck_token(token)
        if found.user is None:
            self.reply(auth_error_text(found.reason))
        elif found.user.pk != self.user.pk:
            self.reply(self._error_frame("token_user_mismatch", "The token is another user's; nothing changed."))
        elif self.token_expires_at is not None and (found.expires_at or 0) > self.token_expires_at:
            self.token_expires_at = found.expires_at
            self.token_version = found.version
            self.reply(message("info", message="Token renewed"))
        else:
            self.reply(message("info", message="Already authenticated"))
