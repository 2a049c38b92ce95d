"""Dhan access tokens kept fresh: renewed before they expire, stored encrypted, reported.

A Dhan token lives 24 hours (its JWT ``exp``). Once less than ``DHAN_TOKEN_RENEW_BEFORE_S``
remains, ``dhan_token_renew`` asks Dhan's ``RenewToken`` for a new one (at the provider's
``rest_url``, which ``provider_urls`` confines to Dhan's hosts) and stores it in the provider's
encrypted credentials; the feed client restarts with it at the next routing refresh. It runs
from the runtime of every process that streams a Dhan provider (Celery stream, ``ingest``,
``runmarket``) every ``DHAN_TOKEN_CHECK_S``, and from the Celery beat task
``ingestion.renew_dhan_tokens`` (so backfill keeps a live token while no stream runs). The
provider row is locked while renewing, so two processes never renew the same token twice.

The outcome of the last attempt (``ok`` or ``failed`` with its error) is kept in the cache for
the status pages and ``/health/``; a failure is logged as an ERROR starting with
``Dhan token renewal failed`` (the alert to watch for).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from ingestion.models import Provider
from ingestion.provider_urls import provider_url_problems
from ingestion.providers.dhan_token import DhanTokenError, renew_token, token_expiry

logger = logging.getLogger(__name__)

STATE_TTL_S = 3 * 24 * 3600
FAILED_ALERT = "Dhan token renewal failed"
UNREADABLE = "stored credentials unreadable with the current CREDENTIALS_KEY"


def _state_key(code: str) -> str:
    return f"dhan-token:{code}"


def _record(code: str, renewal: str, error: str = "") -> None:
    try:
        cache.set(_state_key(code), {"renewal": renewal, "error": error, "at": datetime.now(UTC)}, STATE_TTL_S)
    except Exception:  # the cache being away must not undo a renewal already stored
        logger.warning("could not record the Dhan token renewal of %s", code, exc_info=True)


def dhan_token_status(*, provider: Provider) -> dict:
    """``expires_at`` (from the stored token's JWT ``exp``; ``None`` when unknown), ``expired``,
    and the last renewal: ``renewal`` (``ok``, ``failed`` or ``None``), ``renewal_error``,
    ``renewal_at``."""
    try:
        token = str(_credentials(provider).get("access_token") or "")
    except ImproperlyConfigured:
        token, unreadable = "", UNREADABLE
    else:
        unreadable = ""
    expires_at = token_expiry(token) if token else None
    try:
        state = cache.get(_state_key(provider.code)) or {}
    except Exception:
        state = {}
    return {
        "expires_at": expires_at,
        "expired": expires_at is not None and expires_at <= datetime.now(UTC),
        "renewal": "failed" if unreadable else state.get("renewal"),
        "renewal_error": unreadable or state.get("error", ""),
        "renewal_at": state.get("at"),
    }


def _credentials(provider: Provider) -> dict:
    """The stored credentials; the admin's list defers the column and annotates the raw token."""
    raw = getattr(provider, "credentials_raw", None)
    if raw is not None:
        return Provider._meta.get_field("credentials").to_python(raw) or {}
    return provider.credentials or {}


def _fail(code: str, error: str) -> dict:
    logger.error("%s for %s: %s", FAILED_ALERT, code, error)
    _record(code, "failed", error)
    return {"provider": code, "renewed": False, "error": error}


def dhan_token_renew(*, provider_code: str, force: bool = False) -> dict:
    """Renew a Dhan provider's token when less than ``DHAN_TOKEN_RENEW_BEFORE_S`` remains (or ``force``).

    Returns ``{"provider", "renewed", "expires_at"}`` when renewed, ``{"provider", "renewed":
    False, "skipped": why}`` when nothing was due, ``{"provider", "renewed": False, "error"}``
    when Dhan refused (logged as an ERROR and recorded for the status).
    """
    with transaction.atomic():
        # Deferred: a column the current key cannot decrypt fails below, as a renewal failure.
        provider = (
            Provider.objects.select_for_update().defer("credentials").get(code=provider_code, kind=Provider.Kind.DHAN)
        )
        try:
            credentials = dict(provider.credentials or {})
        except ImproperlyConfigured:
            return _fail(provider_code, UNREADABLE)
        token = str(credentials.get("access_token") or "").strip()
        client_id = str(credentials.get("client_id") or "").strip()
        if not token or not client_id:
            return {"provider": provider.code, "renewed": False, "skipped": "no access_token or client_id"}
        expires_at = token_expiry(token)
        if not force:
            if expires_at is None:
                return {"provider": provider.code, "renewed": False, "skipped": "expiry unknown (no JWT exp)"}
            if expires_at - datetime.now(UTC) > timedelta(seconds=settings.DHAN_TOKEN_RENEW_BEFORE_S):
                return {"provider": provider.code, "renewed": False, "skipped": "not due"}
        rest_url = str(provider.effective_settings().get("rest_url") or "")
        if problems := provider_url_problems(provider.kind, {"rest_url": rest_url}):
            return _fail(provider.code, " ".join(problems))
        try:
            renewed = renew_token(access_token=token, client_id=client_id, rest_url=rest_url)
        except DhanTokenError as exc:
            return _fail(provider.code, str(exc))
        provider.credentials = {**credentials, "access_token": renewed.access_token}
        provider.save(update_fields=["credentials", "updated_at"])
    _record(provider.code, "ok")
    logger.info("Dhan token of %s renewed; it expires at %s", provider.code, renewed.expires_at)
    return {"provider": provider.code, "renewed": True, "expires_at": renewed.expires_at}


def dhan_tokens_renew_due(*, provider_codes: list[str] | None = None) -> list[dict]:
    """``dhan_token_renew`` for every active Dhan provider (or those named); one failing never stops the rest."""
    providers = Provider.objects.filter(kind=Provider.Kind.DHAN, is_active=True)
    if provider_codes is not None:
        providers = providers.filter(code__in=provider_codes)
    results = []
    for code in providers.order_by("code").values_list("code", flat=True):
        try:
            results.append(dhan_token_renew(provider_code=code))
        except Exception as exc:  # a bug or a lost database: report it like a refusal
            logger.exception("%s for %s", FAILED_ALERT, code)
            _record(code, "failed", f"{type(exc).__name__}: {exc}")
            results.append({"provider": code, "renewed": False, "error": f"{type(exc).__name__}: {exc}"})
    return results
