"""Seed-compatible routes (see seedcompat/urls.py)."""

urlpatterns: list = []
