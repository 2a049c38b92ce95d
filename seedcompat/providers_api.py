"""The seed's provider routes: providers and how they name instruments. Admins only.

Thin over ``ingestion.services`` / ``ingestion.selectors``.

* ``provider/`` (GET, POST), ``provider/{id}`` (GET, PUT, DELETE). ``ProviderInDb`` as the seed
  shapes it, except that credentials are **write-only**: accepted on input (stored encrypted by
  our provider service), answered as ``"credentials": null`` with ``credentials_set`` beside it.
  On PUT a null (or absent) ``credentials`` keeps the stored ones, an object replaces them
  (``{}`` clears). A ``rate_limit`` of 0 or null (the seed form's "empty") means our default
  on create and "unchanged" on PUT. ``kind`` (ours) is optional: without it, it is taken from
  the code or the name (YF/YAHOO, DHAN, SIM/SIMULATED, REPLAY).
* ``provider/mapping/`` (POST, PUT: the pair provider_id + instrument_id selects the row) and
  ``provider/mapping/instrument/{id}`` (GET): ``{provider_id, instrument_id,
  provider_instrument_search_code, segment}``; ``segment`` (Dhan's exchange segment) is ours
  and optional on input.

Admins only for reads too, like our own ``/providers/``: the seed front end calls these
only from its admin pages.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import re_path
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from ingestion.api.providers import StrictCharField
from ingestion.models import Provider, ProviderInstrumentMapping
from ingestion.selectors import provider_list
from ingestion.services import (
    provider_create,
    provider_delete,
    provider_instrument_mapping_create,
    provider_instrument_mapping_update,
    provider_update,
)
from instruments.models import Instrument
from seedcompat.common import SeedApiView, seed_datetime
from seedcompat.serializers_exchanges import seed_validation_error

# A provider's kind from its code or name, when the seed's form (which has no kind) created it.
KIND_NAMES = {
    "YF": Provider.Kind.YAHOO,
    "YAHOO": Provider.Kind.YAHOO,
    "YAHOO FINANCE": Provider.Kind.YAHOO,
    "DHAN": Provider.Kind.DHAN,
    "SIM": Provider.Kind.SIMULATED,
    "SIMULATED": Provider.Kind.SIMULATED,
    "SIMULATOR": Provider.Kind.SIMULATED,
    "REPLAY": Provider.Kind.REPLAY,
}
MAPPING_ERROR_KEYS = {"search_code": "provider_instrument_search_code", "instrument": "instrument_id"}


def provider_data(provider: Provider) -> dict[str, Any]:
    """ProviderInDb without the secrets: ``credentials`` is always null."""
    return {
        "id": provider.pk,
        "name": provider.name,
        "code": provider.code,
        "kind": provider.kind,
        "credentials": None,
        "credentials_set": provider.credentials_set,
        "rate_limit": provider.rate_limit,
        "created_at": seed_datetime(provider.created_at),
        "updated_at": seed_datetime(provider.updated_at),
        "is_active": provider.is_active,
    }


def mapping_data(mapping: ProviderInstrumentMapping) -> dict[str, Any]:
    return {
        "provider_id": mapping.provider_id,
        "instrument_id": mapping.instrument_id,
        "provider_instrument_search_code": mapping.search_code,
        "segment": mapping.segment,
    }


class ProviderInputSerializer(serializers.Serializer):
    """The seed's ProviderCreate/ProviderUpdate, plus our optional ``kind``. Unknown keys are ignored."""

    name = serializers.CharField()
    code = serializers.CharField()
    kind = serializers.ChoiceField(choices=Provider.Kind.choices, required=False)
    # Error messages of this field never repeat a value: these are secrets.
    credentials = serializers.DictField(
        child=StrictCharField(allow_blank=True, trim_whitespace=False), allow_null=True, required=False
    )
    rate_limit = serializers.FloatField(allow_null=True, required=False, min_value=0, max_value=10_000)
    is_active = serializers.BooleanField(required=False)

    def service_data(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        # Null credentials keep the stored ones; a 0 or null rate limit is the seed form's "empty".
        if data.get("credentials", 0) is None:
            del data["credentials"]
        if "rate_limit" in data and not data["rate_limit"]:
            del data["rate_limit"]
        return data


def _kind_for(data: dict[str, Any]) -> str:
    for value in (data.get("code"), data.get("name")):
        kind = KIND_NAMES.get((value or "").strip().upper())
        if kind is not None:
            return kind
    choices = ", ".join(Provider.Kind.values)
    raise serializers.ValidationError(
        {"kind": [f"Unknown provider: name a known code (YF, DHAN, SIM, REPLAY) or send kind ({choices})."]}
    )


def _provider(provider_id) -> Provider:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise NotFound("Provider not found")
    return provider


def _instrument(instrument_id) -> Instrument:
    instrument = Instrument.objects.filter(pk=instrument_id).first()
    if instrument is None:
        raise NotFound("Instrument not found")
    return instrument


# --- providers -----------------------------------------------------------------------------------


class ProviderListView(SeedApiView):
    admin_only = True

    def get(self, request: Request) -> Response:
        return Response([provider_data(provider) for provider in provider_list().order_by("id")])

    def post(self, request: Request) -> Response:
        serializer = ProviderInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.service_data()
        if "kind" not in data:
            data["kind"] = _kind_for(data)
        try:
            provider = provider_create(**data)
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, {}) from exc
        return Response(provider_data(provider), status=status.HTTP_201_CREATED)


