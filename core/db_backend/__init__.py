"""PostgreSQL (``django.db.backends.postgresql``) with a pool that recovers from a restart at once.

The settings use it as ``ENGINE`` when Django's connection pool is on (``DB_POOL``; see ``base``).
"""
