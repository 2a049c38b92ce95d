"""URL routes of the ingestion app, each with or without a trailing slash.

``/providers/``, ``/providers/{id}``, ``/providers/{id}/instruments[/{mapping_id}]``,
``/exchange/{id}/providers[/{mapping_id}]``, and the population jobs: ``/populate/reference``,
``/populate/instruments``, ``/populate/history`` and ``/populate/jobs/{id}``.
"""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from .api import populate
from .api.mappings import ExchangeProviderMappingViewSet, ProviderInstrumentMappingViewSet
from .api.providers import ProviderViewSet

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

urlpatterns = [
    *router.urls,
    re_path(r"^populate/reference/?$", populate.PopulateReferenceView.as_view(), name="populate-reference"),
    re_path(r"^populate/instruments/?$", populate.PopulateInstrumentsView.as_view(), name="populate-instruments"),
    re_path(r"^populate/history/?$", populate.PopulateHistoryView.as_view(), name="populate-history"),
    re_path(r"^populate/jobs/(?P<job_id>[0-9]+)/?$", populate.PopulateJobView.as_view(), name="populate-job"),
]
