"""Admin for the feed side: providers, their exchange/instrument mappings, populate jobs.

The mapping inlines and the bars' provider column belong to the feed, so ``extensions``
attaches them to the exchange, instrument and price-history admins that the lower apps
register (they never import ``ingestion``).
"""

from . import extensions, mappings, providers  # noqa: F401 - registers the model admins
from .common import (
    ExchangeProviderMappingInline,
    LimitedInlineFormSet,
    MappingInlineMixin,
    ProviderInstrumentMappingInline,
    ProviderInstrumentMappingLimitedInline,
    ProviderListFilter,
    RelatedChoicesMixin,
    credentials_status,
    provider_choices,
)
from .providers import CREDENTIALS_INPUT, PersistenceLagMixin, ProviderAdmin, ProviderAdminForm

__all__ = [
    "CREDENTIALS_INPUT",
    "ExchangeProviderMappingInline",
    "LimitedInlineFormSet",
    "MappingInlineMixin",
    "PersistenceLagMixin",
    "ProviderAdmin",
    "ProviderAdminForm",
    "ProviderInstrumentMappingInline",
    "ProviderInstrumentMappingLimitedInline",
    "ProviderListFilter",
    "RelatedChoicesMixin",
    "credentials_status",
    "provider_choices",
]
