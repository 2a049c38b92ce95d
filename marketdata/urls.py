"""URL routes of the marketdata app."""

urlpatterns: list = []
