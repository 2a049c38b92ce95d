"""The seed's exchange routes: exchanges, their provider mappings and their holiday rows.

Thin over ``exchanges.services`` / ``exchanges.selectors`` and ``ingestion.services`` /
``ingestion.selectors``; shapes in ``seedcompat.serializers_exchanges``.

* ``exchange/`` (GET: active exchanges, id ascending, with today's holiday rows; POST admin),
  ``exchange/{id}`` (GET; PUT and DELETE admin). PUT applies every key sent (null clears).
* ``exchange/{id}/providers`` (GET, admin) and ``exchange/{id}/providers/{provider_id}``
  (POST, PUT, DELETE, admin).
* ``exchange/{id}/holidays`` (GET), ``exchange/holidays`` (POST, admin),
  ``exchange/holidays/{holiday_id}`` (PUT, DELETE, admin).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import re_path
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.params import query_flag
from exchanges.models import Exchange, ExchangeHoliday
from exchanges.selectors import exchange_holiday_list
from exchanges.services import (
    ExchangeInUseError,
    exchange_create,
    exchange_delete,
    exchange_holiday_create,
    exchange_holiday_delete,
    exchange_holiday_update,
    exchange_update,
)
from ingestion.models import ExchangeProviderMapping, Provider
from ingestion.selectors import exchange_provider_mapping_list
from ingestion.services import (
    exchange_provider_mapping_create,
    exchange_provider_mapping_delete,
    exchange_provider_mapping_update,
)
from seedcompat.common import SeedApiView
from seedcompat.serializers_exchanges import (
    EXCHANGE_ERROR_KEYS,
    HOLIDAY_ERROR_KEYS,
    ExchangeInputSerializer,
    HolidayCreateSerializer,
    HolidayInputSerializer,
    MappingCreateSerializer,
    MappingUpdateSerializer,
    exchange_data,
    exchanges_data,
    holiday_data,
    mapping_data,
    seed_validation_error,
)


class ReadOpenWriteAdminView(SeedApiView):
    """Signed-in users read; writes need the admin role."""

    @property
    def admin_only(self) -> bool:
        return self.request.method not in SAFE_METHODS


def _exchange(exchange_id: str) -> Exchange:
    exchange = Exchange.objects.filter(pk=exchange_id).first()
    if exchange is None:
        raise NotFound("Exchange not found")
    return exchange


def _provider(provider_id) -> Provider:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise NotFound("Provider not found")
    return provider


def _valid(serializer):
    serializer.is_valid(raise_exception=True)
    return serializer


# --- exchanges -----------------------------------------------------------------------------------


class ExchangeListView(ReadOpenWriteAdminView):
    def get(self, request: Request) -> Response:
        return Response(exchanges_data(Exchange.objects.filter(is_active=True).order_by("id")))

    def post(self, request: Request) -> Response:
        data = _valid(ExchangeInputSerializer(data=request.data)).service_data()
        try:
            exchange = exchange_create(**data)
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, EXCHANGE_ERROR_KEYS) from exc
        return Response(exchange_data(exchange), status=status.HTTP_201_CREATED)


class ExchangeDetailView(ReadOpenWriteAdminView):
    def get(self, request: Request, exchange_id: str) -> Response:
        return Response(exchanges_data([_exchange(exchange_id)])[0])

    def put(self, request: Request, exchange_id: str) -> Response:
        exchange = _exchange(exchange_id)
        # Every key sent is applied (null clears it); keys not sent are kept.
        data = _valid(ExchangeInputSerializer(data=request.data, partial=True)).service_data()
        try:
            exchange = exchange_update(exchange=exchange, data=data)
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, EXCHANGE_ERROR_KEYS) from exc
        return Response(exchanges_data([exchange])[0])

    def delete(self, request: Request, exchange_id: str) -> Response:
        exchange = _exchange(exchange_id)
        try:
            kept = exchange_delete(exchange=exchange, force=query_flag(request, "force"))
        except ExchangeInUseError as exc:
            raise Conflict(str(exc)) from exc
        if kept is not None:
            return Response({"message": "Exchange deactivated: it still has instruments"})
        return Response({"message": "Exchange deleted successfully"})


# --- provider mappings of an exchange --------------------------------------------------------------


class ExchangeProvidersView(SeedApiView):
    admin_only = True

    def get(self, request: Request, exchange_id: str) -> Response:
        mappings = exchange_provider_mapping_list(exchange=_exchange(exchange_id))
        return Response([mapping_data(mapping) for mapping in mappings])


class ExchangeProviderView(SeedApiView):
    admin_only = True

    def _mapping(self, exchange_id: str, provider_id: str) -> ExchangeProviderMapping:
        _exchange(exchange_id)
        mapping = ExchangeProviderMapping.objects.filter(exchange_id=exchange_id, provider_id=provider_id).first()
        if mapping is None:
            raise NotFound("Mapping not found")
        return mapping

    def post(self, request: Request, exchange_id: str, provider_id: str) -> Response:
        data = dict(_valid(MappingCreateSerializer(data=request.data)).validated_data)
        # The body repeats the path's ids (the seed's form sends all four keys); absent ones are the path's.
        body_ids = (data.pop("exchange_id", int(exchange_id)), data.pop("provider_id", int(provider_id)))
        if body_ids != (int(exchange_id), int(provider_id)):
            raise ValidationError("Provider or exchange ID mismatch")
        exchange = _exchange(exchange_id)
        provider = _provider(provider_id)
        if ExchangeProviderMapping.objects.filter(exchange=exchange, provider=provider).exists():
            raise ValidationError("Mapping already exists")
        try:
            mapping = exchange_provider_mapping_create(exchange=exchange, provider=provider, **data)
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, {}) from exc
        return Response(mapping_data(mapping), status=status.HTTP_201_CREATED)

    def put(self, request: Request, exchange_id: str, provider_id: str) -> Response:
        mapping = self._mapping(exchange_id, provider_id)
        data = _valid(MappingUpdateSerializer(data=request.data)).validated_data
        try:
            mapping = exchange_provider_mapping_update(mapping=mapping, data=dict(data))
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, {}) from exc
        return Response(mapping_data(mapping))

    def delete(self, request: Request, exchange_id: str, provider_id: str) -> Response:
        exchange_provider_mapping_delete(mapping=self._mapping(exchange_id, provider_id))
        return Response({"message": "Mapping deleted successfully"})


# --- holiday rows ------------------------------------------------------------------------------------


class ExchangeHolidaysView(SeedApiView):
    def get(self, request: Request, exchange_id: str) -> Response:
        rows = exchange_holiday_list(exchange=_exchange(exchange_id))
        return Response([holiday_data(row) for row in rows])


class HolidayCreateView(SeedApiView):
    admin_only = True

    def post(self, request: Request) -> Response:
        serializer = _valid(HolidayCreateSerializer(data=request.data))
        exchange = _exchange(serializer.validated_data["exchange_id"])
        try:
            holiday = exchange_holiday_create(exchange=exchange, **serializer.service_data())
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, HOLIDAY_ERROR_KEYS) from exc
        return Response(holiday_data(holiday), status=status.HTTP_201_CREATED)


class HolidayDetailView(SeedApiView):
    admin_only = True

    def _holiday(self, holiday_id: str) -> ExchangeHoliday:
        holiday = ExchangeHoliday.objects.select_related("exchange").filter(pk=holiday_id).first()
        if holiday is None:
            raise NotFound("Holiday not found")
        return holiday

    def put(self, request: Request, holiday_id: str) -> Response:
        holiday = self._holiday(holiday_id)
        serializer = _valid(HolidayInputSerializer(data=request.data, partial=True))
        try:
            holiday = exchange_holiday_update(
                holiday=holiday, data=serializer.service_data(is_closed_now=holiday.is_closed)
            )
        except DjangoValidationError as exc:
            raise seed_validation_error(exc, HOLIDAY_ERROR_KEYS) from exc
        return Response(holiday_data(holiday))

    def delete(self, request: Request, holiday_id: str) -> Response:
        exchange_holiday_delete(holiday=self._holiday(holiday_id))
        return Response({"message": "Holiday deleted successfully"})


# The holiday paths come before ``exchange/{id}``; the integer converters keep them apart anyway.
urlpatterns = [
    re_path(r"^exchange/?$", ExchangeListView.as_view(), name="seed-exchange-list"),
    re_path(r"^exchange/holidays/?$", HolidayCreateView.as_view(), name="seed-exchange-holiday-create"),
    re_path(
        r"^exchange/holidays/(?P<holiday_id>[0-9]+)/?$",
        HolidayDetailView.as_view(),
        name="seed-exchange-holiday-detail",
    ),
    re_path(r"^exchange/(?P<exchange_id>[0-9]+)/?$", ExchangeDetailView.as_view(), name="seed-exchange-detail"),
    re_path(
        r"^exchange/(?P<exchange_id>[0-9]+)/holidays/?$",
        ExchangeHolidaysView.as_view(),
        name="seed-exchange-holidays",
    ),
    re_path(
        r"^exchange/(?P<exchange_id>[0-9]+)/providers/?$",
        ExchangeProvidersView.as_view(),
        name="seed-exchange-providers",
    ),
    re_path(
        r"^exchange/(?P<exchange_id>[0-9]+)/providers/(?P<provider_id>[0-9]+)/?$",
        ExchangeProviderView.as_view(),
        name="seed-exchange-provider",
    ),
]
