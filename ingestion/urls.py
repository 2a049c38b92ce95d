"""URL routes of the ingestion app."""

urlpatterns: list = []
