"""URL routes of the exchanges app: ``/exchange/`` and ``/exchange/{id}``, with or without a trailing slash."""

from rest_framework.routers import SimpleRouter

from .api import ExchangeViewSet

router = SimpleRouter()
# The seed design writes both "/exchange/" and "/exchange/{id}"; accept either form without a redirect.
router.trailing_slash = "/?"
router.register("exchange", ExchangeViewSet, basename="exchange")

urlpatterns = router.urls
