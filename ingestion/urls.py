"""URL routes of the ingestion app, each with or without a trailing slash.

``/providers/``, ``/providers/{id}``, ``/providers/{id}/instruments[/{mapping_id}]`` and
``/exchange/{id}/providers[/{mapping_id}]``.
"""

from rest_framework.routers import SimpleRouter

from .api import ExchangeProviderMappingViewSet, ProviderInstrumentMappingViewSet, ProviderViewSet

router = SimpleRouter()
# Accept both "/providers" and "/providers/" without a redirect, like the other apps.
router.trailing_slash = "/?"
router.register("providers", ProviderViewSet, basename="provider")
router.register(
    r"providers/(?P<provider_id>[0-9]+)/instruments",
    ProviderInstrumentMappingViewSet,
    basename="provider-instrument-mapping",
)
router.register(
    r"exchange/(?P<exchange_id>[0-9]+)/providers",
    ExchangeProviderMappingViewSet,
    basename="exchange-provider-mapping",
)

urlpatterns = router.urls
