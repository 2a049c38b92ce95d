"""URL routes of the exchanges app."""

urlpatterns: list = []
