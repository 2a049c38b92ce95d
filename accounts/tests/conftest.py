"""Fixtures for the accounts tests."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters and allauth's id_token replay guard live in the cache; start each test clean."""
    cache.clear()
    yield
    cache.clear()
