"""Routes of the server-rendered pages (see ``marketapp.pages``)."""

from django.urls import path

from marketapp import pages

urlpatterns = [
    path("live/", pages.live_dashboard, name="live"),
    path("live/providers/", pages.provider_panel, name="provider-panel"),
    path("instruments/<str:exchange>/<str:symbol>/", pages.instrument_page, name="instrument-page"),
]
