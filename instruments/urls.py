"""URL routes of the instruments app, each with or without a trailing slash.

``/instruments/``, ``/instruments/{id}``, ``/sectors/``, ``/sectors/{id}``, ``/instrument-types/``,
``/instrument-types/{id}``.
"""

from rest_framework.routers import SimpleRouter

from .api import InstrumentViewSet
from .reference_api import InstrumentTypeViewSet, SectorViewSet

router = SimpleRouter()
# Accept "/instruments" and "/instruments/" alike, without a redirect (clients of the seed used both).
router.trailing_slash = "/?"
router.register("instruments", InstrumentViewSet, basename="instrument")
router.register("sectors", SectorViewSet, basename="sector")
router.register("instrument-types", InstrumentTypeViewSet, basename="instrument-type")

urlpatterns = router.urls
