"""Writes on providers and on how exchanges and instruments map onto them."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, models, transaction

from exchanges.models import Exchange
from instruments.models import Instrument

from .models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping

PROVIDER_FIELDS = ("name", "code", "kind", "settings", "credentials", "rate_limit", "is_active")
EXCHANGE_MAPPING_FIELDS = ("provider", "is_primary", "priority", "is_active")
INSTRUMENT_MAPPING_FIELDS = ("instrument", "search_code", "segment", "is_active")


def _reject_unknown(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise ValidationError({name: ["This field cannot be set."] for name in sorted(unknown)})


def _full_clean(obj: models.Model, errors: dict[str, list]) -> dict[str, list]:
    """Field validation into ``errors``; uniqueness is checked by the callers with clearer messages."""
    try:
        obj.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if NON_FIELD_ERRORS in errors:
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
    return errors


def _save(obj: models.Model, conflict: dict[str, list[str]]) -> None:
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError as exc:
        # The uniqueness checks ran before; a concurrent write of the same key lands here.
        raise ValidationError(conflict) from exc


# --- providers ---------------------------------------------------------------------------------


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _check_settings(value: Any, errors: dict[str, list]) -> None:
    if not isinstance(value, dict):
        errors.setdefault("settings", []).append(ValidationError("Settings must be a JSON object."))
    elif _has_nul(value):
        # PostgreSQL's jsonb cannot store U+0000; refuse it here rather than fail on save.
        errors.setdefault("settings", []).append(ValidationError("Settings cannot contain NUL (U+0000) characters."))


def _check_credentials(value: Any, errors: dict[str, list]) -> None:
    # The message never repeats a value: these are secrets.
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        errors.setdefault("credentials", []).append(
            ValidationError("Credentials must be a JSON object whose values are strings.")
        )


def _save_provider(provider: Provider) -> Provider:
    provider.code = (provider.code or "").strip().upper()
    provider.name = (provider.name or "").strip()
    errors: dict[str, list] = {}
    _check_settings(provider.settings, errors)
    _check_credentials(provider.credentials, errors)
    if not errors:
        errors = _full_clean(provider, errors)
    if provider.rate_limit is not None and not provider.rate_limit > 0:
        errors.setdefault("rate_limit", []).append(ValidationError("Must be more than 0 requests per second."))
    duplicate = f"A provider with the code {provider.code!r} already exists."
    if provider.code and Provider.objects.filter(code__iexact=provider.code).exclude(pk=provider.pk).exists():
        errors.setdefault("code", []).append(ValidationError(duplicate, code="unique"))
    if errors:
        raise ValidationError(errors)
    _save(provider, {"code": [duplicate]})
    return provider


def provider_create(
    *,
    name: str,
    code: str,
    kind: str,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, str] | None = None,
    rate_limit: float = 5.0,
    is_active: bool = True,
) -> Provider:
    """Create a provider. ``settings`` must be an object, ``credentials`` an object of strings (stored encrypted)."""
    provider = Provider(
        name=name,
        code=code,
        kind=kind,
        settings={} if settings is None else settings,
        credentials={} if credentials is None else credentials,
        rate_limit=rate_limit,
        is_active=is_active,
    )
    return _save_provider(provider)


def provider_update(*, provider: Provider, data: dict[str, Any]) -> Provider:
    """Set the given fields (any of ``PROVIDER_FIELDS``).

    ``settings`` and ``credentials`` are replaced as a whole: send ``{}`` to clear them.
    """
    _reject_unknown(data, PROVIDER_FIELDS)
    for name, value in data.items():
        setattr(provider, name, value)
    return _save_provider(provider)


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider with its exchange and instrument mappings (bars keep their data, lose the source)."""
    provider.delete()


# --- exchange -> provider mappings ---------------------------------------------------------------


