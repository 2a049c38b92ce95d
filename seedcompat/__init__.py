"""A drop-in for the seed service's REST and WebSocket API, so its own front end works unchanged.

Thin views over the other apps' services and selectors, in the seed's paths, shapes and field
names; no business logic of its own and no second copy of the data (the one model here,
``Suggestion``, is a seed feature with no counterpart). Mounted under ``SEED_COMPAT_PREFIX``
only when ``SEED_COMPAT=true``.
"""
