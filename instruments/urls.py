"""URL routes of the instruments app: ``/instruments/`` and ``/instruments/{id}``, with or without a trailing slash."""

from rest_framework.routers import SimpleRouter

from .api import InstrumentViewSet

router = SimpleRouter()
# Accept "/instruments" and "/instruments/" alike, without a redirect (clients of the seed used both).
router.trailing_slash = "/?"
router.register("instruments", InstrumentViewSet, basename="instrument")

urlpatterns = router.urls