def _save_exchange_mapping(mapping: ExchangeProviderMapping) -> ExchangeProviderMapping:
    errors = _full_clean(mapping, {})
    duplicate = f"{mapping.provider.code} already serves {mapping.exchange.code}; edit that mapping instead."
    if (
        ExchangeProviderMapping.objects.filter(exchange_id=mapping.exchange_id, provider_id=mapping.provider_id)
        .exclude(pk=mapping.pk)
        .exists()
    ):
        errors.setdefault("provider", []).append(ValidationError(duplicate, code="unique"))
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        # Serialize primary changes per exchange: the lock on the exchange row makes concurrent
        # "make X primary" requests take turns instead of tripping the one-primary constraint.
        Exchange.objects.select_for_update().filter(pk=mapping.exchange_id).first()
        if mapping.is_primary:
            ExchangeProviderMapping.objects.filter(exchange_id=mapping.exchange_id, is_primary=True).exclude(
                pk=mapping.pk
            ).update(is_primary=False)
        _save(mapping, {"provider": [duplicate]})
    return mapping


def exchange_provider_mapping_create(
    *,
    exchange: Exchange,
    provider: Provider,
    is_primary: bool = False,
    priority: int = 100,
    is_active: bool = True,
) -> ExchangeProviderMapping:
    """Let ``provider`` serve ``exchange``; making it primary demotes the previous primary in the same transaction."""
    mapping = ExchangeProviderMapping(
        exchange=exchange, provider=provider, is_primary=is_primary, priority=priority, is_active=is_active
    )
    return _save_exchange_mapping(mapping)


def exchange_provider_mapping_update(
    *, mapping: ExchangeProviderMapping, data: dict[str, Any]
) -> ExchangeProviderMapping:
    """Set the given fields (any of ``EXCHANGE_MAPPING_FIELDS``); becoming primary demotes the previous one."""
    _reject_unknown(data, EXCHANGE_MAPPING_FIELDS)
    for name, value in data.items():
        setattr(mapping, name, value)
    return _save_exchange_mapping(mapping)


def exchange_provider_mapping_delete(*, mapping: ExchangeProviderMapping) -> None:
    """Stop ``mapping.provider`` serving the exchange."""
    mapping.delete()


# --- provider -> instrument mappings -------------------------------------------------------------


def _save_instrument_mapping(mapping: ProviderInstrumentMapping) -> ProviderInstrumentMapping:
    mapping.search_code = (mapping.search_code or "").strip()
    mapping.segment = (mapping.segment or "").strip().upper()
    errors = _full_clean(mapping, {})
    others = ProviderInstrumentMapping.objects.filter(provider_id=mapping.provider_id).exclude(pk=mapping.pk)
    same_instrument = f"{mapping.provider.code} already has a mapping for this instrument; edit that one instead."
    same_code = (
        f"{mapping.provider.code} already maps {mapping.segment + '/' if mapping.segment else ''}"
        f"{mapping.search_code} to another instrument."
    )
    if mapping.instrument_id and others.filter(instrument_id=mapping.instrument_id).exists():
        errors.setdefault("instrument", []).append(ValidationError(same_instrument, code="unique"))
    if mapping.search_code and others.filter(segment=mapping.segment, search_code=mapping.search_code).exists():
        errors.setdefault("search_code", []).append(ValidationError(same_code, code="unique"))
    if errors:
        raise ValidationError(errors)
    _save(mapping, {"non_field_errors": ["This mapping conflicts with another one of the same provider."]})
    return mapping


def provider_instrument_mapping_create(
    *,
    provider: Provider,
    instrument: Instrument,
    search_code: str,
    segment: str = "",
    is_active: bool = True,
) -> ProviderInstrumentMapping:
    """Record how ``provider`` names ``instrument`` (e.g. Dhan security id and segment)."""
    mapping = ProviderInstrumentMapping(
        provider=provider, instrument=instrument, search_code=search_code, segment=segment, is_active=is_active
    )
    return _save_instrument_mapping(mapping)


def provider_instrument_mapping_update(
    *, mapping: ProviderInstrumentMapping, data: dict[str, Any]
) -> ProviderInstrumentMapping:
    """Set the given fields (any of ``INSTRUMENT_MAPPING_FIELDS``)."""
    _reject_unknown(data, INSTRUMENT_MAPPING_FIELDS)
    for name, value in data.items():
        setattr(mapping, name, value)
    return _save_instrument_mapping(mapping)


def provider_instrument_mapping_delete(*, mapping: ProviderInstrumentMapping) -> None:
    """Forget how the provider names the instrument."""
    mapping.delete()
