"""The pooled settings (``bench.pool_settings``) routing only the framework-floor views of ``bench.floor``."""

from bench.pool_settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor"