class ProviderDetailView(SeedApiView):
    admin_only = True

    def get(self, request: Request, provider_id: str) -> Response:
        return Response(provider_data(_provider(provider_id)))

    def put(self, request: Request, provider_id: str) -> Response:
        provider = _provider(provider_id)
        serializer = ProviderInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            provider = provider_update(provider=provider, data=serializer.service_data())
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, {}) from exc
        return Response(provider_data(provider))

    def delete(self, request: Request, provider_id: str) -> Response:
        provider_delete(provider=_provider(provider_id))
        return Response({"message": "Provider deleted successfully"})


# --- provider <-> instrument mappings ------------------------------------------------------------------


class MappingInputSerializer(serializers.Serializer):
    provider_id = serializers.IntegerField()
    instrument_id = serializers.IntegerField()
    provider_instrument_search_code = serializers.CharField(max_length=64)
    segment = serializers.CharField(max_length=16, allow_blank=True, required=False)


class ProviderMappingView(SeedApiView):
    admin_only = True

    def post(self, request: Request) -> Response:
        serializer = MappingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        provider = _provider(data["provider_id"])
        instrument = _instrument(data["instrument_id"])
        try:
            mapping = provider_instrument_mapping_create(
                provider=provider,
                instrument=instrument,
                search_code=data["provider_instrument_search_code"],
                segment=data.get("segment", ""),
            )
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, MAPPING_ERROR_KEYS) from exc
        return Response(mapping_data(mapping), status=status.HTTP_201_CREATED)

    def put(self, request: Request) -> Response:
        serializer = MappingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        mapping = (
            ProviderInstrumentMapping.objects.select_related("provider")
            .filter(provider_id=data["provider_id"], instrument_id=data["instrument_id"])
            .first()
        )
        if mapping is None:
            raise NotFound("Provider-Instrument mapping not found")
        changes = {"search_code": data["provider_instrument_search_code"]}
        if "segment" in data:
            changes["segment"] = data["segment"]
        try:
            mapping = provider_instrument_mapping_update(mapping=mapping, data=changes)
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, MAPPING_ERROR_KEYS) from exc
        return Response(mapping_data(mapping))


class InstrumentMappingsView(SeedApiView):
    admin_only = True

    def get(self, request: Request, instrument_id: str) -> Response:
        instrument = _instrument(instrument_id)
        mappings = ProviderInstrumentMapping.objects.filter(instrument=instrument).order_by("id")
        return Response([mapping_data(mapping) for mapping in mappings])


urlpatterns = [
    re_path(r"^provider/?$", ProviderListView.as_view(), name="seed-provider-list"),
    re_path(r"^provider/mapping/?$", ProviderMappingView.as_view(), name="seed-provider-mapping"),
    re_path(
        r"^provider/mapping/instrument/(?P<instrument_id>[0-9]+)/?$",
        InstrumentMappingsView.as_view(),
        name="seed-provider-mapping-instrument",
    ),
    re_path(r"^provider/(?P<provider_id>[0-9]+)/?$", ProviderDetailView.as_view(), name="seed-provider-detail"),
]
