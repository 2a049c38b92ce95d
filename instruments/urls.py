"""URL routes of the instruments app."""

urlpatterns: list = []
