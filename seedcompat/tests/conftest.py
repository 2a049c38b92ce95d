"""Compat tests run against the project's URLs with the compat surface mounted at ``/seed/``."""

import pytest


@pytest.fixture(autouse=True)
def seed_compat_urls(settings):
    settings.SEED_COMPAT = True
    settings.ROOT_URLCONF = "seedcompat.tests.urlconf"
